"""Bridge to LIBERO's benchmark registry: task names, instructions, BDDL files, init states."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from worldvla_bench.errors import UnknownChoiceError
from worldvla_bench.tasks import SuiteSpec


@dataclass(frozen=True)
class LiberoTask:
    """One LIBERO task: its name (the BDDL file stem), language instruction and files."""

    suite: str
    task_id: int
    name: str
    instruction: str
    bddl_file: str
    n_init_states: int


@cache
def _benchmark(libero_benchmark: str):
    with contextlib.redirect_stdout(io.StringIO()):  # libero prints the task order on creation
        from libero.libero import benchmark

        registry = benchmark.get_benchmark_dict()
        if libero_benchmark not in registry:
            raise UnknownChoiceError("LIBERO benchmark", libero_benchmark, sorted(registry))
        return registry[libero_benchmark]()


def n_tasks(suite: SuiteSpec) -> int:
    """Number of tasks in the suite."""
    return _benchmark(suite.libero_benchmark).n_tasks


def libero_task(suite: SuiteSpec, task_id: int) -> LiberoTask:
    """Describe task `task_id` of `suite`; an out-of-range id names the valid range."""
    bench = _benchmark(suite.libero_benchmark)
    if not 0 <= int(task_id) < bench.n_tasks:
        valid = f"0..{bench.n_tasks - 1}"
        raise UnknownChoiceError(f"task id for suite {suite.name}", task_id, valid)
    task = bench.get_task(int(task_id))
    bddl_file = bench.get_task_bddl_file_path(int(task_id))
    if suite.instruction_source == "registry":
        instruction = task.language
    else:
        instruction = bddl_language(bddl_file)
    return LiberoTask(
        suite=suite.name,
        task_id=int(task_id),
        name=task.name,
        instruction=instruction,
        bddl_file=bddl_file,
        n_init_states=len(init_states(suite, task_id)),
    )


def bddl_language(bddl_file: str) -> str:
    """The task file's `(:language ...)` as LIBERO's env reads it (`env.language_instruction`,
    from `bddl_utils.get_problem_info`)."""
    from libero.libero.envs import bddl_utils

    return bddl_utils.get_problem_info(bddl_file)["language_instruction"]


@lru_cache(maxsize=64)
def init_states(suite: SuiteSpec, task_id: int) -> np.ndarray:
    """The task's fixed init states (flattened MuJoCo states), one row per trial."""
    with contextlib.redirect_stdout(io.StringIO()):
        states = _benchmark(suite.libero_benchmark).get_task_init_states(int(task_id))
    return np.asarray(states)
