"""Status page tests run against the same real daemon app as the daemon tests (and, in a browser, against the
``tarash-router serve`` process)."""

from tests.daemon.conftest import daemon, start_daemon  # noqa: F401 - fixtures re-exported
