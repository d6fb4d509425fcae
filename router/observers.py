"""What hears a generation: the ``ChainObserver`` protocol, one typed method per event, and ``ChainEvents``,
the orchestrator's fan-out of each event to the caller's progress callback and the observers.

Events are methods, never names looked up at run time: a misspelled event in the orchestrator is an
``AttributeError`` (and a type error), not a line in the log. An observer class with a method named almost
like an event (``attempt_finish``) is refused when the class is defined, and an object that is not a
``ChainObserver`` subclass must have every event method, or the generation refuses it before it starts.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from router.errors import TarashError
from router.models import AnyConfig, AnyUpdate, AttemptMetadata, ExecutionMetadata
from router.provider_job import ProviderJob

log = logging.getLogger("router.orchestrator")

#: A caller's progress callback: a function or a coroutine function taking each update.
ProgressCallback = Callable[[Any], Awaitable[None] | None]


class ChainObserver(Protocol):
    """Hears every event of one generation, in order. Subclass it (every method is a no-op by default) and
    override what you need, or pass any object with all six methods. An observer that raises is logged and
    ignored: a metrics bug must not fail a generation.

    Per attempt: ``attempt_started``, then ``provider_job`` when a vendor job was submitted, then
    ``attempt_finished`` (``error`` None on success); ``fallback`` between attempts; ``update`` for every
    progress update; ``chain_finished`` once at the end, also when the generation is cancelled.
    """

    # A subclass may declare ``__slots__`` too: one object per generation instead of two (no instance ``__dict__``),
    # and nothing for ``handled_events`` to check (the router's own observers do).
    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if name.startswith("_") or name in EVENTS or not inspect.iscoroutinefunction(value):
                continue
            if near := difflib.get_close_matches(name, EVENTS, n=1, cutoff=0.8):
                raise TypeError(f"{cls.__name__}.{name} is not a ChainObserver event (did you mean {near[0]}?); "
                                f"events: {', '.join(EVENTS)}")
        # Checked once here, not at every generation (six ``inspect`` calls per observer were a measurable
        # share of a request's CPU): ``check_observer`` trusts a subclass whose class passed this.
        cls._events_checked = not _missing_events(cls)
        # The events this class handles: ``ChainEvents`` does not call (create and await a coroutine for) the
        # inherited no-ops, and builds no update nobody reads.
        cls._handled = frozenset(name for name in EVENTS if getattr(cls, name) is not getattr(ChainObserver, name))

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None:
        return None

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None:
        return None

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        return None

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None:
        return None

    async def update(self, update: AnyUpdate) -> None:
        return None

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        return None


EVENTS: tuple[str, ...] = ("attempt_started", "provider_job", "attempt_finished", "fallback", "update",
                           "chain_finished")
EVENTS_SET = frozenset(EVENTS)


def _missing_events(observer: object) -> list[str]:
    return [name for name in EVENTS if not inspect.iscoroutinefunction(getattr(observer, name, None))]


def _class_checked(observer: object) -> bool:
    """Whether ``observer``'s class passed the check once (``ChainObserver.__init_subclass__``) and the instance
    shadows no event method with an attribute of its own: then it needs no check of its own."""
    return bool(getattr(type(observer), "_events_checked", False)
                and EVENTS_SET.isdisjoint(getattr(observer, "__dict__", ())))


def handled_events(observer: object) -> frozenset[str]:
    """The events ``observer`` does something with, once it passes ``check_observer``: those its
    ``ChainObserver`` subclass overrides, or every event for any other object (or an instance whose attributes
    shadow an event method)."""
    if _class_checked(observer):
        return type(observer)._handled  # type: ignore[attr-defined, no-any-return]
    check_observer(observer)
    return EVENTS_SET


def check_observer(observer: object) -> None:
    """Refuse an object that lacks an event coroutine method (a ``ChainObserver`` subclass has them all, unless
    it overrides one with a plain function)."""
    if _class_checked(observer):
        return
    missing = _missing_events(observer)
    if missing:
        raise TypeError(f"{type(observer).__name__} is not a ChainObserver: it has no async {', '.join(missing)} "
                        "(subclass router.ChainObserver for no-op defaults)")


@dataclass(frozen=True, slots=True)
class _Hearers:
    """For one list of observers, per event the positions of those that handle it (``handled_events``)."""

    attempt_started: tuple[int, ...]
    provider_job: tuple[int, ...]
    attempt_finished: tuple[int, ...]
    fallback: tuple[int, ...]
    update: tuple[int, ...]
    chain_finished: tuple[int, ...]

    @classmethod
    def of(cls, handled: Sequence[frozenset[str]]) -> _Hearers:
        return cls(*(tuple(i for i, events in enumerate(handled) if name in events) for name in EVENTS))


@functools.lru_cache(maxsize=256)
def _class_hearers(classes: tuple[type, ...]) -> _Hearers | None:
    """The hearers for observers of these classes when the classes alone decide it (``ChainObserver`` subclasses
    whose instances have no ``__dict__`` to shadow an event with: the router's own), else None. The same few
    classes hear every generation: worked out once per combination instead of per generation and event."""
    if all(getattr(cls, "_events_checked", False) and not cls.__dictoffset__ for cls in classes):
        return _Hearers.of([cls._handled for cls in classes])  # type: ignore[attr-defined]
    return None


class ChainEvents:
    """One generation's events, each delivered to the progress callback (updates) and every observer; each
    failure contained, so one broken listener neither fails the generation nor starves the others."""

    __slots__ = ("_on_progress", "_observers", "_hearers", "active")

    def __init__(self, on_progress: ProgressCallback | None, observers: Sequence[ChainObserver]) -> None:
        self._on_progress = on_progress
        self._observers = observers = tuple(observers)
        # Who hears each event (a job keeps this for its whole run: shared by every generation with observers of
        # the same classes); otherwise each observer checked (``TypeError`` for one that is not a ChainObserver).
        self._hearers = _class_hearers(tuple(map(type, observers))) or _Hearers.of(
            [handled_events(observer) for observer in observers])
        #: Whether anyone listens to updates: they are only built when someone will read them (a hot path).
        self.active = on_progress is not None or bool(self._hearers.update)

    async def attempt_started(self, attempt: AttemptMetadata, config: AnyConfig) -> None:
        if hearers := self._hearers.attempt_started:
            await _deliver([self._observers[i].attempt_started(attempt, config) for i in hearers])

    async def provider_job(self, attempt: AttemptMetadata, config: AnyConfig, job: ProviderJob) -> None:
        if hearers := self._hearers.provider_job:
            await _deliver([self._observers[i].provider_job(attempt, config, job) for i in hearers])

    async def attempt_finished(self, attempt: AttemptMetadata, config: AnyConfig, error: TarashError | None) -> None:
        if hearers := self._hearers.attempt_finished:
            await _deliver([self._observers[i].attempt_finished(attempt, config, error) for i in hearers])

    async def fallback(self, from_config: AnyConfig, to_config: AnyConfig, error: TarashError) -> None:
        if hearers := self._hearers.fallback:
            await _deliver([self._observers[i].fallback(from_config, to_config, error) for i in hearers])

    async def chain_finished(self, metadata: ExecutionMetadata, error: TarashError | None) -> None:
        if hearers := self._hearers.chain_finished:
            await _deliver([self._observers[i].chain_finished(metadata, error) for i in hearers])

    async def progress(self, update: AnyUpdate) -> None:
        """An update: to the caller's callback first, then to every observer's ``update``."""
        if self._on_progress is not None:
            try:
                result = self._on_progress(update)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - a broken callback must not kill the generation
                log.exception("on_progress callback raised; generation continues")
        if hearers := self._hearers.update:
            await _deliver([self._observers[i].update(update) for i in hearers])


async def _deliver(calls: list[Coroutine[Any, Any, None]]) -> None:
    """Await each observer's call in turn. The calls are made (coroutines created) by the caller, outside any
    ``try``: only what an observer's own code raises is contained here."""
    cancelled: asyncio.CancelledError | None = None
    for call in calls:
        try:
            await call
        except asyncio.CancelledError as exc:
            # Cancelled while one observer awaited (a job-store write): the others still hear the event, then the
            # cancel goes on.
            cancelled = exc
        except Exception:  # noqa: BLE001
            log.exception("observer %s raised", call.__qualname__)
    if cancelled is not None:
        raise cancelled
