"""Demonstrations for training: HDF5 files read upright and resized once, a synthetic set for
tests, and the builder that turns them into action and world-model samples (see `training`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.sequence import Sample, world_step_actions
from worldvla_bench.libero_hdf5 import Demo, write_demos
from worldvla_bench.observation_profiles import resize_image


@dataclass
class DemoSet:
    """Episodes at the model's image size: frames (T+1, S, S, 3) uint8 and actions (T, 7), the
    executed ones (what world-model samples read).

    `labels[e]` (T, 7), when given, are what episode e's action samples target instead of its
    actions (the actions an expert with injected noise meant: `load_demos(action_labels=
    'intended')`); an empty list means the actions everywhere. `world_only[e]` marks an episode
    that feeds world-model samples only (`--world-data`); an empty list means none does. `files`
    are the files of the other episodes, `world_files` those of the world-only ones.
    """

    frames: list[np.ndarray]  # empty for a set read from VQ codes (`token_data`)
    actions: list[np.ndarray]
    texts: list[str]  # the instruction each episode is trained with
    languages: list[str]  # the plain language instruction of each episode
    files: list[str] = field(default_factory=list)
    world_only: list[bool] = field(default_factory=list)
    world_files: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    #: episodes whose labels are the intended actions of their files
    intended_labels: int = 0

    def __len__(self) -> int:
        return len(self.actions)

    def is_world_only(self, episode: int) -> bool:
        return bool(self.world_only[episode]) if self.world_only else False

    def label(self, episode: int) -> np.ndarray:
        """What episode `episode`'s action samples target, (T, 7)."""
        return self.labels[episode] if self.labels else self.actions[episode]

    def action_episodes(self) -> int:
        """Episodes that feed action samples (and world-model samples)."""
        return sum(not self.is_world_only(e) for e in range(len(self)))

    def add_world_only(self, other: DemoSet) -> None:
        """Append `other`'s episodes as world-only ones (their files to `world_files`)."""
        self.world_only = [self.is_world_only(e) for e in range(len(self))] + [True] * len(other)
        if self.labels or other.labels:
            self.labels = ([self.label(e) for e in range(len(self))]
                           + [other.label(e) for e in range(len(other))])
        self.frames += other.frames
        self.actions += other.actions
        self.texts += other.texts
        self.languages += other.languages
        self.world_files += other.files

    def instructions(self) -> dict[str, str]:
        """Plain language instruction -> training text (the policy's 'training' source), of the
        episodes that feed action samples."""
        return {language: text for e, (language, text)
                in enumerate(zip(self.languages, self.texts, strict=True))
                if not self.is_world_only(e)}


def demo_files(paths: Sequence[str | Path]) -> list[Path]:
    """HDF5 files named directly or found (recursively, sorted) in the named directories."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".hdf5", ".h5"))
            if not found:
                raise BenchError(f"no .hdf5 demonstration files under {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BenchError(f"no such demonstration file or directory: {path}")
    return files


def instruction_from_filename(path: str | Path) -> str:
    """LIBERO names files after the task ("LIVING_ROOM_SCENE2_put_both_..._demo.hdf5"); WorldVLA's
    libero_10 training prompts are these names with spaces (scene prefix included)."""
    stem = Path(path).stem
    if stem.endswith("_demo"):
        stem = stem[: -len("_demo")]
    return stem.replace("_", " ").strip()


def load_demos(paths: Sequence[str | Path], image_size: int, view: str = "agentview",
               instruction_source: str = "language", max_demos: int | None = None,
               action_labels: str = "executed") -> DemoSet:
    """Read every demo of the files (at most `max_demos` per file), frames resized once.
    `action_labels` 'intended': `labels` are the demos' `intended_actions` where a file keeps
    them, their executed actions elsewhere (an expert without noise meant what it executed);
    `intended_labels` counts the episodes that had them."""
    from worldvla_bench.worldmodel.data import read_hdf5

    demos = DemoSet([], [], [], [])
    for path in demo_files(paths):
        from_name = instruction_from_filename(path)
        for episode in read_hdf5(path, view=view, limit=max_demos):
            if len(episode.actions) < 1:
                continue
            language = episode.instruction or from_name
            demos.frames.append(resize_image(episode.frames, image_size))
            demos.actions.append(np.asarray(episode.actions, dtype=np.float64))
            if action_labels == "intended":
                meant = episode.intended_actions
                demos.intended_labels += meant is not None
                demos.labels.append(demos.actions[-1] if meant is None
                                    else np.asarray(meant, dtype=np.float64))
            demos.languages.append(language)
            demos.texts.append(language if instruction_source == "language" else from_name)
        demos.files.append(str(path))
    if not len(demos):
        raise BenchError(f"no usable demonstrations in {', '.join(map(str, paths))}")
    return demos


def load_training_demos(data: Sequence[str | Path], world_data: Sequence[str | Path],
                        image_size: int, view: str = "agentview",
                        instruction_source: str = "language", max_demos: int | None = None,
                        action_labels: str = "executed") -> DemoSet:
    """The demo set a training run reads: `data`'s episodes (`load_demos`), then those of
    `world_data` appended as world-only episodes (their executed actions: world samples read
    no labels)."""
    demos = load_demos(data, image_size, view, instruction_source, max_demos, action_labels)
    if world_data:
        demos.add_world_only(load_demos(world_data, image_size, view, instruction_source,
                                        max_demos))
    return demos


def make_synthetic_demos(path: str | Path, n_demos: int = 2, length: int = 12,
                         image_size: int = 64, instruction: str = "put the red block on the plate",
                         seed: int = 0, wrist: bool = True) -> Path:
    """Write a tiny HDF5 file in the LIBERO layout (for tests and smoke runs); returns its path.

    Frames show a coloured square that moves with the actions (so the world model has something
    to learn); they are stored upside down, as LIBERO renders them. Actions are smooth, in the
    LIBERO range, with the gripper at -1/+1.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    demos = []
    for _ in range(n_demos):
        phase = rng.uniform(0, 2 * np.pi, size=6)
        t = np.arange(length)[:, None]
        arm = 0.5 * np.sin(0.4 * t + phase[None]) * np.array([0.9, 0.9, 0.9, 0.3, 0.3, 0.3])
        grip = np.where(np.arange(length) < length // 2, -1.0, 1.0)[:, None]
        actions = np.concatenate([arm, grip], axis=1)
        pos = np.cumsum(actions[:, :2], axis=0) * 0.1 + 0.5 + rng.uniform(-0.1, 0.1, 2)
        frames = np.empty((length, image_size, image_size, 3), np.uint8)
        yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
        for i in range(length):
            cy, cx = np.clip(pos[i - 1] if i else pos[0], 0.15, 0.85)
            img = np.stack([80 + 60 * yy, 90 + 40 * xx, 110 + 0 * xx], -1)
            square = (abs(yy - cy) < 0.12) & (abs(xx - cx) < 0.12)
            img[square] = (220, 40, 40) if actions[i, 6] < 0 else (40, 200, 60)
            frames[i] = img.astype(np.uint8)
        cameras = {"agentview": frames}
        if wrist:  # a mirror image of the scene: stored left-right flipped
            cameras["robot0_eye_in_hand"] = frames[:, ::-1, :]
        ee_pos = np.cumsum(actions[:, :3], 0) * 0.05
        proprio = np.concatenate([ee_pos, np.zeros((length, 3)),
                                  np.repeat(actions[:, 6:], 2, 1) * 0.04], axis=1)
        demos.append(Demo(actions=actions, frames=cameras, states=rng.normal(size=(length, 9)),
                          proprio=proprio))
    write_demos(path, demos, instruction=instruction, problem_name="synthetic",
                env_args={"env_name": "synthetic", "type": 1})
    return path


class SampleBuilder:
    """Token sequences of action and world-model samples from VQ codes of every frame; the
    demo set's world-only episodes give world-model samples only. A world-model sample at step t
    reads frame t and actions t..t+S-1 and answers frame t+S (S = the model config's
    `world_frame_step`; steps with fewer than S actions left give none)."""

    def __init__(self, model: WorldVLA, demos: DemoSet, codes: list[np.ndarray], chunk_size: int):
        self.tokenizer = model.tokenizer
        self.demos = demos
        self.codes = codes
        self.k = chunk_size
        self.s = model.config.world_frame_step
        self.action_index = np.array(
            [(e, t) for e, a in enumerate(demos.actions) if not demos.is_world_only(e)
             for t in range(len(a) - chunk_size + 1)],
            dtype=np.int64,
        ).reshape(-1, 2)
        self.world_index = np.array(
            [(e, t) for e, a in enumerate(demos.actions) for t in range(len(a) - self.s + 1)],
            dtype=np.int64,
        ).reshape(-1, 2)
        if not len(self.action_index):
            longest = max((len(a) for e, a in enumerate(demos.actions)
                           if not demos.is_world_only(e)), default=0)
            raise BenchError(f"no episode has {chunk_size} actions (the longest has {longest}): "
                             "use a smaller chunk size")

    def action_sample(self, episode: int, t: int) -> Sample:
        codes = self.codes[episode]
        prev = codes[t - 1] if t > 0 else codes[t]
        actions = self.demos.label(episode)[t : t + self.k]
        return self.tokenizer.action_sample(self.demos.texts[episode], prev, codes[t], actions)

    def world_sample(self, episode: int, t: int) -> Sample:
        codes = self.codes[episode]
        actions = world_step_actions(self.demos.actions[episode], t, self.s)
        return self.tokenizer.world_sample(codes[t], actions, codes[t + self.s])

    def batch(self, rng: np.random.Generator, batch_size: int, world_weight: float
              ) -> tuple[list[Sample], int]:
        """(samples, number of action samples first in the list)."""
        n_world = 0
        if world_weight > 0:
            n_world = int(round(batch_size * world_weight / (1.0 + world_weight)))
            n_world = min(max(n_world, 1), batch_size - 1)
        n_action = batch_size - n_world
        if n_world and not len(self.world_index):
            raise BenchError(f"no episode has the {self.s} actions a world-model sample reads "
                             "(world_frame_step): use a smaller step")
        samples = [self.action_sample(*self.action_index[i])
                   for i in rng.integers(0, len(self.action_index), n_action)]
        samples += [self.world_sample(*self.world_index[i])
                    for i in rng.integers(0, len(self.world_index), n_world)]
        return samples, n_action
