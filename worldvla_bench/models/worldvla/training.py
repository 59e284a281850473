"""Training WorldVLA on LIBERO/robomimic demonstrations: the VQ-VAE first, then the transformer.

Data: one or more HDF5 files (or directories of them) in the LIBERO layout
(`data/demo_N/obs/agentview_rgb`, `actions`), read with `worldvla_bench.worldmodel.data.read_hdf5`
(frames rotated upright like the env's observations) and resized once to the model's image size
with the same resize the `worldvla` observation profile applies at evaluation time.

Samples, as in WorldVLA's data generation:
- action sample at step t: prompt = instruction + frame t-1 + frame t (frame 0 twice at t=0, as
  the policy does at its first call), answer = the K actions t..t+K-1 (steps with fewer than K
  actions left are skipped), then end of turn;
- world-model sample at step t: prompt = frame t + action t, answer = frame t+1.

Each batch of B sequences holds ``round(B * W / (1 + W))`` world-model samples (at least one when
W > 0, at most B - 1) and action samples for the rest, with W = `world_model_weight` the number of
world samples per action sample (WorldVLA's mix, one of each per time step, is W = 1; W = 0 trains
the action model alone). The loss is one weighted cross-entropy over every answer token of the
batch, with the model's per-class weight (0.04) on image-code targets.

Checkpoints (`last.pt` while training, with optimizer and RNG state, for resuming; `final.pt` at
the end, weights only) carry the model config, the training arguments, the instruction source and
the instructions seen, and load with `load_checkpoint` (or `WorldVLA.load`). They are written
atomically; re-running the same command resumes from `last.pt` and gives the same losses as an
uninterrupted run. `losses.csv` and `losses.png` are rewritten at every checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.models.worldvla.config import PRESETS, WorldVLAConfig, preset
from worldvla_bench.models.worldvla.generation import forward_sequence
from worldvla_bench.models.worldvla.model import WorldVLA
from worldvla_bench.models.worldvla.sequence import Sample, collate
from worldvla_bench.models.worldvla.transformer import lm_loss
from worldvla_bench.models.worldvla.vq import images_to_tensor
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.records import write_atomic

CHECKPOINT_FORMAT = "worldvla_bench.worldvla/1"
LAST_CHECKPOINT = "last.pt"
FINAL_CHECKPOINT = "final.pt"
LOSSES_CSV = "losses.csv"
LOSSES_PNG = "losses.png"
INSTRUCTION_SOURCES = ("language", "filename")
#: arguments that may change between a run and its resumption (they do not change the result)
RESUMABLE_CHANGES = frozenset(
    {"out", "stop_at", "progress", "threads", "checkpoint_every", "resume"}
)
LOSS_COLUMNS = ("stage", "step", "loss", "action_loss", "world_loss", "recon_loss", "lr",
                "elapsed_s")


@dataclass
class TrainConfig:
    """Arguments of one training run (stored in every checkpoint).

    `steps` are transformer optimizer steps (0 = train the VQ-VAE only); `vq_steps` VQ-VAE steps
    (skipped when `vq_from` names a checkpoint whose VQ-VAE is reused). `stop_at` ends this
    invocation after that many transformer steps (with a checkpoint), to resume later.
    """

    data: list[str]
    out: str
    config: str = "tiny"
    chunk_size: int = 5
    world_model_weight: float = 0.0
    action_mask: bool = True
    steps: int = 2000
    vq_steps: int = 1000
    batch_size: int = 8
    vq_batch_size: int = 32
    lr: float = 3e-4
    vq_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    vq_restart_every: int = 50
    seed: int = 0
    view: str = "agentview"
    instruction_source: str = "language"
    max_demos: int | None = None
    vq_from: str | None = None
    checkpoint_every: int = 100
    stop_at: int | None = None
    threads: int = 1
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        self.data = [str(p) for p in ([self.data] if isinstance(self.data, str | Path)
                                      else self.data)]
        self.out = str(self.out)
        if self.config not in PRESETS:
            raise BenchError(f"unknown model config {self.config!r}; choose from {sorted(PRESETS)}")
        if self.instruction_source not in INSTRUCTION_SOURCES:
            raise BenchError(f"instruction source must be one of {INSTRUCTION_SOURCES}, "
                             f"got {self.instruction_source!r}")
        checks = [
            (self.chunk_size >= 1, "chunk size must be >= 1"),
            (self.world_model_weight >= 0, "world-model weight must be >= 0"),
            (self.steps >= 0 and self.vq_steps >= 0, "steps must be >= 0"),
            (self.batch_size >= 1 and self.vq_batch_size >= 1, "batch sizes must be >= 1"),
            (self.world_model_weight == 0 or self.batch_size >= 2,
             "a world-model weight > 0 needs a batch size >= 2"),
            (self.checkpoint_every >= 1, "checkpoint interval must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise BenchError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------- data


@dataclass
class DemoSet:
    """Episodes at the model's image size: frames (T+1, S, S, 3) uint8 and actions (T, 7)."""

    frames: list[np.ndarray]
    actions: list[np.ndarray]
    texts: list[str]  # the instruction each episode is trained with
    languages: list[str]  # the plain language instruction of each episode
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def instructions(self) -> dict[str, str]:
        """Plain language instruction -> training text (the policy's 'training' source)."""
        return dict(zip(self.languages, self.texts, strict=True))


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
               instruction_source: str = "language", max_demos: int | None = None) -> DemoSet:
    """Read every demo of the files (at most `max_demos` per file), frames resized once."""
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
            demos.languages.append(language)
            demos.texts.append(language if instruction_source == "language" else from_name)
        demos.files.append(str(path))
    if not len(demos):
        raise BenchError(f"no usable demonstrations in {', '.join(map(str, paths))}")
    return demos


def make_synthetic_demos(path: str | Path, n_demos: int = 2, length: int = 12,
                         image_size: int = 64, instruction: str = "put the red block on the plate",
                         seed: int = 0, wrist: bool = True) -> Path:
    """Write a tiny HDF5 file in the LIBERO layout (for tests and smoke runs); returns its path.

    Frames show a coloured square that moves with the actions (so the world model has something
    to learn); they are stored upside down, as LIBERO renders them. Actions are smooth, in the
    LIBERO range, with the gripper at -1/+1.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        data = handle.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {"language_instruction": instruction, "problem_name": "synthetic"}
        )
        data.attrs["env_args"] = json.dumps({"env_name": "synthetic", "type": 1})
        data.attrs["total"] = n_demos * length
        for d in range(n_demos):
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
            demo = data.create_group(f"demo_{d}")
            demo.attrs["num_samples"] = length
            obs = demo.create_group("obs")
            obs.create_dataset("agentview_rgb", data=frames[:, ::-1, ::-1])
            if wrist:
                obs.create_dataset("eye_in_hand_rgb", data=frames[:, :, ::-1])
            obs.create_dataset("ee_pos", data=np.cumsum(actions[:, :3], 0) * 0.05)
            obs.create_dataset("gripper_states", data=np.repeat(actions[:, 6:], 2, 1) * 0.04)
            demo.create_dataset("actions", data=actions)
            demo.create_dataset("states", data=rng.normal(size=(length, 9)))
            demo.create_dataset("rewards", data=np.eye(1, length, length - 1)[0])
            demo.create_dataset("dones", data=np.eye(1, length, length - 1)[0].astype(np.uint8))
    return path


class SampleBuilder:
    """Token sequences of action and world-model samples from VQ codes of every frame."""

    def __init__(self, model: WorldVLA, demos: DemoSet, codes: list[np.ndarray], chunk_size: int):
        self.tokenizer = model.tokenizer
        self.demos = demos
        self.codes = codes
        self.k = chunk_size
        self.action_index = np.array(
            [(e, t) for e, a in enumerate(demos.actions) for t in range(len(a) - chunk_size + 1)],
            dtype=np.int64,
        ).reshape(-1, 2)
        self.world_index = np.array(
            [(e, t) for e, a in enumerate(demos.actions) for t in range(len(a))], dtype=np.int64
        ).reshape(-1, 2)
        if not len(self.action_index):
            longest = max(len(a) for a in demos.actions)
            raise BenchError(f"no episode has {chunk_size} actions (the longest has {longest}): "
                             "use a smaller chunk size")

    def action_sample(self, episode: int, t: int) -> Sample:
        codes = self.codes[episode]
        prev = codes[t - 1] if t > 0 else codes[t]
        actions = self.demos.actions[episode][t : t + self.k]
        return self.tokenizer.action_sample(self.demos.texts[episode], prev, codes[t], actions)

    def world_sample(self, episode: int, t: int) -> Sample:
        codes = self.codes[episode]
        return self.tokenizer.world_sample(codes[t], self.demos.actions[episode][t], codes[t + 1])

    def batch(self, rng: np.random.Generator, batch_size: int, world_weight: float
              ) -> tuple[list[Sample], int]:
        """(samples, number of action samples first in the list)."""
        n_world = 0
        if world_weight > 0:
            n_world = int(round(batch_size * world_weight / (1.0 + world_weight)))
            n_world = min(max(n_world, 1), batch_size - 1)
        n_action = batch_size - n_world
        samples = [self.action_sample(*self.action_index[i])
                   for i in rng.integers(0, len(self.action_index), n_action)]
        samples += [self.world_sample(*self.world_index[i])
                    for i in rng.integers(0, len(self.world_index), n_world)]
        return samples, n_action


# ---------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save through a temporary sibling and an atomic rename."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a training directory (its final.pt, else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT):
            if (path / name).exists():
                return path / name
        raise BenchError(f"{path} holds no {FINAL_CHECKPOINT} or {LAST_CHECKPOINT}")
    if not path.exists():
        raise BenchError(f"no such checkpoint: {path}")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt, truncated or foreign file
        raise BenchError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
        raise BenchError(f"{path} is not a WorldVLA checkpoint (no config/state_dict)")
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[WorldVLA, dict[str, Any]]:
    """(model in eval mode, metadata: train_args, chunk_size, action_mask, instruction_source,
    instructions, stage, step). Plain `WorldVLA.save` files load too, with default metadata."""
    data = read_checkpoint(path, map_location)
    model = WorldVLA(WorldVLAConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    model.eval()
    args = data.get("train_args") or {}
    meta = {
        "path": str(resolve_checkpoint(path)),
        "format": data.get("format"),
        "train_args": args,
        "chunk_size": int(data.get("chunk_size", args.get("chunk_size", 5))),
        "action_mask": bool(data.get("action_mask", args.get("action_mask", True))),
        "world_model_weight": float(data.get("world_model_weight",
                                             args.get("world_model_weight", 0.0))),
        "instruction_source": data.get("instruction_source",
                                       args.get("instruction_source", "language")),
        "instructions": dict(data.get("instructions") or {}),
        "stage": data.get("stage", "done"),
        "step": int(data.get("step", 0)),
        "vq_step": int(data.get("vq_step", 0)),
    }
    return model, meta


# ------------------------------------------------------------------------------------ training


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    losses: list[dict[str, Any]]
    steps_per_s: float | None
    vq_steps_per_s: float | None
    stopped_early: bool


def _lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    warmup = config.warmup_steps if config.warmup_steps is not None else min(100,
                                                                             config.steps // 10)
    if warmup and step < warmup:
        return config.lr * (step + 1) / warmup
    span = max(1, config.steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def _restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    now = config.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
             if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if diffs:
        raise BenchError(f"{path} was trained with other arguments ({'; '.join(diffs)}): "
                         "pass the same arguments to resume, or another --out")


def _encode_all(model: WorldVLA, demos: DemoSet, batch: int = 256) -> list[np.ndarray]:
    model.vq.eval()
    codes = []
    with torch.no_grad():
        for frames in demos.frames:
            parts = [model.vq.encode(images_to_tensor(frames[i : i + batch]))
                     for i in range(0, len(frames), batch)]
            codes.append(torch.cat(parts).numpy().astype(np.int64))
    return codes


def _restart_dead_codes(model: WorldVLA, usage: torch.Tensor, x: torch.Tensor,
                        rng: np.random.Generator) -> int:
    """Move codes unused since the last restart onto random encoder outputs of batch `x`."""
    dead = torch.nonzero(usage == 0).flatten()
    if not len(dead):
        return 0
    with torch.no_grad():
        z = model.vq.encoder(x).permute(0, 2, 3, 1).reshape(-1, model.config.vq.embed_dim)
        pick = torch.from_numpy(rng.integers(0, len(z), len(dead)))
        model.vq.quantizer.codebook.weight.data[dead] = z[pick]
    return len(dead)


class Trainer:
    """One training run: `run()` trains (or resumes) and returns a `TrainResult`."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.losses: list[dict[str, Any]] = []
        self.stage = "vq"
        self.vq_step = 0
        self.step = 0
        self.start_time = time.perf_counter()
        self.elapsed_before = 0.0

    # -- state
    def _payload(self, full: bool) -> dict[str, Any]:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": self.model.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "train_args": self.config.to_dict(),
            "chunk_size": self.config.chunk_size,
            "action_mask": self.config.action_mask,
            "world_model_weight": self.config.world_model_weight,
            "instruction_source": self.config.instruction_source,
            "instructions": self.demos.instructions(),
            "data": {"files": self.demos.files, "episodes": len(self.demos)},
            "stage": self.stage,
            "vq_step": self.vq_step,
            "step": self.step,
            "losses": self.losses,
            "elapsed_s": self._elapsed(),
            "torch_version": str(torch.__version__),
        }
        if full:
            payload["rng"] = _rng_state(self.rng)
            payload["vq_optimizer"] = self.vq_opt.state_dict()
            payload["optimizer"] = self.opt.state_dict()
            payload["vq_usage"] = self.vq_usage.clone()
        return payload

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start_time

    def save(self) -> Path:
        path = save_checkpoint(self.out / LAST_CHECKPOINT, self._payload(full=True))
        write_losses(self.losses, self.out)
        return path

    def _build(self) -> dict[str, Any] | None:
        config = self.config
        torch.set_num_threads(max(1, int(config.threads)))
        self.out.mkdir(parents=True, exist_ok=True)
        saved = None
        last = self.out / LAST_CHECKPOINT
        if config.resume and last.exists():
            saved = read_checkpoint(last)
            _check_resumable(saved.get("train_args") or {}, config, last)
        model_config = preset(config.config)
        self.demos = load_demos(config.data, model_config.vq.image_size, config.view,
                                config.instruction_source, config.max_demos)
        torch.manual_seed(config.seed)
        self.model = WorldVLA(model_config)
        self.rng = np.random.default_rng(config.seed)
        self.vq_opt = torch.optim.Adam(self.model.vq.parameters(), lr=config.vq_lr)
        self.opt = torch.optim.AdamW(self.model.transformer.parameters(), lr=config.lr,
                                     betas=(0.9, 0.95), weight_decay=config.weight_decay)
        self.vq_usage = torch.zeros(model_config.vq.codebook_size, dtype=torch.long)
        if saved is not None:
            self.model.load_state_dict(saved["state_dict"])
            self.stage, self.vq_step, self.step = saved["stage"], saved["vq_step"], saved["step"]
            self.losses = list(saved.get("losses") or [])
            self.elapsed_before = float(saved.get("elapsed_s", 0.0))
            if "rng" in saved:
                _restore_rng(self.rng, saved["rng"])
                self.vq_opt.load_state_dict(saved["vq_optimizer"])
                self.opt.load_state_dict(saved["optimizer"])
                self.vq_usage = saved["vq_usage"].clone()
        elif config.vq_from:
            source = read_checkpoint(config.vq_from)
            vq_state = {k[len("vq."):]: v for k, v in source["state_dict"].items()
                        if k.startswith("vq.")}
            source_vq = WorldVLAConfig.from_dict(source["config"]).vq
            if source_vq != model_config.vq:
                raise BenchError(f"VQ-VAE of {config.vq_from} has another configuration "
                                 f"({source_vq}) than {config.config!r} ({model_config.vq})")
            self.model.vq.load_state_dict(vq_state)
            self.stage = "transformer"
            self.vq_step = int(source.get("vq_step", 0))
        return saved

    # -- phases
    def _train_vq(self) -> float | None:
        config, model = self.config, self.model
        all_frames = np.concatenate(self.demos.frames)
        model.vq.train()
        bar = _bar(config.vq_steps, self.vq_step, "VQ-VAE", config.progress)
        t0, start_step = time.perf_counter(), self.vq_step
        try:
            while self.vq_step < config.vq_steps:
                idx = self.rng.integers(0, len(all_frames), config.vq_batch_size)
                x = images_to_tensor(all_frames[idx])
                if self.vq_step == 0:  # data-dependent codebook init
                    self.vq_usage.zero_()
                    _restart_dead_codes(model, self.vq_usage, x, self.rng)
                out = model.vq(x)
                self.vq_opt.zero_grad(set_to_none=True)
                out.loss.backward()
                self.vq_opt.step()
                self.vq_usage += torch.bincount(out.codes.flatten(),
                                                minlength=len(self.vq_usage))
                self.vq_step += 1
                restart = config.vq_restart_every
                if restart and self.vq_step % restart == 0 and self.vq_step < config.vq_steps:
                    _restart_dead_codes(model, self.vq_usage, x, self.rng)
                    self.vq_usage.zero_()
                self.losses.append(_row("vq", self.vq_step, out.loss.item(),
                                        recon_loss=out.recon_loss.item(), lr=config.vq_lr,
                                        elapsed_s=self._elapsed()))
                bar.update(1)
                bar.set_postfix(recon=f"{out.recon_loss.item():.4f}", refresh=False)
                if self.vq_step % config.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
        model.vq.eval()
        done = self.vq_step - start_step
        return done / (time.perf_counter() - t0) if done else None

    def _train_transformer(self) -> tuple[float | None, bool]:
        config, model = self.config, self.model
        builder = SampleBuilder(model, self.demos, _encode_all(model, self.demos),
                                config.chunk_size)
        model.transformer.train()
        bar = _bar(config.steps, self.step, "transformer", config.progress)
        t0, start_step, stopped = time.perf_counter(), self.step, False
        try:
            while self.step < config.steps:
                if config.stop_at is not None and self.step >= config.stop_at:
                    stopped = True
                    break
                lr = _lr_at(self.step, config)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                samples, n_action = builder.batch(self.rng, config.batch_size,
                                                  config.world_model_weight)
                batch = collate(samples)
                logits = forward_sequence(model.transformer, batch.input_ids, batch.valid,
                                          action_mask=config.action_mask)
                loss = lm_loss(logits, batch.labels, model.class_weight)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.transformer.parameters(),
                                                   config.grad_clip)
                self.opt.step()
                with torch.no_grad():
                    action_loss = float(lm_loss(logits[:n_action], batch.labels[:n_action],
                                                model.class_weight))
                    world_loss = (float(lm_loss(logits[n_action:], batch.labels[n_action:],
                                                model.class_weight))
                                  if n_action < len(samples) else float("nan"))
                self.step += 1
                self.losses.append(_row("transformer", self.step, loss.item(),
                                        action_loss=action_loss, world_loss=world_loss, lr=lr,
                                        elapsed_s=self._elapsed()))
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if self.step % config.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
        model.transformer.eval()
        done = self.step - start_step
        return (done / (time.perf_counter() - t0) if done else None), stopped

    def run(self) -> TrainResult:
        saved = self._build()
        if saved is not None and saved.get("stage") == "done":
            final = self.out / FINAL_CHECKPOINT
            return TrainResult(self.out, final if final.exists() else self.out / LAST_CHECKPOINT,
                               self.losses, None, None, False)
        vq_rate = rate = None
        stopped = False
        # an interrupted run resumes from its last periodic checkpoint (a state saved mid-step
        # would not be consistent)
        if self.stage == "vq":
            vq_rate = self._train_vq()
            self.stage = "transformer"
            self.save()
        if self.config.steps > 0:
            rate, stopped = self._train_transformer()
        if stopped:
            return TrainResult(self.out, self.save(), self.losses, rate, vq_rate, True)
        self.stage = "done"
        self.save()
        final = save_checkpoint(self.out / FINAL_CHECKPOINT, self._payload(full=False))
        return TrainResult(self.out, final, self.losses, rate, vq_rate, False)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a WorldVLA model; see the module docstring."""
    return Trainer(config).run()


def _bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled,
                dynamic_ncols=True, file=sys.stderr)


def _row(stage: str, step: int, loss: float, **values: float) -> dict[str, Any]:
    row: dict[str, Any] = {c: float("nan") for c in LOSS_COLUMNS}
    row.update(stage=stage, step=step, loss=loss, **values)
    return row


# ------------------------------------------------------------------------------------- outputs


def write_losses(losses: Sequence[dict[str, Any]], out: str | Path) -> tuple[Path, Path]:
    """`losses.csv` (one row per optimizer step) and `losses.png` (curves), written atomically."""
    out = Path(out)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(LOSS_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in losses:
        writer.writerow({k: ("" if isinstance(v, float) and v != v else v)
                         for k, v in row.items()})
    write_atomic(out / LOSSES_CSV, text.getvalue().encode())
    write_atomic(out / LOSSES_PNG, plot_losses(losses))
    return out / LOSSES_CSV, out / LOSSES_PNG


def plot_losses(losses: Sequence[dict[str, Any]]) -> bytes:
    """PNG bytes: VQ-VAE reconstruction loss and transformer losses against step (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_vq, ax_tf = fig.subplots(1, 2)
    for ax, stage, keys in ((ax_vq, "vq", ("recon_loss", "loss")),
                            (ax_tf, "transformer", ("loss", "action_loss", "world_loss"))):
        rows = [r for r in losses if r.get("stage") == stage]
        for key in keys:
            xs = [r["step"] for r in rows if r.get(key) == r.get(key)]
            ys = [r[key] for r in rows if r.get(key) == r.get(key)]
            if ys:
                ax.plot(xs, ys, label=key, linewidth=1)
        ax.set_title("VQ-VAE" if stage == "vq" else "transformer")
        ax.set_xlabel("step")
        if any(r.get("loss", 0) > 0 for r in rows):
            ax.set_yscale("log")
        if rows:
            ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- CLI


def _on_off(value: str) -> bool:
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def add_train_arguments(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    """The model/optimisation flags shared by `train` and `ablation`."""
    d = TrainConfig
    parser.add_argument("--data", nargs="+", required=data_required, metavar="PATH",
                        help="LIBERO/robomimic .hdf5 demo files or directories of them")
    parser.add_argument("--config", default=d.config, choices=sorted(PRESETS),
                        help="model size preset")
    parser.add_argument("--chunk-size", type=int, default=d.chunk_size,
                        help="K actions per action sample (WorldVLA: 5, 10 on libero_10)")
    parser.add_argument("--steps", type=int, default=d.steps, help="transformer steps")
    parser.add_argument("--vq-steps", type=int, default=d.vq_steps, help="VQ-VAE steps")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--vq-batch-size", type=int, default=d.vq_batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help="transformer peak learning rate")
    parser.add_argument("--vq-lr", type=float, default=d.vq_lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--view", default=d.view, help="camera of the demos (agentview)")
    parser.add_argument("--instruction-source", default=d.instruction_source,
                        choices=INSTRUCTION_SOURCES,
                        help="training prompt text: the file's language instruction, or the "
                             "file name (WorldVLA's libero_10 prompts, scene prefix included)")
    parser.add_argument("--max-demos", type=int, default=None, help="demos per file (default all)")
    parser.add_argument("--vq-from", default=None, metavar="CKPT",
                        help="reuse the VQ-VAE of this checkpoint (skips VQ training)")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register `worldvla-bench train` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "train", help="train a WorldVLA model on demonstrations (VQ-VAE, then transformer)",
        description="Train WorldVLA: the VQ-VAE on the demo frames, then the transformer on "
                    "action samples (instruction + previous + current frame -> K actions) mixed "
                    "with world-model samples (frame + action -> next frame). Re-running the "
                    "same command resumes from OUT/last.pt.",
    )
    add_train_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (checkpoints, losses)")
    parser.add_argument("--world-model-weight", type=float, default=0.0, metavar="W",
                        help="world-model samples per action sample in each batch (0 = action "
                             "model only; WorldVLA's mix is 1)")
    parser.add_argument("--action-mask", type=_on_off, default=True, metavar="on|off",
                        help="WorldVLA's attention mask between action blocks (default on)")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop (with a checkpoint) after this transformer step; resume later")
    parser.add_argument("--restart", action="store_true",
                        help="ignore OUT/last.pt and train from scratch")
    parser.set_defaults(func=cmd_train)
    return parser


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    values = {
        "data": args.data, "out": getattr(args, "out", None), "config": args.config,
        "chunk_size": args.chunk_size, "steps": args.steps, "vq_steps": args.vq_steps,
        "batch_size": args.batch_size, "vq_batch_size": args.vq_batch_size, "lr": args.lr,
        "vq_lr": args.vq_lr, "seed": args.seed, "view": args.view,
        "instruction_source": args.instruction_source, "max_demos": args.max_demos,
        "vq_from": args.vq_from, "checkpoint_every": args.checkpoint_every,
        "threads": args.threads, "progress": not args.no_progress,
        "world_model_weight": getattr(args, "world_model_weight", 0.0),
        "action_mask": getattr(args, "action_mask", True),
        "stop_at": getattr(args, "stop_at", None),
        "resume": not getattr(args, "restart", False),
    }
    values.update(overrides)
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train(config)
    transformer = [r for r in result.losses if r["stage"] == "transformer"]
    if transformer:
        print(f"transformer step {transformer[-1]['step']}: loss {transformer[-1]['loss']:.4f}")
    if result.steps_per_s:
        print(f"{result.steps_per_s:.2f} transformer steps/s")
    state = "stopped (resume with the same command)" if result.stopped_early else "done"
    print(f"{state}: {result.checkpoint}; losses in {result.out / LOSSES_CSV}, "
          f"{result.out / LOSSES_PNG}")
    return 0


def iter_loss_rows(path: str | Path) -> Iterator[dict[str, str]]:
    """Rows of a `losses.csv` (strings), for notebooks."""
    with Path(path).open(encoding="utf-8") as stream:
        yield from csv.DictReader(stream)
