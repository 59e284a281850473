"""One policy episode in imagination: the first frame is real, the world model makes the rest.

Two modes, by what the policy reads:
- closed loop, for policies that read the third-person camera only (`cameras == ("agentview",)`,
  e.g. WorldVLA): the policy acts on imagined frames, prepared by its observation profile as the
  engine does in the simulator (`ObservationPipeline`: history frames, resize, gripper mapping);
  the world model imagines the frames after each chunk. The proprioceptive `state` is not
  imagined: policies get NaN there.
- open loop, for blind or privileged policies (the scripted expert and its variants, random,
  noop, replay): they cannot act on imagined frames, so the world model imagines the actions
  they executed in the simulator, in order.

Success is decided as the env decides it, after every step: the episode ends at the first
imagined frame the judge calls a success (P >= `threshold`), else at the step limit. A judge is
any object with `success_probability(frames, suite, task_id)` (see `worldmodel.judge`);
`judge=None` takes the simulator's own check instead, which only a simulator-backed rollout
(sim-oracle) has: with it, imagined outcomes must equal simulated ones episode by episode.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EpisodeContext, Policy, validate_chunk
from worldvla_bench.records import EpisodeRecord
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel

#: the camera world models imagine
IMAGINED_CAMERA = "agentview"
STATE_DIM = 8


def imagination_mode(policy: Policy) -> str:
    """'closed' when the policy reads only the imagined camera, 'open' when it reads no image."""
    if getattr(policy, "requires_privileged_state", False) or policy.cameras == ():
        return "open"
    if policy.cameras is not None and tuple(policy.cameras) == (IMAGINED_CAMERA,):
        return "closed"
    raise BenchError(f"policy reads cameras {policy.cameras or 'all'}; world models imagine "
                     f"only {IMAGINED_CAMERA!r}")


def _imagined_obs(frame: np.ndarray, instruction: str) -> dict[str, Any]:
    return {f"{IMAGINED_CAMERA}_image": frame, "state": np.full(STATE_DIM, np.nan),
            "instruction": instruction}


class _Verdict:
    """Success after each imagined step: the judge's probability, or the simulator's check."""

    def __init__(self, judge: Any, threshold: float, suite: str, task_id: int) -> None:
        self.judge, self.threshold = judge, float(threshold)
        self.suite, self.task_id = suite, int(task_id)
        self.p_max = 0.0
        self.time = 0.0

    def first_success(self, frames: np.ndarray, rollout: Any) -> int | None:
        """Index of the first successful frame among the rollout's latest `frames`, or None."""
        started = time.perf_counter()
        if self.judge is None:
            if not getattr(rollout, "simulator_success", None):
                raise BenchError("judge=None needs a simulator-backed world model (sim-oracle)")
            flags = np.asarray(rollout.simulator_success[-len(frames):], dtype=bool)
            probs = flags.astype(float)
        else:
            probs = np.asarray(self.judge.success_probability(frames, self.suite, self.task_id))
            flags = probs >= self.threshold
        self.p_max = max(self.p_max, float(probs.max(initial=0.0)))
        self.time += time.perf_counter() - started
        hits = np.flatnonzero(flags)
        return int(hits[0]) if len(hits) else None


def imagine_episode(model: WorldModel, policy: Policy, context: EpisodeContext,
                    first_obs: dict[str, Any], first: PredictionContext, judge: Any,
                    policy_name: str, world_model_name: str, actions: np.ndarray | None = None,
                    threshold: float = 0.5, keep_frames: bool = False) -> EpisodeRecord:
    """Imagine one episode; see the module docstring. `first_obs` is the real observation after
    the reset and wait steps, `first` its simulator state and episode metadata (for
    simulator-backed models). Open-loop policies need `actions`, those they executed in the
    simulator. The record has `extra['imagined'] = True`, the executed `extra['actions']` (an
    array: pop it before writing the record) and `extra['frames']` with `keep_frames`; times:
    `policy_time_s`, `env_time_s` (the world model), `extra['judge_s']` (the judge)."""
    started = time.perf_counter()
    mode = imagination_mode(policy)
    if mode == "open" and actions is None:
        raise BenchError(f"policy {policy_name!r} reads no image: imagine the actions it "
                         "executed in the simulator (pass `actions`)")
    frame0 = np.asarray(first_obs[f"{IMAGINED_CAMERA}_image"])
    verdict = _Verdict(judge, threshold, context.suite, context.task_id)
    policy_time = model_time = 0.0
    steps, calls, success, error = 0, 0, False, None
    kept = [frame0] if keep_frames else []
    executed: list[np.ndarray] = []
    t0 = time.perf_counter()
    rollout = model.start_rollout(frame0, context.instruction, first)
    model_time += time.perf_counter() - t0
    try:
        if mode == "closed":
            pipeline = ObservationPipeline(policy.observation_profile, (IMAGINED_CAMERA,),
                                           getattr(policy, "image_size", None))
            obs = _imagined_obs(frame0, context.instruction)
            pipeline.log_frame(obs)
            t0 = time.perf_counter()
            policy.reset(context)
            policy_time += time.perf_counter() - t0
        while steps < context.max_steps and not success:
            if mode == "closed":
                t0 = time.perf_counter()
                chunk = pipeline.to_env(validate_chunk(policy.act(pipeline.observe(obs))))
                policy_time += time.perf_counter() - t0
                calls += 1
            else:
                chunk = np.asarray(actions[steps:], dtype=np.float64)
                if not len(chunk):
                    break  # the simulated episode ended here
            chunk = chunk[: context.max_steps - steps]
            t0 = time.perf_counter()
            frames = np.asarray(rollout.step(chunk))
            model_time += time.perf_counter() - t0
            if frames.shape != (len(chunk), *frame0.shape) or frames.dtype != np.uint8:
                raise BenchError(f"world model returned {frames.dtype} {frames.shape}; expected "
                                 f"uint8 {(len(chunk), *frame0.shape)}")
            hit = verdict.first_success(frames, rollout)
            used = len(chunk) if hit is None else hit + 1
            success = hit is not None
            steps += used
            executed.extend(chunk[:used])
            kept.extend(frames[:used] if keep_frames else [])
            if mode == "closed":
                read = pipeline.render_steps(len(chunk))
                for index in sorted(read):
                    obs = _imagined_obs(frames[index], context.instruction)
                    pipeline.log_frame(obs)
    except BenchError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a user's policy or world model may raise anything
        error = f"{type(exc).__name__}: {exc}"
    action_array = np.asarray(executed, dtype=np.float64).reshape(-1, 7)
    record = EpisodeRecord.build(
        context, policy_name, steps=steps, actions=action_array, success=success, error=error,
        wall_time_s=round(time.perf_counter() - started, 4),
        policy_time_s=round(policy_time, 4), env_time_s=round(model_time, 4), policy_calls=calls)
    record.extra["actions"] = action_array
    record.extra.update({"imagined": True, "world_model": world_model_name, "mode": mode,
                         "judge": "simulator" if judge is None else "judge",
                         "p_success_max": round(verdict.p_max, 4),
                         "judge_s": round(verdict.time, 4)})
    if keep_frames:
        record.extra["frames"] = np.stack(kept)
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record
