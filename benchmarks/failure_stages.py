"""Where a policy's LIBERO episodes fail, against a reference run (the scripted expert) of the
same init states: replays both runs' recorded actions blind, reads the ground-truth scene at every
step, and sorts each episode into a stage.

Each episode is replayed from its recorded actions (`replay`'s mechanism: same protocol, init
state and seed; the replay must end as the record did, success and steps, or the script stops)
by a blind policy that also reads the privileged scene state (`envs/privileged.py`: end-effector
position, finger joints, objects, articulated joints; nothing of the success check) at every step.
The task's target is read from its BDDL goal's first predicate: the object of an `on` / `in` goal
(its root body position), else the handle of the drawer of an `open` goal or the button of a
`turnon` one. Per episode (distances in cm, steps in env steps):

- `reach_gap`: the closest the end effector came to the target, minus the reference's closest
  from the same init state (object roots sit off their grasp points, so only this difference
  means anything);
- `lift`: the object's highest rise above its start (objects); `joint`: the largest move of the
  target's joint (m or rad; articulations);
- `close_offset_*`: at the first step the gripper is commanded closed (action[6] > 0), the end
  effector's offset from the target minus the reference's offset at its first close (x, y, z
  world axes; `close_xy` the horizontal distance): whether it closes where the reference does;
- `close_early`: that step minus the reference's (negative: closes earlier); `reopened`: the
  gripper is commanded open again after its first close.

Stages, in order: `success`; `never reached` (reach_gap > 2 cm); objects: `reached, never lifted`
(lift < 4 cm), `lifted, not placed`; articulations: `reached, not actuated` (joint < 0.01),
`moved, not enough`.

    .venv/bin/python benchmarks/failure_stages.py RUN REFERENCE_RUN --out DIR [--workers 2]

writes DIR/replay_{run,reference}/ (the replays, resumable) with one .npz log per episode,
DIR/failure_stages.csv (one row per episode) and DIR/failure_stages.md (the tables), and prints
the tables. Both runs must hold saved actions (`episodes/`, the default of `eval`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worldvla_bench.policies.replay import ReplayPolicy  # noqa: E402
from worldvla_bench.policy import EndEpisode  # noqa: E402
from worldvla_bench.run_dir import (  # noqa: E402
    RunDir,
    episode_stem,
    load_episode_arrays,
    read_episodes,
)

GAP_CM = 2.0  # reached: within 2 cm of the reference's closest approach
LIFT_CM = 4.0  # lifted: the object's root 4 cm above its start
JOINT_MOVED = 0.01  # actuated: the target joint moved 1 cm (slide) or 0.01 rad (hinge)
LOG_ARRAYS = ("eef", "target", "joint")


def goal_target(privileged: dict[str, Any]) -> tuple[str, str]:
    """('object', name) for an on/in goal, ('joint', 'fixture/joint') for open/turnon: the first
    predicate of the BDDL goal."""
    predicate, *args = privileged["goal"][0]
    if predicate in ("on", "in") and args[0] in privileged["objects"]:
        return "object", args[0]
    if predicate == "open":  # 'wooden_cabinet_1_middle_region' -> joint '..._middle_level'
        joint = args[0].removesuffix("_region") + "_level"
    elif predicate == "turnon":  # 'flat_stove_1' -> joint 'flat_stove_1_button'
        joint = args[0] + "_button"
    else:
        raise ValueError(f"no target rule for the goal {privileged['goal'][0]}")
    for fixture, spec in privileged["fixtures"].items():
        if joint in spec.get("joints", {}):
            return "joint", f"{fixture}/{joint}"
    raise ValueError(f"no joint {joint!r} among the fixtures")


class LoggingReplay(ReplayPolicy):
    """`replay`, one action per call, logging the end effector, the target's position and its
    joint (NaN for objects) at every step to `log_dir`/<suite>_task<t>_trial<k>.npz. Where the
    recorded actions end before the episode does (the policy ended it), it ends the episode
    there as the policy did (`EndEpisode`)."""

    requires_privileged_state = True

    def __init__(self, run: str, log_dir: str) -> None:
        super().__init__(run, chunk_size=1)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list] = {}
        self._path: Path | None = None

    def reset(self, context) -> None:
        super().reset(context)
        stem = episode_stem(context.suite, context.task_id, context.trial)
        self._path = self.log_dir / f"{stem}.npz"
        self._rows = {name: [] for name in LOG_ARRAYS}
        self._target: tuple[str, str] | None = None

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        scene = observation["privileged"]
        if self._target is None:
            self._target = goal_target(scene)
        kind, name = self._target
        if kind == "object":
            where, joint = scene["objects"][name]["pos"], np.nan
        else:
            fixture, joint_name = name.split("/")
            spec = scene["fixtures"][fixture]["joints"][joint_name]
            where, joint = spec["handle_pos"], spec["qpos"]
        self._rows["eef"].append(scene["robot"]["eef_pos"])
        self._rows["target"].append(where)
        self._rows["joint"].append(joint)
        if self._cursor >= len(self._actions):
            self._save()
            raise EndEpisode("the recorded actions end here")
        if self._cursor + 1 == len(self._actions) or len(self._rows["eef"]) % 50 == 0:
            self._save()
        return super().act(observation)

    def _save(self) -> None:
        kind, name = self._target
        np.savez(self._path, kind=kind, name=name,
                 **{key: np.asarray(rows, dtype=np.float64) for key, rows in self._rows.items()})


def replay(run: Path, out: Path, workers: int) -> Path:
    """Replay every episode of `run` under its own protocol into `out`; returns the log dir."""
    from worldvla_bench.manifest import read_manifest
    from worldvla_bench.protocol import Protocol, RunOptions
    from worldvla_bench.results_json import protocol_of
    from worldvla_bench.rollout import run_evaluation

    manifest = read_manifest(run)
    if manifest is None:
        raise SystemExit(f"{run} has no manifest.json: not a run directory")
    records = read_episodes(run)
    logs = out / "logs"
    recorded = {k: v for k, v in protocol_of(manifest).items() if v is not None}
    protocol = Protocol(**{**recorded, "policy": "benchmarks.failure_stages:LoggingReplay",
                           "policy_kwargs": {"run": str(run), "log_dir": str(logs)}})
    trials = sorted({r["trial"] for r in records})
    tasks = ",".join(str(t) for t in sorted({r["task_id"] for r in records}))
    run_evaluation(protocol, RunOptions(run_dir=out, tasks=tasks, first_trial=trials[0],
                                        trials=trials[-1] - trials[0] + 1, workers=workers,
                                        save_episodes=False, progress=True))
    replayed = {(r["task_id"], r["trial"]): r for r in read_episodes(out)}
    for r in records:
        again = replayed.get((r["task_id"], r["trial"]))
        if again is None or again["success"] != r["success"] or again["steps"] != r["steps"]:
            raise SystemExit(f"the replay of {run} task {r['task_id']} trial {r['trial']} does "
                             f"not end as recorded ({r['success']}, {r['steps']} steps): "
                             f"{again and (again['success'], again['steps'], again['error'])}")
    return logs


def first_close(actions: np.ndarray) -> int | None:
    closed = np.flatnonzero(actions[:, 6] > 0)
    return int(closed[0]) if len(closed) else None


def episode_row(log: dict[str, np.ndarray], actions: np.ndarray) -> dict[str, Any]:
    """The module docstring's per-episode figures of one replay log (cm, steps)."""
    eef, target = log["eef"], log["target"]
    row: dict[str, Any] = {"kind": str(log["kind"]),
                           "min_dist": 100 * float(np.linalg.norm(eef - target, axis=1).min())}
    if row["kind"] == "object":
        row["lift"] = 100 * float(np.max(target[:, 2] - target[0, 2]))
    else:
        row["joint"] = float(np.max(np.abs(log["joint"] - log["joint"][0])))
    close = first_close(actions)
    row["close_step"] = close
    row["close_offset"] = (100 * (eef[close] - target[close])
                           if close is not None and close < len(eef) else None)
    row["reopened"] = bool(close is not None and np.any(actions[close:, 6] < 0))
    return row


def stage(row: dict[str, Any]) -> str:
    if row["success"]:
        return "success"
    if row["reach_gap"] > GAP_CM:
        return "never reached"
    if row["kind"] == "object":
        return "reached, never lifted" if row["lift"] < LIFT_CM else "lifted, not placed"
    return "reached, not actuated" if row["joint"] < JOINT_MOVED else "moved, not enough"


def table(run: Path, reference: Path, run_logs: Path, reference_logs: Path):
    """One row per episode of `run` with its reference's figures beside it."""
    import pandas as pd

    rows = []
    run_dir, reference_dir = RunDir(run), RunDir(reference)
    for record in read_episodes(run):
        key = (record["suite"], record["task_id"], record["trial"])
        name = episode_stem(*key) + ".npz"
        mine = episode_row(dict(np.load(run_logs / name)), run_dir.arrays(record)["actions"])
        ref = episode_row(dict(np.load(reference_logs / name)),
                          load_episode_arrays(reference_dir.episode_path(*key))["actions"])
        row = {"task": record["task_id"], "trial": record["trial"], "success": record["success"],
               "ended_by_policy": bool((record.get("extra") or {}).get("ended_by_policy")),
               "kind": mine["kind"], "reach_gap": mine["min_dist"] - ref["min_dist"],
               "lift": mine.get("lift"), "joint": mine.get("joint"),
               "reopened": mine["reopened"]}
        if mine["close_step"] is not None and ref["close_step"] is not None:
            row["close_early"] = mine["close_step"] - ref["close_step"]
        if mine["close_offset"] is not None and ref["close_offset"] is not None:
            dx, dy, dz = mine["close_offset"] - ref["close_offset"]
            row.update(close_dx=dx, close_dy=dy, close_dz=dz, close_xy=float(np.hypot(dx, dy)))
        row["stage"] = stage(row)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "trial"]).reset_index(drop=True)


def summary(df) -> str:
    import pandas as pd

    stages = pd.crosstab(df.task, df.stage, margins=True, margins_name="all")
    failed = df[~df.success]
    closing = df.groupby("success")[["close_early", "close_xy", "close_dz"]].median().round(1)
    closing.index = ["failures" if not s else "successes" for s in closing.index]
    closing.insert(0, "episodes", df.groupby("success").size().values)
    lines = ["## Stages per task", "", stages.to_markdown(), "",
             "## Where the gripper first closes, against the reference (medians; cm, steps)", "",
             closing.to_markdown(), "",
             f"Failures: {len(failed)}; {int(failed.reopened.sum())} open the gripper again "
             f"after closing it; {int((failed.close_xy > GAP_CM).sum())} first close more than "
             f"{GAP_CM:g} cm (horizontally) from where the reference closes, "
             f"{int((failed.close_dz > GAP_CM).sum())} more than {GAP_CM:g} cm above it."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    run_logs = replay(args.run, args.out / "replay_run", args.workers)
    reference_logs = replay(args.reference, args.out / "replay_reference", args.workers)
    df = table(args.run, args.reference, run_logs, reference_logs)
    df.to_csv(args.out / "failure_stages.csv", index=False)
    text = (f"# Failure stages of {args.run} against {args.reference}\n\n" + summary(df))
    (args.out / "failure_stages.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
