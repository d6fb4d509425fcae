"""Request ids from ``router.ids``: the shape docs promise (32 hex digits) and no repeats, within a process and
between two sources (two processes, or a restart)."""

from __future__ import annotations

import re

from router.ids import Ids


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = Ids()
    drawn = [ids.next() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_two_sources_do_not_share_ids() -> None:
    first, second = Ids(), Ids()
    assert {first.next() for _ in range(1_000)}.isdisjoint(second.next() for _ in range(1_000))
