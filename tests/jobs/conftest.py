"""Jobs tests run against the same real daemon app as the daemon tests."""

from tests.daemon.conftest import daemon, start_daemon  # noqa: F401 - fixtures re-exported
