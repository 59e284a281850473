"""Score a world model on recorded episodes: FVD, PSNR, SSIM and LPIPS at chosen horizons.

Each episode gives one clip per horizon H: the model sees the first frame (context) and the
first H actions and predicts H frames, compared with the recorded frames 1..H (as the WorldVLA
authors' evaluator does: one real frame, then the model runs on its own). Episodes shorter than
H + 1 frames are skipped for that horizon and counted. Two named scoring conventions:

- `standard`: FVD as the TF original (`tf`), LPIPS-AlexNet, SSIM and LPIPS in [0, 1];
- `worldvla`: the WorldVLA/RynnVLA-002 evaluator: every frame area-resized to 256x256, FVD
  `rynnvla` (biased covariance, 1e-6 ridge), LPIPS-VGG, SSIM and LPIPS x100.

PSNR (dB) and SSIM (Wang et al.) are per frame, then averaged per clip, then over clips. Every
FVD is reported with N, the number of clips; a ground-truth-vs-ground-truth split (half the
clips against the other half) shows FVD's small-sample floor.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from worldvla_bench.errors import BenchError
from worldvla_bench.registry import Registry
from worldvla_bench.worldmodel.data import WMEpisode
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel


@dataclass(frozen=True)
class ScoringConvention:
    """Every choice that changes a world-model score."""

    name: str
    fvd_convention: str
    lpips_net: str
    resize: int | None  # area-resize every frame to this square size first
    percent: bool  # SSIM and LPIPS x100
    reference: str = ""  # published figures measured under exactly this convention, if any


#: Scoring conventions by name. They are chosen with `wm-eval --protocol` and written as the
#: `protocol` column of `summary.csv`: the user-facing word (flag, error messages, files) stays.
SCORING_CONVENTIONS: Registry[ScoringConvention] = Registry(
    "scoring protocol", check=lambda obj: isinstance(obj, ScoringConvention))
for _convention in (ScoringConvention("standard", "tf", "alex", None, False),
                    ScoringConvention("worldvla", "rynnvla", "vgg", 256, True, reference=(
                        "WorldVLA paper, world model on LIBERO (SSIM, LPIPS x100): "
                        "10 frames FVD 250.0 / PSNR 29.62 / SSIM 90.73 / LPIPS 11.97; "
                        "50 frames 718.6 / 23.98 / 83.41 / 15.60"))):
    SCORING_CONVENTIONS.register(_convention.name, _convention)
del _convention

#: What `wm-eval` writes beside its outputs: its arguments and the world model's.
WM_EVAL_FILE = "wm_eval.json"


def write_wm_eval_record(out: Path, arguments: dict[str, Any]) -> Path:
    """Write `out/wm_eval.json`: the command's arguments (`vars(args)`), the probed model's
    arguments parsed as the model receives them (`model_args`), the code revision and versions,
    so every wm-eval output says which world model, built how, produced it."""
    from worldvla_bench.atomic import write_atomic
    from worldvla_bench.manifest import git_revision, package_versions
    from worldvla_bench.policy import parse_key_values

    shown = {k: v for k, v in arguments.items() if not callable(v)}
    record = {"command": "wm-eval", "model": shown.get("model"),
              "model_args": parse_key_values(shown.get("model_arg")), "arguments": shown,
              "revision": git_revision(), "versions": package_versions()}
    path = Path(out) / WM_EVAL_FILE
    write_atomic(path, json.dumps(record, indent=1, default=str).encode("utf-8"))
    return path


def get_scoring_convention(name: str) -> ScoringConvention:
    return SCORING_CONVENTIONS.load(name)


def _area_resize(frames: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or frames.shape[1:3] == (size, size):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass
class Clip:
    """A predicted clip and its ground truth, (H, h, w, 3) uint8 each."""

    episode: str
    horizon: int
    predicted: np.ndarray
    target: np.ndarray


def predict_clips(model: WorldModel, episodes: list[WMEpisode], horizons: list[int],
                  progress: bool = True) -> tuple[list[Clip], dict[int, int]]:
    """Run the model once per episode for the longest horizon that fits; cut shorter ones."""
    clips: list[Clip] = []
    skipped = {h: 0 for h in horizons}
    for episode in tqdm(episodes, desc="predicting", unit="ep", disable=not progress):
        fitting = [h for h in horizons if len(episode.actions) >= h]
        for h in horizons:
            skipped[h] += h not in fitting
        if not fitting:
            continue
        longest = max(fitting)
        context = PredictionContext(
            meta=episode.meta,
            state=None if episode.states is None else episode.states[0],
            control_state=None if episode.control_states is None else episode.control_states[0],
        )
        predicted = np.asarray(model.predict(episode.frames[:1], episode.actions[:longest],
                                             episode.instruction, context))
        expected = (longest, *episode.frames.shape[1:])
        if predicted.shape != expected or predicted.dtype != np.uint8:
            raise BenchError(f"world model returned {predicted.dtype} {predicted.shape} for "
                             f"episode {episode.name}; expected uint8 {expected}")
        for h in fitting:
            clips.append(Clip(episode.name, h, predicted[:h], episode.frames[1 : h + 1]))
    return clips, skipped


def score_clips(clips: list[Clip], convention: ScoringConvention) -> pd.DataFrame:
    """Per-clip PSNR, SSIM and LPIPS (scaled as the convention says)."""
    from worldvla_bench.metrics.image_quality import psnr_frames, ssim_frames
    from worldvla_bench.metrics.lpips_metric import lpips_frames

    scale = 100.0 if convention.percent else 1.0
    rows = []
    for clip in clips:
        pred = _area_resize(clip.predicted, convention.resize)
        target = _area_resize(clip.target, convention.resize)
        psnr = psnr_frames(pred, target, max_db=100.0)
        rows.append({
            "episode": clip.episode,
            "horizon": clip.horizon,
            "psnr": float(np.mean(psnr)),
            "ssim": scale * float(np.mean(ssim_frames(pred, target))),
            "lpips": scale * float(np.mean(lpips_frames(pred, target, net=convention.lpips_net))),
        })
    return pd.DataFrame(rows)


def fvd_of_clips(clips: list[Clip], convention: ScoringConvention) -> dict[str, Any]:
    """FVD between predicted and ground-truth clips of one horizon, and the GT-vs-GT floor."""
    from worldvla_bench.metrics.fvd import fvd_from_features, i3d_features

    target = np.stack([c.target for c in clips])
    predicted = np.stack([c.predicted for c in clips])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small N is reported next to every value instead
        feats_t = i3d_features(target, convention.fvd_convention)
        feats_p = i3d_features(predicted, convention.fvd_convention)
        value = fvd_from_features(feats_t, feats_p, convention.fvd_convention)
        floor = None
        if len(clips) >= 4:
            half = len(clips) // 2
            floor = fvd_from_features(feats_t[:half], feats_t[half : 2 * half],
                                      convention.fvd_convention).value
    return {"fvd": value.value, "fvd_n": value.n, "fvd_gt_split": floor}


def evaluate_world_model(model: WorldModel, episodes: list[WMEpisode], horizons: list[int],
                         convention: str = "standard", progress: bool = True) -> dict[str, Any]:
    """Per-clip table and a summary per horizon (FVD with N, mean PSNR/SSIM/LPIPS)."""
    scoring = get_scoring_convention(convention)
    if not horizons or min(horizons) < 1:
        raise BenchError(f"horizons must be positive integers, got {horizons}")
    from worldvla_bench.metrics.i3d import MIN_FRAMES

    if min(horizons) < MIN_FRAMES:
        raise BenchError(f"FVD needs clips of at least {MIN_FRAMES} frames; "
                         f"horizon {min(horizons)} is too short")
    clips, skipped = predict_clips(model, episodes, sorted(set(horizons)), progress)
    per_clip = score_clips(clips, scoring) if clips else pd.DataFrame()
    rows = []
    for h in sorted(set(horizons)):
        chosen = [c for c in clips if c.horizon == h]
        row: dict[str, Any] = {"horizon": h, "clips": len(chosen), "skipped": skipped[h]}
        if chosen:
            row.update(fvd_of_clips(chosen, scoring))
            part = per_clip[per_clip["horizon"] == h]
            row.update({m: float(part[m].mean()) for m in ("psnr", "ssim", "lpips")})
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.insert(0, "protocol", scoring.name)
    return {"per_clip": per_clip, "summary": summary, "clips": clips, "convention": scoring}


def write_side_by_side(path: Path, clip: Clip, fps: int = 10) -> None:
    """An mp4 of predicted (left) next to ground truth (right)."""
    from worldvla_bench.episode import write_video

    frames = [np.concatenate([p, t], axis=1) for p, t in zip(clip.predicted, clip.target,
                                                              strict=True)]
    write_video(path, frames, fps)
