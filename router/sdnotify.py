"""systemd's notify protocol (``sd_notify``) without libsystemd: READY, RELOADING, STOPPING, WATCHDOG.

With no ``NOTIFY_SOCKET`` in the environment every call is a no-op, so the daemon behaves the same with or
without systemd. Messages are single datagrams on a unix socket (an abstract one when the path starts with @).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time


class Notifier:
    """Sends notify messages to the socket systemd gave us, if any."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = ("\0" + path[1:]) if path.startswith("@") else (path or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        #: Ping interval: half of WatchdogSec, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watchdog_for_us and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one message; False when there is no socket or it failed."""
        if self.address is None:
            return False
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            sock.sendall("\n".join(fields).encode())
            return True
        return False

    def ready(self, status: str = "serving") -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) match the reload it asked for.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=shutting down")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    async def watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` every half WatchdogSec until cancelled (returns at once if not asked for)."""
        if self.watchdog_interval is None or not self.enabled:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
