"""Circuit breakers per (provider, model): stop sending to a vendor that keeps failing.

After ``threshold`` consecutive retryable failures the circuit opens for ``cooldown`` seconds: attempts on it
are skipped at once (recorded ``skipped`` with the reason) so a chain does not wait on a dead vendor. After the
cool-down one probe is let through (half-open); its success closes the circuit, its failure re-opens it.
Opt-in: the library runs without breakers unless one is passed to the orchestrator; the daemon keeps one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]
#: Gauge values of ``tarash_router_provider_circuit_state``.
STATE_VALUES: dict[CircuitState, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreakers:
    """Process-wide breaker table. ``clock`` is injectable so tests use a fake one."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[tuple[str, str], _Circuit] = {}
        #: Called with (provider, model, opened, failures) when a circuit opens (or re-opens) or closes here;
        #: not for ``mirror`` (router/cluster.py shares circuits across instances with it).
        self.listeners: list[Callable[[str, str, bool, int], None]] = []

    def state(self, provider: str, model: str) -> CircuitState:
        circuit = self._circuits.get((provider, model))
        if circuit is None or circuit.opened_at is None:
            return "closed"
        if circuit.probing or self._clock() - circuit.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self, provider: str, model: str) -> str | None:
        """None if an attempt may go; else why it is skipped. Claims the half-open probe when it is free."""
        circuit = self._circuits.get((provider, model))
        if circuit is None or circuit.opened_at is None:
            return None
        remaining = self.cooldown - (self._clock() - circuit.opened_at)
        if remaining > 0:
            return f"circuit open for {provider}/{model} after {circuit.failures} failures in a row; retry in {remaining:.0f} s"
        if circuit.probing:
            return f"circuit half-open for {provider}/{model}: a probe is in flight"
        circuit.probing = True
        return None

    def record(self, provider: str, model: str, *, success: bool, counts: bool = True) -> None:
        """Record an attempt's end. ``counts=False`` for failures that say nothing about vendor health."""
        key = (provider, model)
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
        if success:
            if circuit.failures or circuit.opened_at is not None or circuit.probing:  # a closed one stays as it is
                self._circuits[key] = _Circuit()
                if circuit.opened_at is not None:
                    self._tell(provider, model, False, 0)
            return
        circuit.probing = False
        if not counts:
            return
        circuit.failures += 1
        if circuit.opened_at is not None or circuit.failures >= self.threshold:
            circuit.opened_at = self._clock()  # (re)open: a failed probe restarts the cool-down
            self._tell(provider, model, True, circuit.failures)

    def _tell(self, provider: str, model: str, opened: bool, failures: int) -> None:
        for listener in self.listeners:
            listener(provider, model, opened, failures)

    def mirror(self, open_circuits: dict[tuple[str, str], tuple[int, float]]) -> None:
        """Take another instance's view: each key is open since ``age`` seconds with ``failures``; circuits open
        here but not in it were closed elsewhere. Listeners are not called (it is not news)."""
        now = self._clock()
        for key, (failures, age) in open_circuits.items():
            circuit = self._circuits.setdefault(key, _Circuit())
            opened_at = now - age
            if circuit.opened_at is None or circuit.opened_at < opened_at:
                circuit.failures, circuit.opened_at, circuit.probing = failures, opened_at, False
        for key, circuit in self._circuits.items():
            if circuit.opened_at is not None and key not in open_circuits:
                self._circuits[key] = _Circuit()

    def details(self, provider: str, model: str) -> dict[str, object]:
        """State, consecutive failures and seconds until the next probe may go (open circuits), for the status page."""
        circuit = self._circuits.get((provider, model))
        state = self.state(provider, model)
        retry_in = None
        if circuit is not None and circuit.opened_at is not None and state == "open":
            retry_in = round(max(0.0, self.cooldown - (self._clock() - circuit.opened_at)), 1)
        return {"state": state, "failures": circuit.failures if circuit else 0, "retry_in_seconds": retry_in}

    def snapshot(self) -> dict[tuple[str, str], CircuitState]:
        """Every known circuit's state, for /v1/routes and the metrics gauge."""
        return {key: self.state(*key) for key in self._circuits}
