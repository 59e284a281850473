"""One episode: reset the env to a trial's init state, ask the policy, run chunks open loop."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from worldvla_bench.atomic import atomic_path
from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.seeding import LEGACY_SEEDING, SceneSeed
from worldvla_bench.errors import BenchError, ServerUnreachableError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy, validate_chunk
from worldvla_bench.records import EpisodeRecord, slugify
from worldvla_bench.run_dir import EPISODES_DIR, VIDEOS_DIR, save_episode_arrays


def run_episode(
    env: LiberoEnv,
    policy: Policy,
    context: EpisodeContext,
    policy_name: str,
    episode_path: Path | None = None,
    video_path: Path | None = None,
    video_fps: int = 20,
    video_every: int = 1,
    save_frames: bool = False,
    scene: SceneSeed | None = None,
    frame_cameras: tuple[str, ...] | None = None,
) -> EpisodeRecord:
    """Run one episode and return its record; policy errors end the episode as an error record,
    except a policy server unreachable through its retries (`ServerUnreachableError`: raised, the
    run stops).

    An exception raised by the simulator's `step` ends the episode the same way, and marks the
    record `extra["simulator_failed"]`: the simulator may be in a bad state, and the caller
    must rebuild it before the next episode (the worker does).

    Times in the record exclude building the simulator (a worker's first episode does that; it
    is recorded as `env_build_s`).

    A policy that raises `EndEpisode` ends the episode as a failure (not an error) after the
    actions it hands over, unless they succeed; its reason goes to `extra["ended_by_policy"]`.

    Success is checked after every policy step (never during the wait steps), as in the
    published LIBERO evaluation scripts. The policy's observation profile is applied here
    (`ObservationPipeline`): prepared images and history frames before `act`, the gripper
    mapped after it. `episode_path` receives the executed actions and the initial and final
    simulator states (`RunDir` arrays); `video_path` an mp4 of the first camera, one frame every
    `video_every` steps. Cameras are rendered only on steps whose observation the policy reads
    (the last step of each chunk, and the steps before it that the profile's history needs) or
    the video keeps. `save_frames` renders every
    camera at every step and adds them to the arrays as `frames_<camera>` (T+1, H, W, 3) uint8,
    upright, with `states` (T+1, D): the simulator state after reset and after each step, and
    `control_states` (T+1, 14): what robosuite keeps outside the simulator (the gripper command
    and the arm controller's goal, `LiberoEnv.get_control_state`), and
    `proprio` (T+1, 8): the observation's `state`. `frame_cameras` (None: all of the env's)
    limits the cameras save_frames renders at every step and stores.

    `scene` seeds the scene (`worldvla_bench.envs.seeding`); None: the `hashed` seeding with
    the context's seed. The record keeps it (`seeding`, `scene_seed`, `scene_resets`).
    """
    start = time.perf_counter()
    policy_time = env_time = 0.0
    actions: list[np.ndarray] = []
    frames: list[np.ndarray] = []
    camera_key = f"{env.cameras[0]}_image"
    error: str | None = None
    simulator_failed = False
    success = False
    ended_by_policy: str | None = None
    calls = 0

    policy_cameras = frozenset(env.cameras if policy.cameras is None else policy.cameras)
    pipeline = ObservationPipeline(policy.observation_profile,
                                   tuple(c for c in env.cameras if c in policy_cameras),
                                   getattr(policy, "image_size", None))
    video_cameras = frozenset([env.cameras[0]] if video_path is not None else [])
    stored = tuple(c for c in env.cameras if frame_cameras is None or c in frame_cameras)
    if frame_cameras is not None and set(frame_cameras) - set(stored):
        raise BenchError(f"frame cameras {sorted(set(frame_cameras) - set(stored))} are not "
                         f"among the env's {list(env.cameras)}")
    always = frozenset(stored) if save_frames else frozenset()
    env.set_render_cameras(policy_cameras | video_cameras | always)
    t0 = time.perf_counter()
    if scene is None:
        scene = SceneSeed(LEGACY_SEEDING, context.seed, 0)
    obs, _ = env.reset(options={"init_state": context.trial, "scene": scene})
    build_time = env.last_build_time  # the first episode of a worker also builds the simulator
    reset_time = time.perf_counter() - t0 - build_time
    initial_state = env.get_sim_state()
    pipeline.log_frame(obs)
    if video_path is not None:
        frames.append(obs[camera_key])
    frame_store = _FrameStore(env, stored) if save_frames else None
    if frame_store is not None:
        frame_store.add(obs)
    slowest = 0.0  # the longest policy call, seconds
    try:
        t0 = time.perf_counter()
        policy.reset(context)
        slowest = time.perf_counter() - t0
        policy_time += slowest
        done = False
        privileged = bool(getattr(policy, "requires_privileged_state", False))
        while not done:
            if privileged:
                obs = {**obs, "privileged": env.privileged_state()}
            t0 = time.perf_counter()
            chunk, ending = _ask(policy, pipeline.observe(obs))
            chunk = pipeline.to_env(chunk)
            took = time.perf_counter() - t0
            policy_time += took
            slowest = max(slowest, took)
            calls += 1
            # no call follows a chunk the policy ends the episode with: nothing to render for it
            read = pipeline.render_steps(len(chunk)) if ending is None else frozenset()
            for index, action in enumerate(chunk):
                keep_frame = video_path is not None and (len(actions) + 1) % video_every == 0
                wanted = policy_cameras if index in read else frozenset()
                wanted |= video_cameras if keep_frame else frozenset()
                env.set_render_cameras(wanted | always)
                t0 = time.perf_counter()
                try:
                    obs, _, terminated, truncated, info = env.step(action)
                except Exception:
                    simulator_failed = True  # the worker rebuilds it before the next episode
                    raise
                env_time += time.perf_counter() - t0
                if index in read:
                    pipeline.log_frame(obs)
                actions.append(action)
                if frame_store is not None:
                    frame_store.add(obs)
                if keep_frame:
                    frames.append(obs[camera_key])
                if terminated or truncated:
                    success = bool(info["success"])
                    done = True
                    break
            if ending is not None and not done:
                ended_by_policy, done = ending, True
    except ServerUnreachableError:
        raise  # not the episode's fault, and every next one would fail the same: the run stops
    except BenchError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a user's policy may raise anything; the run goes on
        error = f"{type(exc).__name__}: {exc}"

    action_array = np.asarray(actions, dtype=np.float64).reshape(-1, 7)
    outcome = "error" if error else ("success" if success else "failure")
    record = EpisodeRecord.build(
        context,
        policy_name,
        steps=len(actions),
        actions=action_array,
        success=success,
        error=error,
        **scene.to_record(),
        policy_time_s=round(policy_time, 4),
        env_time_s=round(env_time, 4),
        reset_time_s=round(reset_time, 4),
        policy_calls=calls,
        slowest_call_s=round(slowest, 4),
    )
    if episode_path is not None:
        save_episode_arrays(
            episode_path,
            actions=action_array,
            initial_state=initial_state,
            final_state=env.get_sim_state(),
            **(frame_store.arrays() if frame_store is not None else {}),
        )
        record.episode_file = str(Path(EPISODES_DIR) / episode_path.name)
    if video_path is not None and frames:
        named = video_path.with_name(
            f"{video_path.stem}_{outcome}_{slugify(context.instruction)}.mp4"
        )
        write_video(named, frames, max(1, round(video_fps / video_every)))
        record.video = str(Path(VIDEOS_DIR) / named.name)
    if simulator_failed:
        record.extra["simulator_failed"] = True
    if ended_by_policy is not None and error is None:
        record.extra["ended_by_policy"] = ended_by_policy
    record.env_build_s = round(build_time, 4)
    record.wall_time_s = round(time.perf_counter() - start - build_time, 4)
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def _ask(policy: Policy, observation: dict) -> tuple[np.ndarray, str | None]:
    """The policy's chunk (K, 7), checked, and None; or, when it ends the episode, the actions
    it hands over (maybe none) and its reason."""
    try:
        return validate_chunk(policy.act(observation)), None
    except EndEpisode as end:
        if np.asarray(end.actions).size == 0:
            return np.zeros((0, 7)), end.reason
        return validate_chunk(end.actions), end.reason


class _FrameStore:
    """Collects the stored cameras' frames and the simulator state at each step of an episode."""

    def __init__(self, env: LiberoEnv, cameras: tuple[str, ...]) -> None:
        self.env = env
        self.frames: dict[str, list[np.ndarray]] = {camera: [] for camera in cameras}
        self.states: list[np.ndarray] = []
        self.control_states: list[np.ndarray] = []
        self.proprio: list[np.ndarray] = []

    def add(self, obs: dict) -> None:
        self.proprio.append(np.asarray(obs["state"], dtype=np.float64))
        for camera, frames in self.frames.items():
            frames.append(obs[f"{camera}_image"])
        self.states.append(self.env.get_sim_state())
        self.control_states.append(self.env.get_control_state())

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"frames_{camera}": np.stack(f) for camera, f in self.frames.items()}
        arrays["states"] = np.stack(self.states)
        arrays["control_states"] = np.stack(self.control_states)
        arrays["proprio"] = np.stack(self.proprio)
        return arrays


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write uint8 RGB frames to an mp4 (H.264 via imageio-ffmpeg), through a temporary file."""
    import imageio.v2 as imageio

    with atomic_path(path, suffix=".mp4") as tmp, imageio.get_writer(
            tmp, fps=fps, macro_block_size=1, quality=8) as writer:
        for frame in frames:
            writer.append_data(frame)
