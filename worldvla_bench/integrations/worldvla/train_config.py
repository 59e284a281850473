"""The training arguments of a WorldVLA run (`TrainConfig`), with their defaults and checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.config import PRESETS

INSTRUCTION_SOURCES = ("language", "filename")
#: what action samples are trained to output: the actions executed (`actions`), or those the
#: recording policy meant where the files keep them (`intended_actions`; DART)
ACTION_LABELS = ("executed", "intended")
#: arguments that may change between a run and its resumption (they do not change the result)
RESUMABLE_CHANGES = frozenset(
    {"out", "stop_at", "progress", "threads", "checkpoint_every", "snapshot_every", "resume",
     "device"}
)
#: arguments added after checkpoints were made, with the value those checkpoints were trained
#: with (a resumed run compares against these when its checkpoint does not record them)
LEGACY_TRAIN_ARGS: dict[str, Any] = {"world_data": [], "image_loss_weight": 0.04,
                                     "world_frame_step": 1, "action_labels": "executed",
                                     "tokens": None}


@dataclass
class TrainConfig:
    """Arguments of one training run (stored in every checkpoint).

    `steps` are transformer optimizer steps (0 = train the VQ-VAE only); `vq_steps` VQ-VAE steps
    (skipped when `vq_from` names a checkpoint whose VQ-VAE is reused). `stop_at` ends this
    invocation after that many transformer steps (with a checkpoint), to resume later.
    `snapshot_every` N keeps, every N transformer steps, an evaluation-only float16 copy of the
    model (`export_checkpoint`'s format) as `snapshots/step_NNNNN.pt` (learning curves).
    `device` is any torch device ('cpu', 'cuda', 'cuda:1', ...); `bf16` None autocasts the
    transformer to bfloat16 on CUDA only (False: never; True: refused off CUDA). Launched by
    `torchrun` (WORLD_SIZE > 1) the transformer trains with DDP, `batch_size` the global batch
    split over the ranks (see `trainer`).

    `world_data`: more HDF5 demo files or directories whose episodes feed world-model samples
    only (e.g. noisy-expert episodes, failures included); `data` feeds both kinds. The VQ-VAE
    trains on the frames of both. `image_loss_weight` is the per-class cross-entropy weight of
    image-code targets (the model config's; 0.04 as in WorldVLA, where a half world-model batch
    then gives image codes about 4% of the loss). `world_frame_step` S: world-model samples
    predict frame t+S from frame t and actions t..t+S-1 (the model config's; WorldVLA's is 1).
    `action_labels` 'intended': action samples target the actions the recording policy meant
    (`intended_actions`, in files recorded from an expert with injected noise; the executed ones
    where a file has none), while world-model samples always read the executed actions, which
    made the frames.

    `tokens`: train the transformer on a token file (`token_data`: demos as the VQ codes of
    `vq_from`, which must be the VQ-VAE that encoded them) instead of `data`; its world-only
    episodes feed world-model samples when `world_model_weight` > 0 and are left out otherwise.
    The same samples as training on the demos it was made from, on any machine.
    """

    data: list[str]
    out: str
    config: str = "tiny"
    chunk_size: int = 5
    world_model_weight: float = 0.0
    world_data: list[str] = field(default_factory=list)
    image_loss_weight: float = 0.04
    world_frame_step: int = 1
    action_mask: bool = True
    action_labels: str = "executed"
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
    tokens: str | None = None
    checkpoint_every: int = 100
    snapshot_every: int | None = None
    stop_at: int | None = None
    threads: int = 1
    device: str = "cpu"
    bf16: bool | None = None
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        self.data = [str(p) for p in ([self.data] if isinstance(self.data, str | Path)
                                      else self.data)]
        self.world_data = [str(p) for p in ([self.world_data]
                                            if isinstance(self.world_data, str | Path)
                                            else self.world_data or [])]
        self.out = str(self.out)
        if self.config not in PRESETS:
            raise BenchError(f"unknown model config {self.config!r}; choose from {sorted(PRESETS)}")
        if self.action_labels not in ACTION_LABELS:
            raise BenchError(f"action labels must be one of {ACTION_LABELS}, "
                             f"got {self.action_labels!r}")
        if self.instruction_source not in INSTRUCTION_SOURCES:
            raise BenchError(f"instruction source must be one of {INSTRUCTION_SOURCES}, "
                             f"got {self.instruction_source!r}")
        checks = [
            (not (self.data and self.tokens), "train on demos (data) or on a token file "
                                              "(tokens), not both"),
            (not self.tokens or bool(self.vq_from),
             "a token file needs the VQ-VAE that encoded it (vq_from, --vq-from)"),
            (not (self.tokens and self.world_data), "a token file holds its world-only episodes: "
                                                    "no world data beside it"),
            (self.chunk_size >= 1, "chunk size must be >= 1"),
            (self.world_model_weight >= 0, "world-model weight must be >= 0"),
            (self.image_loss_weight >= 0, "image loss weight must be >= 0"),
            (self.world_frame_step >= 1, "world frame step must be >= 1"),
            (not self.world_data or self.world_model_weight > 0,
             "world data feeds world-model samples only: it needs a world-model weight > 0"),
            (self.steps >= 0 and self.vq_steps >= 0, "steps must be >= 0"),
            (self.batch_size >= 1 and self.vq_batch_size >= 1, "batch sizes must be >= 1"),
            (self.world_model_weight == 0 or self.batch_size >= 2,
             "a world-model weight > 0 needs a batch size >= 2"),
            (self.checkpoint_every >= 1, "checkpoint interval must be >= 1"),
            (self.snapshot_every is None or self.snapshot_every >= 1,
             "snapshot interval must be >= 1"),
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
