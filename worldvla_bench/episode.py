"""One simulated episode: reset the env to a trial's init state, then the shared loop
(`episode_loop`) with the simulator as its stepper: chunks run open loop, one env step each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from worldvla_bench.atomic import atomic_path
from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.seeding import LEGACY_SEEDING, SceneSeed
from worldvla_bench.episode_loop import Stepper, play_episode
from worldvla_bench.errors import BenchError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EpisodeContext, Policy
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
    run stops). The loop is the one the imagined episode shares (`episode_loop.play_episode`);
    the simulator is its stepper (`_Simulator`).

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
    mapped after it. `episode_path` receives the executed actions (and, when the policy reports
    that it meant others, `intended_actions` (T, 7): `Policy.intended_actions`) and the initial
    and final simulator states (`RunDir` arrays); `video_path` an mp4 of the first camera, one
    frame every `video_every` steps. Cameras are rendered only on steps whose observation the
    policy reads (the last step of each chunk, and the steps before it that the profile's
    history needs) or the video keeps. `save_frames` renders every camera at every step and
    adds them to the arrays as `frames_<camera>` (T+1, H, W, 3) uint8, upright, with `states`
    (T+1, D): the simulator state after reset and after each step, and `control_states`
    (T+1, 14): what robosuite keeps outside the simulator (the gripper command and the arm
    controller's goal, `LiberoEnv.get_control_state`), and `proprio` (T+1, 8): the
    observation's `state`. `frame_cameras` (None: all of the env's)
    limits the cameras save_frames renders at every step and stores.

    `scene` seeds the scene (`worldvla_bench.envs.seeding`); None: the `hashed` seeding with
    the context's seed. The record keeps it (`seeding`, `scene_seed`, `scene_resets`).
    """
    start = time.perf_counter()
    policy_cameras = frozenset(env.cameras if policy.cameras is None else policy.cameras)
    pipeline = ObservationPipeline(policy.observation_profile,
                                   tuple(c for c in env.cameras if c in policy_cameras),
                                   getattr(policy, "image_size", None))
    stored = tuple(c for c in env.cameras if frame_cameras is None or c in frame_cameras)
    if frame_cameras is not None and set(frame_cameras) - set(stored):
        raise BenchError(f"frame cameras {sorted(set(frame_cameras) - set(stored))} are not "
                         f"among the env's {list(env.cameras)}")
    simulator = _Simulator(env, policy_cameras, video_every if video_path is not None else None,
                           stored if save_frames else None,
                           bool(getattr(policy, "requires_privileged_state", False)))
    t0 = time.perf_counter()
    if scene is None:
        scene = SceneSeed(LEGACY_SEEDING, context.seed, 0)
    obs, _ = env.reset(options={"init_state": context.trial, "scene": scene})
    build_time = env.last_build_time  # the first episode of a worker also builds the simulator
    reset_time = time.perf_counter() - t0 - build_time
    initial_state = env.get_sim_state()
    simulator.start(obs)
    played = play_episode(simulator, context, policy, pipeline)
    record = played.record(context, policy_name, **scene.to_record(),
                           env_time_s=round(simulator.env_time, 4),
                           reset_time_s=round(reset_time, 4))
    if episode_path is not None:
        meant = played.intended_array
        save_episode_arrays(
            episode_path,
            actions=played.action_array,
            **({"intended_actions": meant} if meant is not None else {}),
            initial_state=initial_state,
            final_state=env.get_sim_state(),
            **(simulator.frame_store.arrays() if simulator.frame_store is not None else {}),
        )
        record.episode_file = str(Path(EPISODES_DIR) / episode_path.name)
    if video_path is not None and simulator.video:
        outcome = "error" if played.error else ("success" if played.success else "failure")
        named = video_path.with_name(
            f"{video_path.stem}_{outcome}_{slugify(context.instruction)}.mp4"
        )
        write_video(named, simulator.video, max(1, round(video_fps / video_every)))
        record.video = str(Path(VIDEOS_DIR) / named.name)
    if simulator.failed:
        record.extra["simulator_failed"] = True
    record.env_build_s = round(build_time, 4)
    record.wall_time_s = round(time.perf_counter() - start - build_time, 4)
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


class _Simulator(Stepper):
    """The simulator steps each action; success and the step limit are the env's (terminated,
    truncated). Renders at each step only the cameras wanted there: the policy's on the steps
    it reads, the first camera on the video's steps (`video_every`; None: no video), every
    stored camera at every step with `stored` (then `frame_store` keeps them). The policy gets
    `privileged` state (`LiberoEnv.privileged_state`) when it asks for it."""

    def __init__(self, env: LiberoEnv, policy_cameras: frozenset[str], video_every: int | None,
                 stored: tuple[str, ...] | None, privileged: bool) -> None:
        self.env, self.policy_cameras, self.privileged = env, policy_cameras, privileged
        self.video_every = video_every
        self.video_cameras = frozenset([env.cameras[0]] if video_every is not None else [])
        self.camera_key = f"{env.cameras[0]}_image"
        self.always = frozenset(stored or ())
        self.frame_store = _FrameStore(env, stored) if stored is not None else None
        #: the video's frames (uint8 (H, W, 3) each)
        self.video: list[np.ndarray] = []
        self.env_time = 0.0  # s, in `env.step`
        #: `env.step` raised: the simulator may be in a bad state (the worker rebuilds it)
        self.failed = False
        env.set_render_cameras(policy_cameras | self.video_cameras | self.always)

    def start(self, obs: dict[str, Any]) -> None:
        """The observation after the env's reset: the video's and the stored first frames."""
        self.obs = obs
        if self.video_every is not None:
            self.video.append(obs[self.camera_key])
        if self.frame_store is not None:
            self.frame_store.add(obs)

    def observation(self) -> dict[str, Any]:
        if self.privileged:
            return {**self.obs, "privileged": self.env.privileged_state()}
        return self.obs

    def play(self, chunk: np.ndarray, read: frozenset[int],
             actions: list[np.ndarray]) -> Iterator[dict[str, Any]]:
        for index, action in enumerate(chunk):
            keep_frame = (self.video_every is not None
                          and (len(actions) + 1) % self.video_every == 0)
            wanted = self.policy_cameras if index in read else frozenset()
            wanted |= self.video_cameras if keep_frame else frozenset()
            self.env.set_render_cameras(wanted | self.always)
            t0 = time.perf_counter()
            try:
                self.obs, _, terminated, truncated, info = self.env.step(action)
            except Exception:
                self.failed = True  # the worker rebuilds it before the next episode
                raise
            self.env_time += time.perf_counter() - t0
            if index in read:
                yield self.obs
            actions.append(action)
            if self.frame_store is not None:
                self.frame_store.add(self.obs)
            if keep_frame:
                self.video.append(self.obs[self.camera_key])
            if terminated or truncated:
                self.success, self.over = bool(info["success"]), True
                break


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
