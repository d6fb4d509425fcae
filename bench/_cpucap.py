"""A CPU quota for one benchmark process: a box of its own, on a shared machine.

Two router instances on one 2-core box share the cores with PostgreSQL, the emulator and the load generator, so
what two instances accept over one is bounded by the box, not by the router (``bench.instances`` prints that
bound). Capping each instance at the same fraction of a core (Linux CFS bandwidth control, a cgroup per
process) leaves the rest of the machine idle enough that every instance gets exactly its share, as if each ran on
a small box of its own: then the ratio measures how the router scales. Needs root and the cgroup ``cpu``
controller (v1 at ``/sys/fs/cgroup/cpu``, or v2 with ``cpu`` enabled); ``available()`` says whether it is here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _root() -> tuple[Path, int] | None:
    """The cgroup directory new groups go under and its version, if this machine lets us create them."""
    if (V1 / "cpu.cfs_quota_us").exists() and os.access(V1, os.W_OK):
        return V1, 1
    controllers = V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(V2, os.W_OK):
        return V2, 2
    return None


def available() -> bool:
    return _root() is not None


class CpuCap:
    """Process ``pid`` (and what it starts later) limited to ``cores`` of CPU until ``remove()``."""

    def __init__(self, pid: int, cores: float, name: str) -> None:
        found = _root()
        if found is None:
            raise RuntimeError("no writable cgroup cpu controller here (needs root and cgroups)")
        root, self.version = found
        self.root = root
        self.path = root / f"tarash-bench-{name}-{pid}"
        self.path.mkdir()
        quota = max(1000, int(cores * PERIOD_US))
        if self.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (self.path / "cgroup.procs").write_text(str(pid))  # every thread of the process moves with it

    def throttled_seconds(self) -> float:
        """How long the quota held the process back so far (``cpu.stat``)."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line.strip())
        if self.version == 1:
            return int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        """Move whatever is still in the group back to the root group, and delete the group."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(pid)
            self.path.rmdir()
