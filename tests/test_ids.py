"""Ids from ``router.ids``: the shape docs promise (32 hex digits) and no repeats, within a process and between two
sources (two processes, or a restart); secret ones (job ids) also not shared with a forked child."""

from __future__ import annotations

import os
import re

from router.ids import Ids, SecretIds


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = Ids()
    drawn = [ids.next() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_two_sources_do_not_share_ids() -> None:
    first, second = Ids(), Ids()
    assert {first.next() for _ in range(1_000)}.isdisjoint(second.next() for _ in range(1_000))


def test_secret_ids_are_32_hex_digits_from_the_csprng_and_never_repeat() -> None:
    ids = SecretIds(batch=8)
    drawn = [ids.next() for _ in range(1_000)]  # many refills
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)
    assert {SecretIds().next() for _ in range(100)}.isdisjoint(drawn)


def test_a_forked_child_draws_its_own_secret_ids() -> None:
    ids = SecretIds()
    ids.next()  # the parent's buffer is full now
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running the parent's cleanup
        os.write(writer, ids.next().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(reader, 64).decode() != ids.next()
