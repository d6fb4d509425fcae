"""What every running job keeps for minutes is walked by each middle and full cyclic-GC collection (10,000 jobs:
~1 M objects). The per-generation objects of the orchestrator, the steps and the daemon's observers are slotted:
no instance ``__dict__`` (which 3.11 makes the moment anything reads ``__dict__``, as the observer check does).
``bench.objects`` counts the objects per running job."""

from __future__ import annotations

import pytest

from router import orchestrator, steps
from router.activity import _ActivityObserver
from router.attempt_log import AttemptLogger
from router.budgets import _SpendRecorder
from router.jobs.service import _JobObserver
from router.metrics import _MetricsObserver
from router.observers import ChainEvents


@pytest.mark.parametrize("cls", [
    orchestrator.Generation, orchestrator._ChainRun, orchestrator._Attempt, orchestrator._BreakerClaim,
    steps._JobRun, ChainEvents, AttemptLogger, _MetricsObserver, _ActivityObserver, _SpendRecorder, _JobObserver,
], ids=lambda cls: cls.__qualname__)
def test_per_job_objects_have_no_instance_dict(cls: type) -> None:
    assert cls.__dictoffset__ == 0

