"""What the engine does when an episode job fails outside the policy: one retry rule for every
executor, and the error record that stands in for an episode that could not run."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from worldvla_bench.envs.libero_tasks import libero_task
from worldvla_bench.policy import EpisodeContext
from worldvla_bench.records import EpisodeRecord
from worldvla_bench.worker import EpisodeJob, WorkerConfig

MAX_ATTEMPTS = 2  # a worker that dies mid-episode gets its episode retried once


def error_record(job: EpisodeJob, config: WorkerConfig, error: str) -> dict[str, Any]:
    """The record of an episode that ended in `error` ('Type: message') before it could run."""
    task = libero_task(config.suite, job.task_id)
    context = EpisodeContext(config.suite.name, job.task_id, task.name, task.instruction,
                             job.trial, job.seed,
                             config.protocol.max_steps or config.suite.max_steps)
    return EpisodeRecord.build(context, config.protocol.policy, error=error).to_dict()


def retry_or_fail(job: EpisodeJob, attempts: dict[EpisodeJob, int],
                  requeue: Callable[[EpisodeJob], None], config: WorkerConfig,
                  on_record: Callable[[dict[str, Any]], None], lost: str,
                  exits: dict[EpisodeJob, list[str]] | None = None,
                  how: str | None = None) -> None:
    """A job whose worker was lost (`how`: its exit code or signal, when known, kept in `exits`):
    run it again (first in line) until `MAX_ATTEMPTS`, then record it as
    'WorkerDied: <lost> twice (<how>, <how>)'."""
    attempts[job] = attempts.get(job, 0) + 1
    if exits is not None:
        exits.setdefault(job, []).append(how or "exit unknown")
    if attempts[job] < MAX_ATTEMPTS:
        requeue(job)
    else:
        record = error_record(job, config, f"WorkerDied: {lost} twice" + (
            f" ({', then '.join(exits[job])})" if exits is not None else ""))
        on_record(note_retries(record, job, attempts, exits))


def note_retries(record: dict[str, Any], job: EpisodeJob, attempts: dict[EpisodeJob, int],
                 exits: dict[EpisodeJob, list[str]] | None = None) -> dict[str, Any]:
    """The record with how often its episode was started again after its worker died
    (`retries`) and how those workers ended (`worker_exits`: 'exit code 1', 'killed by
    SIGKILL', ...), so that a retried episode is never mistaken for a clean one."""
    record["retries"] = attempts.get(job, 0) - (1 if attempts.get(job, 0) >= MAX_ATTEMPTS else 0)
    record["worker_exits"] = list((exits or {}).get(job, []))
    return record


def describe_exit(exitcode: int | None) -> str:
    """A process's exit as a reader wants it: 'exit code 1', 'killed by SIGKILL'."""
    if exitcode is None:
        return "exit unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
