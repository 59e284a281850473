"""A success judge for frames: a small CNN that reads one agentview frame and says whether the
task is done, trained on real frames labelled by the simulator's success check.

It is the judge of imagined rollouts (a world model's last frame): every number computed with it
should print the judge's own error on held-out real frames beside it (`SuccessJudge.error_line`).

    judge = load_judge("results/judge/goal.pt")
    p = judge.success_probability(frames, "libero_goal", 4)   # frames (N, H, W, 3) uint8 -> (N,)
    print(judge.error_line())                                  # its held-out error, one line

Design:
- Input: one upright agentview frame, uint8, resized (area) to the judge's `image_size` (64 px
  by default), scaled to [-0.5, 0.5].
- Task conditioning by per-task heads: a shared trunk (4 stride-2 convolutions and one linear
  layer) and one logit per task (`suite/task_id`); a frame's loss reads its task's logit only.
  libero_goal's ten tasks share one scene, so the frame alone cannot say success (a bowl on the
  stove is a success for task 1 and a failure for task 4); a head per task is a linear readout of
  the scene features that each goal needs, with no assumption that tasks share structure (a task
  embedding would, and would need more tasks than the 2-4 we can record to learn it). A task
  without a head is an error, never a guess.
- Imbalance: one episode gives one positive frame (see `judge_data`), so positives are weighted
  by negatives/positives of their task in the training split (`pos_weight`). Probabilities are
  therefore calibrated for a balanced prior; the reported ECE says how far they are off on the
  frames as they come and on final frames.
- Held out by episode, never by frame: frames of one episode are near duplicates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from worldvla_bench.errors import BenchError
from worldvla_bench.worldmodel.judge_data import LabelledFrames, task_key

DEFAULT_IMAGE_SIZE = 64
ECE_BINS = 10
THRESHOLD = 0.5
CHECKPOINT_FORMAT = "worldvla-bench-success-judge/1"


class JudgeNet(nn.Module):
    """Trunk: 4 conv3x3 stride 2 (16, 32, 64, 64 channels, batch norm, ReLU), flatten, linear to
    `width`, ReLU, dropout 0.2; then one logit per task. Input (N, 3, S, S) in [-0.5, 0.5],
    S a multiple of 16."""

    def __init__(self, n_tasks: int, image_size: int = DEFAULT_IMAGE_SIZE, width: int = 64,
                 channels: Sequence[int] = (16, 32, 64, 64)) -> None:
        super().__init__()
        if image_size % 16:
            raise BenchError(f"the judge's image size must be a multiple of 16, got {image_size}")
        layers: list[nn.Module] = []
        previous = 3
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            previous = c
        side = image_size // 2 ** len(channels)
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(previous * side * side, width),
                                   nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.heads = nn.Linear(width, n_tasks)

    def forward(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """Logits (N,) of each image's own task."""
        logits = self.heads(self.trunk(images))
        return logits.gather(1, task_index[:, None]).squeeze(1)


def to_input(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) upright frames -> float (N, 3, S, S) in [-0.5, 0.5] (area resize)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise BenchError(f"the judge reads uint8 frames (N, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="area")
    return x - 0.5


@dataclass
class SuccessJudge:
    """A trained judge: the net, its tasks, its input size, its held-out metrics and provenance."""

    net: JudgeNet
    tasks: list[str]
    image_size: int
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def task_index(self, suite: str, task_id: int) -> int:
        key = task_key(suite, task_id)
        if key not in self.tasks:
            raise BenchError(f"the judge was not trained on task {key}; it knows {self.tasks}")
        return self.tasks.index(key)

    @torch.no_grad()
    def logits(self, frames: np.ndarray, suite: str, task_id: int,
               batch_size: int = 256) -> np.ndarray:
        """Success logits (N,) of frames (N, H, W, 3) uint8 upright agentview, for one task."""
        index = self.task_index(suite, task_id)
        self.net.eval()
        out = []
        for start in range(0, len(frames), batch_size):
            x = to_input(frames[start:start + batch_size], self.image_size)
            out.append(self.net(x, torch.full((len(x),), index, dtype=torch.long)))
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def success_probability(self, frames: np.ndarray, suite: str, task_id: int) -> np.ndarray:
        """P(success) (N,) in [0, 1] of each frame (N, H, W, 3) uint8, upright agentview."""
        return 1.0 / (1.0 + np.exp(-self.logits(frames, suite, task_id)))

    def error_line(self, scope: str = "final") -> str:
        """One line: the judge's own error on held-out real frames (print it beside any number
        that uses the judge). scope: 'final' (last frames of held-out episodes) or 'frames'."""
        m = self.metrics.get(scope)
        if not m:
            return "judge error on real frames: unknown (no held-out metrics stored)"
        what = "final frames of" if scope == "final" else "frames of"
        return (f"judge error on held-out real {what} {m['episodes']} episodes (n={m['n']}, "
                f"{m['positives']} successes): balanced acc {m['balanced_accuracy']:.3f}, "
                f"precision {_fmt(m['precision'])}, recall {_fmt(m['recall'])}, "
                f"ECE {m['ece']:.3f} ({m['ece_bins']} bins)")

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, "state_dict": self.net.state_dict(),
                    "tasks": [str(t) for t in self.tasks], "image_size": int(self.image_size),
                    "width": int(self.net.heads.in_features), "metrics": _plain(self.metrics),
                    "provenance": _plain(self.provenance)}, path)


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars and arrays converted): what
    `torch.load(weights_only=True)` reads back."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # np.str_, torch's TorchVersion
    return value


def load_judge(path: Path | str) -> SuccessJudge:
    """A judge saved by `SuccessJudge.save` (or `worldvla-bench train-judge`)."""
    path = Path(path)
    if not path.exists():
        raise BenchError(f"no judge checkpoint at {path} (train one with `worldvla-bench "
                         f"train-judge`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path} is not a success-judge checkpoint")
    net = JudgeNet(len(payload["tasks"]), payload["image_size"], payload["width"])
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return SuccessJudge(net, list(payload["tasks"]), int(payload["image_size"]),
                        payload["metrics"], payload["provenance"])


# -- metrics -----------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width probability bins of |mean label - mean prob| x bin share."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    if not len(probs):
        return math.nan
    which = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(labels[inside].mean() - probs[inside].mean())
    return float(total)


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD,
                   bins: int = ECE_BINS) -> dict[str, Any]:
    """Metrics honest under imbalance: accuracy beside the majority rate, balanced accuracy,
    precision, recall, ECE (equal-width bins), Brier score. NaN where undefined; balanced
    accuracy is the mean of recall and specificity, or the one defined when a class is absent."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, bool)
    pred = probs >= threshold
    tp, fp = int(np.sum(pred & labels)), int(np.sum(pred & ~labels))
    fn, tn = int(np.sum(~pred & labels)), int(np.sum(~pred & ~labels))
    n, pos = len(labels), int(labels.sum())
    recall = tp / pos if pos else math.nan
    specificity = tn / (n - pos) if n - pos else math.nan
    return {
        "n": n, "positives": pos,
        "majority_rate": max(pos, n - pos) / n if n else math.nan,
        "accuracy": (tp + tn) / n if n else math.nan,
        "balanced_accuracy": float(np.nanmean([recall, specificity])) if n else math.nan,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": recall,
        "specificity": specificity,
        "ece": expected_calibration_error(probs, labels, bins), "ece_bins": bins,
        "brier": float(np.mean((probs - labels) ** 2)) if n else math.nan,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def judge_probabilities(judge: SuccessJudge, data: LabelledFrames) -> np.ndarray:
    """P(success) of every frame of `data`, each for its own task."""
    probs = np.zeros(len(data))
    for key in np.unique(data.task):
        inside = data.task == key
        suite, task_id = str(key).rsplit("/", 1)
        probs[inside] = judge.success_probability(data.frames[inside], suite, int(task_id))
    return probs


def metrics_table(judge: SuccessJudge, data: LabelledFrames) -> list[dict[str, Any]]:
    """Rows of metrics on `data`: scope 'frames' (every frame, hold frames included), 'recorded'
    (frames of the recorded episodes only), 'final' (each episode's last recorded frame, labelled
    by the episode's success: what a judge of whole episodes reads); per task and over all."""
    probs = judge_probabilities(judge, data)
    scopes = {"frames": np.ones(len(data), bool), "recorded": ~data.hold, "final": data.final}
    rows = []
    for scope, in_scope in scopes.items():
        for key in [*sorted(np.unique(data.task)), "all"]:
            mask = in_scope & ((data.task == key) if key != "all" else True)
            if not mask.any():
                continue
            rows.append({"scope": scope, "task": str(key),
                         "episodes": len(np.unique(data.episode[mask])),
                         **binary_metrics(probs[mask], data.labels[mask])})
    return rows


# -- training ----------------------------------------------------------------------------------
def split_episodes(data: LabelledFrames, held_out: float = 0.25,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held out) over frames, split by episode: within each (task, source,
    outcome) group a `held_out` share of episodes (at least one of a group of two or more)."""
    if not 0.0 < held_out < 1.0:
        raise BenchError(f"held-out share must be in (0, 1), got {held_out}")
    rng = np.random.default_rng(seed)
    episodes = np.unique(data.episode)
    groups: dict[tuple, list[str]] = {}
    for ep in episodes:
        inside = data.episode == ep
        success = bool(data.labels[inside & ~data.hold].any())
        groups.setdefault((data.task[inside][0], data.source[inside][0], success), []).append(ep)
    test: list[str] = []
    for key in sorted(groups):
        members = sorted(groups[key])
        rng.shuffle(members)
        k = round(held_out * len(members))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        test += members[:k]
    held = np.isin(data.episode, test)
    return ~held, held


@dataclass
class TrainConfig:
    """Training settings; defaults train on ~10k frames of 64 px in minutes on 2 CPU cores."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    image_size: int = DEFAULT_IMAGE_SIZE
    held_out: float = 0.25
    seed: int = 0
    shift: int = 2  # px of random translation (replicate padding) at training time
    brightness: float = 0.1  # random brightness scale in [1 - b, 1 + b]


def _augment(x: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    if config.shift:
        s = config.shift
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dx, dy = torch.randint(0, 2 * s + 1, (2,), generator=generator).tolist()
        x = padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    if config.brightness:
        scale = 1 + (torch.rand(len(x), 1, 1, 1, generator=generator) * 2 - 1) * config.brightness
        x = (x + 0.5) * scale - 0.5
    return x


def train_judge(data: LabelledFrames, config: TrainConfig | None = None,
                progress: bool = True, provenance: dict[str, Any] | None = None
                ) -> tuple[SuccessJudge, list[dict[str, Any]]]:
    """Train on the episodes `split_episodes` leaves in; return the judge (its held-out metrics
    stored in `judge.metrics`: scopes 'frames' and 'final' over all tasks) and the held-out
    metrics table (`metrics_table`). Deterministic for a given seed on one machine."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_mask, test_mask = split_episodes(data, config.held_out, config.seed)
    train, test = data.subset(train_mask), data.subset(test_mask)
    if not len(test):
        raise BenchError("no episode held out: record at least two episodes of a task and policy "
                         "(the judge's error must be measured on episodes it never saw)")
    if not train.labels.any():
        raise BenchError("no successful frame in the training split: record successful episodes "
                         "(e.g. the expert) or add hold frames")
    tasks = sorted(np.unique(data.task).tolist())
    task_index = torch.from_numpy(np.searchsorted(tasks, train.task)).long()
    labels = torch.from_numpy(train.labels.astype(np.float32))
    pos_weight = {}
    for key in tasks:
        inside = train.task == key
        pos, neg = int(train.labels[inside].sum()), int((~train.labels[inside]).sum())
        pos_weight[key] = neg / pos if pos else 1.0
        if not pos:
            print(f"warning: no positive frame of task {key} in the training split")
    weights_per_task = torch.tensor([pos_weight[k] for k in tasks], dtype=torch.float32)
    net = JudgeNet(len(tasks), config.image_size)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    images = to_input(train.frames, config.image_size)  # all in memory: ~50 KB per 64 px frame
    n = len(train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr,
                                                    total_steps=config.epochs * steps_per_epoch)
    started = time.perf_counter()
    bar = tqdm(total=config.epochs, desc="train judge", unit="epoch", disable=not progress)
    for _ in range(config.epochs):
        net.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            x = _augment(images[idx], config, generator)
            logits = net(x, task_index[idx])
            y = labels[idx]
            weight = torch.where(y > 0, weights_per_task[task_index[idx]], torch.ones_like(y))
            loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / n:.4f}")
        bar.update()
    bar.close()
    judge = SuccessJudge(net.eval(), tasks, config.image_size)
    rows = metrics_table(judge, test)
    judge.metrics = {row["scope"]: {k: v for k, v in row.items()} for row in rows
                     if row["task"] == "all" and row["scope"] in ("frames", "final")}
    judge.metrics["table"] = rows
    judge.provenance = {
        **(provenance or {}),
        "config": vars(config).copy(),
        "train_frames": int(n), "train_positives": int(train.labels.sum()),
        "train_episodes": int(len(np.unique(train.episode))),
        "held_out_frames": int(len(test)),
        "held_out_episodes": sorted(np.unique(test.episode).tolist()),
        "pos_weight": pos_weight,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    return judge, rows
