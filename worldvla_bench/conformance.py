"""Conformance with the reference loop: the same actions through our engine and through the
evaluation loop of OpenVLA's and openpi's scripts (`envs/reference_loop.py`), episode by episode.

Action sequences: `expert` (the scripted expert's episodes, run by our engine), `random`
(uniform in [-1, 1], seeded per (seed, suite, task, trial); replayed by our engine with the
`replay` policy). Our side runs as any evaluation (workers, resets in place, render on demand;
`--save-frames` keeps every frame and state); the reference side plays, per task, the actions our
engine executed for trials 0..N-1 in order, in one raw `OffScreenRenderEnv` seeded once.

Per episode: success, the step of success, the final simulator state (max |difference|) and the
frames of both cameras after the wait steps and after every step (share of differing values,
max |difference|). An episode agrees when all four do (tolerances default to exact).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from worldvla_bench.atomic import write_atomic
from worldvla_bench.envs.reference_loop import DUMMY_ACTION, NUM_STEPS_WAIT, ReferenceEpisode
from worldvla_bench.envs.seeding import SEEDINGS, check_seeding
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.run_dir import RunDir, has_arrays
from worldvla_bench.tasks import SuiteSpec, load_suite

#: where the action sequences come from
SEQUENCES = ("expert", "random")
#: the reference loop's control frequency (LIBERO ControlEnv default, Hz)
REFERENCE_CONTROL_FREQ = 20


@dataclass(frozen=True)
class ConformanceConfig:
    """One conformance check. `protocol`: the suite, the run seed (it also seeds the random
    sequences), a reference `seeding` (one with a reference loop), the image size (px) and
    step limit (None: the suite's); its policy is the sequences' (the expert's, `replay` of the
    random ones), whatever it names, and `fast_render` must be off (the reference loop renders
    with the defaults). `options`: `tasks` ('0,3'; None: all), `trials` (from trial 0, in
    order: `first_trial` must be 0), workers, progress; its `run_dir` is `<out>/<kind>_ours`,
    whatever it names. `state_tol` and `pixel_tol` are the largest |difference| that still
    agrees (state: float; frames: uint8 levels)."""

    protocol: Protocol
    options: RunOptions = field(default_factory=lambda: RunOptions(trials=3))
    sequences: tuple[str, ...] = SEQUENCES
    out: Path | None = None
    state_tol: float = 0.0
    pixel_tol: int = 0

    def __post_init__(self) -> None:
        seeding = self.protocol.seeding
        if SEEDINGS[check_seeding(seeding)] is None:
            raise BenchError(f"the {seeding!r} seeding has no reference loop: choose "
                             f"{', '.join(k for k, v in SEEDINGS.items() if v is not None)}")
        unknown = [s for s in self.sequences if s not in SEQUENCES]
        if unknown or not self.sequences:
            raise UnknownChoiceError("action sequences", unknown, list(SEQUENCES))
        if self.options.trials is None or int(self.options.trials) < 1:
            raise BenchError(f"trials must be >= 1, got {self.options.trials}")
        if self.options.first_trial != 0:
            raise BenchError("conformance runs trials from 0, in order, as the reference loop "
                             f"does: first trial must be 0, got {self.options.first_trial}")
        if self.protocol.fast_render:
            raise BenchError("conformance renders as the reference loop does: no fast render")

    @property
    def trials(self) -> int:
        return int(self.options.trials or 0)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"results/conformance/{self.protocol.suite}_"
                                 f"{self.protocol.seeding}")


@dataclass
class EpisodeAgreement:
    """Our engine's episode against the reference loop's (`_ref`), and whether they agree."""

    sequences: str
    task_id: int
    trial: int
    success: bool
    success_ref: bool
    success_step: int | None
    success_step_ref: int | None
    steps: int
    state_max_abs_diff: float
    frames_differing: float  # share of differing uint8 values over every frame of both cameras
    frames_max_abs_diff: int
    agrees: bool


def random_sequence(seed: int, suite: str, task_id: int, trial: int, steps: int) -> np.ndarray:
    """(steps, 7) actions uniform in [-1, 1] from `default_rng([seed, crc(suite), task, trial])`."""
    import zlib

    rng = np.random.default_rng([int(seed), zlib.crc32(suite.encode()), int(task_id), int(trial)])
    return rng.uniform(-1.0, 1.0, (int(steps), 7))


def check_reference_constants(suite: SuiteSpec) -> None:
    """The reference loop waits 10 dummy steps at 20 Hz: a suite with other constants has none."""
    if (suite.wait_steps != NUM_STEPS_WAIT or list(suite.wait_action) != DUMMY_ACTION
            or suite.control_freq != REFERENCE_CONTROL_FREQ):
        raise BenchError(f"suite {suite.name} does not use the reference loop's constants "
                         f"({NUM_STEPS_WAIT} wait steps of {DUMMY_ACTION}, "
                         f"{REFERENCE_CONTROL_FREQ} Hz)")


def run_conformance(config: ConformanceConfig) -> pd.DataFrame:
    """Run the check, write `conformance.csv` and `conformance.md` into `config.out_dir`, and
    return the per-episode table (one row per `EpisodeAgreement`)."""
    suite = load_suite(config.protocol.suite)
    check_reference_constants(suite)
    protocol = config.protocol.resolved(suite)
    task_ids = _task_ids(config, suite)
    out = config.out_dir
    rows: list[EpisodeAgreement] = []
    for kind in config.sequences:
        ours = _run_ours(config, protocol, kind, out)
        records = {(r["task_id"], r["trial"]): r for r in RunDir(ours).records()}
        bar = tqdm(total=len(task_ids) * config.trials, desc=f"{suite.name} {kind} reference",
                   unit="ep", disable=not config.options.progress, file=sys.stderr,
                   dynamic_ncols=True)
        try:
            for task_id in task_ids:
                arrays = [_our_arrays(ours, records, suite.name, task_id, trial)
                          for trial in range(config.trials)]
                reference = _run_reference(protocol, suite, task_id, arrays,
                                           lambda _, bar=bar: bar.update(1))
                for trial, (ref, mine) in enumerate(zip(reference, arrays, strict=True)):
                    rows.append(compare_episode(kind, task_id, trial, records[(task_id, trial)],
                                                mine, ref, config.state_tol, config.pixel_tol))
        finally:
            bar.close()
    table = pd.DataFrame([asdict(r) for r in rows])
    _write_tables(out, table, protocol)
    return table


def _run_ours(config: ConformanceConfig, protocol: Protocol, kind: str, out: Path) -> Path:
    """Our engine's run of the sequences `kind` (frames and states kept) under the resolved
    `protocol`; its directory."""
    from worldvla_bench.rollout import run_evaluation

    suite = load_suite(protocol.suite)
    if kind == "expert":
        policy, kwargs = "expert", {}
    else:
        actions_dir = out / "random_actions"
        actions_run = RunDir(actions_dir)
        for task_id in _task_ids(config, suite):
            for trial in range(config.trials):
                if not actions_run.episode_path(suite.name, task_id, trial).exists():
                    actions_run.save_arrays(suite.name, task_id, trial, actions=random_sequence(
                        protocol.seed, suite.name, task_id, trial, int(protocol.max_steps)))
        policy, kwargs = "replay", {"run": str(actions_dir)}
    options = replace(config.options, run_dir=out / f"{kind}_ours", save_frames=True)
    return run_evaluation(replace(protocol, policy=policy, policy_kwargs=kwargs), options)


def _task_ids(config: ConformanceConfig, suite: SuiteSpec) -> list[int]:
    from worldvla_bench.envs.libero_tasks import n_tasks
    from worldvla_bench.tasks import parse_index_list

    return parse_index_list(config.options.tasks, n_tasks(suite), f"task id for suite {suite.name}")


def _our_arrays(run_dir: Path, records: dict, suite: str, task_id: int,
                trial: int) -> dict[str, np.ndarray]:
    record = records.get((task_id, trial))
    if record is None or not has_arrays(record):
        why = record.get("error") if record else "no record"
        raise BenchError(f"{suite} task {task_id} trial {trial}: our engine's episode is "
                         f"missing or failed ({why})")
    return RunDir(run_dir).arrays(record)


def _run_reference(protocol: Protocol, suite: SuiteSpec, task_id: int,
                   arrays: list[dict[str, np.ndarray]], on_episode) -> list[ReferenceEpisode]:
    from worldvla_bench.envs.reference_loop import run_reference_task

    return run_reference_task(suite, task_id, int(SEEDINGS[protocol.seeding]),
                              [a["actions"] for a in arrays], int(protocol.image_size),
                              int(protocol.max_steps), on_episode=on_episode)


def compare_episode(kind: str, task_id: int, trial: int, record: dict[str, Any],
                    ours: dict[str, np.ndarray], ref: ReferenceEpisode, state_tol: float = 0.0,
                    pixel_tol: int = 0) -> EpisodeAgreement:
    """One episode of our engine (its record and arrays) against the reference loop's."""
    success = bool(record["success"])
    step = int(record["steps"]) if success else None
    state_diff = _max_abs(ours["final_state"], ref.final_state)
    differing, total, pixel_max = 0, 0, 0
    same_length = True
    for camera, frames_ref in ref.frames.items():
        mine = ours.get(f"frames_{camera}")
        if mine is None or mine.shape != frames_ref.shape:
            same_length = False
            continue
        diff = np.abs(mine.astype(np.int16) - frames_ref.astype(np.int16))
        differing += int(np.count_nonzero(diff > pixel_tol))
        total += diff.size
        pixel_max = max(pixel_max, int(diff.max()))
    share = differing / total if total else 1.0
    agrees = (success == ref.success and step == ref.success_step and same_length
              and state_diff <= state_tol and differing == 0)
    return EpisodeAgreement(kind, task_id, trial, success, ref.success, step, ref.success_step,
                            int(record["steps"]), state_diff, share, pixel_max, agrees)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Episodes compared and agreeing, per kind of sequence."""
    return (table.groupby("sequences", sort=False)
            .agg(episodes=("agrees", "size"), agree=("agrees", "sum"),
                 successes=("success", "sum"),
                 state_max_abs_diff=("state_max_abs_diff", "max"),
                 frames_max_abs_diff=("frames_max_abs_diff", "max"))
            .reset_index())


def _write_tables(out: Path, table: pd.DataFrame, protocol: Protocol) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "conformance.csv", table.to_csv(index=False).encode())
    head = (f"# Conformance: {protocol.suite}, seeding {protocol.seeding} "
            f"(env.seed({SEEDINGS[protocol.seeding]})), {protocol.image_size} px, "
            f"{protocol.max_steps} steps\n\n")
    text = (head + summary(table).to_markdown(index=False) + "\n\n"
            + table.to_markdown(index=False) + "\n")
    write_atomic(out / "conformance.md", text.encode())
