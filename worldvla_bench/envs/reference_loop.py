"""The evaluation loop of OpenVLA's and openpi's LIBERO scripts on LIBERO's raw env (conformance).

Written as those scripts write it, with the policy replaced by given action sequences:

- the env: `OffScreenRenderEnv(bddl_file_name, camera_heights, camera_widths)` (LIBERO's other
  defaults: hard reset, 20 Hz, both cameras), then `env.seed(seed)` once
  (OpenVLA experiments/robot/libero/libero_utils.py `get_libero_env`: seed 0; WorldVLA
  worldvla/libero_util/libero_utils.py, the same; openpi examples/libero/main.py
  `_get_libero_env`: `args.seed`, 7);
- per trial, in order: `env.reset()`, `obs = env.set_init_state(initial_states[episode_idx])`,
  `num_steps_wait` (10) steps of the dummy action [0, 0, 0, 0, 0, 0, -1]
  (`get_libero_dummy_action`; openpi `LIBERO_DUMMY_ACTION`), then up to `max_steps` steps of
  the policy's actions, success = `done` of the step (run_libero_eval.py `eval_libero`;
  openpi `eval_libero`);
- images upright by `[::-1, ::-1]` (`get_libero_image`; openpi main.py).

The wait-step frames are not kept (the scripts read only the last); `frames[camera][0]` is the
observation after the wait steps, `frames[camera][t]` the one after policy step t.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from worldvla_bench.envs.libero_tasks import init_states, libero_task
from worldvla_bench.envs.rendering import configure_gl
from worldvla_bench.tasks import SuiteSpec

#: OpenVLA's `get_libero_dummy_action` and openpi's `LIBERO_DUMMY_ACTION`
DUMMY_ACTION = [0, 0, 0, 0, 0, 0, -1]
#: `num_steps_wait` in OpenVLA's run_libero_eval.py and openpi's main.py
NUM_STEPS_WAIT = 10


@dataclass
class ReferenceEpisode:
    """One trial of the reference loop. `success_step`: the policy step (1-based) whose `done`
    was True, None without success; `steps`: policy steps taken; `final_state`: the flattened
    MuJoCo state at the end (float64); `frames`: camera -> (steps + 1, H, W, 3) uint8, upright."""

    trial: int
    success: bool
    success_step: int | None
    steps: int
    final_state: np.ndarray
    frames: dict[str, np.ndarray] = field(default_factory=dict)


def run_reference_task(
    suite: SuiteSpec,
    task_id: int,
    env_seed: int,
    action_sequences: Sequence[np.ndarray],
    image_size: int,
    max_steps: int,
    on_episode: Callable[[ReferenceEpisode], None] | None = None,
) -> list[ReferenceEpisode]:
    """Trials 0..len(action_sequences)-1 of one task, in order, in one env seeded once.

    Trial i plays `action_sequences[i]` ((n, 7) float) for at most `max_steps` policy steps; it
    stops earlier at `done`, or when its actions run out.
    """
    from libero.libero.envs import OffScreenRenderEnv

    configure_gl()
    task = libero_task(suite, task_id)
    initial_states = init_states(suite, task_id)
    cameras = ("agentview", "robot0_eye_in_hand")  # LIBERO's ControlEnv default camera_names
    with contextlib.redirect_stdout(io.StringIO()):
        env = OffScreenRenderEnv(bddl_file_name=task.bddl_file, camera_heights=int(image_size),
                                 camera_widths=int(image_size))
    episodes: list[ReferenceEpisode] = []
    try:
        env.seed(int(env_seed))  # "IMPORTANT: seed seems to affect object positions ..."
        for episode_idx, actions in enumerate(action_sequences):
            env.reset()
            obs = env.set_init_state(initial_states[episode_idx])
            frames: dict[str, list[np.ndarray]] = {camera: [] for camera in cameras}
            done = False
            success_step = None
            steps = 0
            t = 0
            limit = min(int(max_steps), len(actions))
            while t < limit + NUM_STEPS_WAIT:
                if t < NUM_STEPS_WAIT:
                    obs, reward, done, info = env.step(DUMMY_ACTION)
                    t += 1
                    if t == NUM_STEPS_WAIT:
                        _keep(frames, obs)
                    continue
                action = np.asarray(actions[t - NUM_STEPS_WAIT], dtype=np.float64)
                obs, reward, done, info = env.step(action.tolist())
                steps += 1
                _keep(frames, obs)
                if done:
                    success_step = steps
                    break
                t += 1
            episode = ReferenceEpisode(
                trial=episode_idx, success=success_step is not None, success_step=success_step,
                steps=steps,
                final_state=np.asarray(env.get_sim_state(), dtype=np.float64).copy(),
                frames={camera: np.stack(f) for camera, f in frames.items()})
            episodes.append(episode)
            if on_episode is not None:
                on_episode(episode)
    finally:
        with contextlib.suppress(Exception):
            env.close()
    return episodes


def _keep(frames: dict[str, list[np.ndarray]], obs: dict) -> None:
    for camera, kept in frames.items():
        kept.append(np.ascontiguousarray(obs[f"{camera}_image"][::-1, ::-1]))
