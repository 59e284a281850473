"""Why a WorldVLA world model collapses: measurements of one checkpoint on recorded episodes.

    python -m worldvla_bench.integrations.worldvla.diagnosis CKPT DATA [DATA ...] \\
        [--episodes 4] [--horizon 20] [--json PATH]

CKPT: a checkpoint file, training directory or shipped name. DATA: run directories recorded with
`eval --save-frames`, LIBERO/robomimic HDF5 files, or directories of them; `--episodes` are taken
in turn from each source (file) so that they differ. Frames are resized to the model's image size
(the resize the policy and training use); pixel values are 0..255.

Printed one per line (name: value), and written with `--json`:
- `vq_psnr_db`, `copy_prev_psnr_db`: mean per-frame PSNR (dB, capped at 100) of VQ
  encode-decode against the frame, and of frame t against frame t+1 (copying the previous
  frame); `vq_lpips`, `copy_prev_lpips` the same in LPIPS (AlexNet; None if it cannot load);
- `copy_psnr_db_gap5` / `gap10` and `changed_fraction_gap5` / `gap10`: the same PSNR and share of
  VQ codes that differ, between frames t and t+5 (t+10): how far apart frames must be for the
  real change to exceed the VQ's own error (`vq_psnr_db`, 1 - `reencode_agreement`);
- `reencode_agreement`: fraction of codes of real frames unchanged by decode -> re-encode;
  `reencode_agreement_predicted` the same for greedily predicted next frames (what a pixel
  rollout feeds back);
- teacher-forced next frame (the true codes of the next frame are the previous tokens, the model
  predicts each code; argmax among image codes): `tf_accuracy` against the real next codes,
  `copy_accuracy` of the copy-the-previous-codes baseline, `tf_predicts_previous` the fraction of
  predictions equal to the previous frame's code, `tf_accuracy_changed` the accuracy on codes
  that change (None when none does), `changed_fraction` the share of codes that change;
  `greedy_accuracy`: greedy generation of the whole next frame against the real next codes;
- action sensitivity: `same_codes_zero_action`, `same_codes_negated_action`, the fraction of
  greedily predicted next-frame codes unchanged when the action is zeroed (all 7 values) or
  negated (1.0: the model ignores the action);
- free-running rollout from each episode's first frame with its own actions: at step H,
  `rollout_spread_ratio` = mean absolute pixel difference between the predicted frames of two
  different episodes, averaged over pairs, over the same for their real frames (1.0: the
  predictions differ as much as reality, 0: every rollout ends on the same frame), feeding back
  decoded pixels as `wm-eval`'s adapter does; `rollout_spread_ratio_codes` feeding back the
  predicted codes directly; `rollout_psnr_db` of the pixel rollout's frame H against the real
  one, beside `copy_first_psnr_db` of the first frame against it.

The action model on held-out expert chunks (K = the checkpoint's chunk size; prompt: the
episode's instruction, previous and current frame; teacher-forced with the checkpoint's action
mask, exactly as training computes its action loss), on `--action-episodes` episodes taken in
turn from each task of a run (each file of HDF5 sources):
- `action_loss`: the training's action loss (cross-entropy of the answer's tokens) on them: a
  held-out action loss that rises while the training one falls is overfitting;
- `action_token_accuracy`: share of action value tokens whose top-ranked bin (among the 255
  value tokens) is the expert's; `action_l1_arm`: mean absolute error (action units) of those
  bins' centres against the expert's six arm dimensions (`action_l1_arm_zero`: the same of
  zeros, the expert's mean absolute arm action); `gripper_accuracy`: share of gripper
  values with the expert's sign.

For a model whose world-model samples span S steps (`world_frame_step` S > 1), "the next frame"
of frame t is frame t+S, read with actions t..t+S-1, and rollouts step S actions at a time (to
the last multiple of S up to H).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.demo_data import DemoSet, SampleBuilder, demo_files
from worldvla_bench.integrations.worldvla.generation import forward_sequence
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.sequence import collate, world_step_actions
from worldvla_bench.integrations.worldvla.training import load_checkpoint
from worldvla_bench.integrations.worldvla.transformer import lm_loss_sums
from worldvla_bench.metrics.image_quality import psnr_frames
from worldvla_bench.observation_profiles import resize_image
from worldvla_bench.run_dir import RunDir
from worldvla_bench.worldmodel.data import WMEpisode, read_hdf5, read_run

#: PSNR cap (dB): identical frames give infinity, which no mean survives
MAX_DB = 100.0
#: frame gaps (steps) at which the real change is measured beside the VQ's own error
GAPS = (5, 10)

#: name -> what it measures, in print order
METRICS: dict[str, str] = {
    "vq_psnr_db": "VQ encode-decode PSNR, dB",
    "copy_prev_psnr_db": "frame t vs t+1 PSNR (copy the previous frame), dB",
    "vq_lpips": "VQ encode-decode LPIPS",
    "copy_prev_lpips": "frame t vs t+1 LPIPS",
    "copy_psnr_db_gap5": "frame t vs t+5 PSNR, dB",
    "copy_psnr_db_gap10": "frame t vs t+10 PSNR, dB",
    "reencode_agreement": "codes of real frames unchanged by decode -> re-encode",
    "reencode_agreement_predicted": "codes of predicted frames unchanged by decode -> re-encode",
    "tf_accuracy": "teacher-forced next-frame code accuracy",
    "copy_accuracy": "copy-the-previous-codes baseline accuracy",
    "tf_predicts_previous": "teacher-forced predictions equal to the previous frame's code",
    "tf_accuracy_changed": "teacher-forced accuracy on codes that change",
    "changed_fraction": "share of codes that change from one frame to the next",
    "changed_fraction_gap5": "share of codes that differ between frames t and t+5",
    "changed_fraction_gap10": "share of codes that differ between frames t and t+10",
    "greedy_accuracy": "greedy next-frame code accuracy",
    "same_codes_zero_action": "predicted codes unchanged when the action is zeroed",
    "same_codes_negated_action": "predicted codes unchanged when the action is negated",
    "rollout_spread_ratio": "predicted / real spread between episodes at step H (pixels fed back)",
    "rollout_spread_ratio_codes": "the same, predicted codes fed back",
    "rollout_psnr_db": "PSNR of the rollout's frame H vs the real one, dB",
    "copy_first_psnr_db": "PSNR of the first frame vs the real frame H, dB",
    "action_loss": "held-out action loss (the training's, teacher-forced)",
    "action_token_accuracy": "held-out action value tokens ranked first correctly",
    "action_l1_arm": "held-out mean abs error of the top-ranked arm actions, action units",
    "action_l1_arm_zero": "the same of an action model that outputs zeros",
    "gripper_accuracy": "held-out gripper values of the expert's sign",
}


@dataclass
class Diagnosis:
    """The measurements (`METRICS` names -> value, None when not measurable) and their setting."""

    metrics: dict[str, float | None]
    checkpoint: str
    data: list[str]
    episodes: list[str]
    horizon: int
    samples: int
    notes: list[str] = field(default_factory=list)
    action_episodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "data": self.data, "episodes": self.episodes,
                "action_episodes": self.action_episodes, "horizon": self.horizon,
                "samples": self.samples, "metrics": self.metrics, "notes": self.notes}

    def lines(self) -> list[str]:
        out = []
        for name, about in METRICS.items():
            value = self.metrics.get(name)
            shown = "n/a" if value is None else f"{value:.4f}"
            out.append(f"{name}: {shown}  ({about})")
        return out


# ------------------------------------------------------------------------------------- data
def read_sources(paths: Sequence[str | Path], n_episodes: int, view: str = "agentview",
                 by_task: bool = False) -> list[WMEpisode]:
    """`n_episodes` episodes, taken in turn from each source: a run directory (`RunDir`; with
    `by_task`, each of its tasks), an HDF5 file, or a directory of HDF5 files (each file a
    source)."""
    sources: list[Any] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and RunDir(path).is_run():
            tasks = (sorted({r["task_id"] for r in RunDir(path).finished_with_arrays()})
                     if by_task else [None])
            sources += [read_run(path, view, None if t is None else {t}) for t in tasks]
        else:
            sources += [read_hdf5(file, view) for file in demo_files([path])]
    episodes: list[WMEpisode] = []
    for episode in _round_robin(sources):
        if len(episodes) >= n_episodes:
            break
        if len(episode.actions):
            episodes.append(episode)
    if not episodes:
        raise BenchError(f"no episode with actions in {', '.join(map(str, paths))}")
    return episodes


def _round_robin(iterators: list[Any]):
    active = list(iterators)
    while active:
        for it in list(active):
            try:
                yield next(it)
            except StopIteration:
                active.remove(it)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def encode(model: WorldVLA, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """VQ codes (N, h, w) int64 of uint8 frames (N, S, S, 3) at the model's size."""
    return np.concatenate([model.encode_images(frames[s]).cpu().numpy()
                           for s in _batches(len(frames), batch_size)]).astype(np.int64)


def decode(model: WorldVLA, codes: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 frames (N, S, S, 3) of VQ codes (N, h, w)."""
    return np.concatenate([model.decode_codes(torch.as_tensor(codes[s]))
                           for s in _batches(len(codes), batch_size)])


# ------------------------------------------------------------------------------- predictions
def teacher_forced_codes(model: WorldVLA, codes: np.ndarray, actions: np.ndarray,
                         next_codes: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, h, w) codes the model ranks first at each code slot of the next frame, the true
    next codes being the tokens before it (argmax among image codes, as generation's layout
    constraint allows). World-model samples are plain causal (`masks`)."""
    vocab, tokenizer = model.vocab, model.tokenizer
    lo, hi = vocab.image_offset, vocab.image_offset + vocab.codebook_size
    out = []
    for part in _batches(len(codes), batch_size):
        batch = collate([tokenizer.world_sample(c, a, n) for c, a, n in
                         zip(codes[part], actions[part], next_codes[part], strict=True)])
        batch = batch.to(model.device)
        with torch.no_grad():
            logits = forward_sequence(model.transformer, batch.input_ids, batch.valid,
                                      action_mask=False)
        targets = batch.labels[:, 1:]
        slots = (targets >= lo) & (targets < hi)
        ranked = logits[:, :-1, lo:hi].argmax(-1)
        grid = codes.shape[1:]
        for row in range(len(targets)):
            out.append(ranked[row][slots[row]].reshape(grid).cpu().numpy())
    return np.stack(out).astype(np.int64)


def greedy_codes(model: WorldVLA, codes: np.ndarray, actions: np.ndarray,
                 batch_size: int = 32) -> np.ndarray:
    """(N, h, w) greedily generated next-frame codes from codes (N, h, w) and actions (N, 7)
    (`WorldVLA.predict_next_codes`, batch by batch)."""
    with torch.no_grad():
        return np.concatenate([
            model.predict_next_codes(torch.as_tensor(codes[part]), actions[part]).cpu().numpy()
            for part in _batches(len(codes), batch_size)]).astype(np.int64)


# ----------------------------------------------------------------------------- measurements
def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if np.size(values) else None


def vq_metrics(model: WorldVLA, frames: list[np.ndarray], use_lpips: bool = True
               ) -> tuple[dict[str, float | None], list[str]]:
    """PSNR (and LPIPS) of encode-decode and of copying the previous frame; code agreement of
    decode -> re-encode. `frames`: per episode (T+1, S, S, 3) uint8 at the model's size."""
    notes: list[str] = []
    every = np.concatenate(frames)
    codes = encode(model, every)
    recon = decode(model, codes)
    prev = np.concatenate([f[:-1] for f in frames])
    nxt = np.concatenate([f[1:] for f in frames])
    metrics: dict[str, float | None] = {
        "vq_psnr_db": _mean(psnr_frames(recon, every, max_db=MAX_DB)),
        "copy_prev_psnr_db": _mean(psnr_frames(prev, nxt, max_db=MAX_DB)) if len(prev) else None,
        "reencode_agreement": float(np.mean(encode(model, recon) == codes)),
        "vq_lpips": None, "copy_prev_lpips": None,
    }
    per_episode = np.split(codes, np.cumsum([len(f) for f in frames])[:-1])
    for gap in GAPS:
        pairs = [(f, c) for f, c in zip(frames, per_episode, strict=True) if len(f) > gap]
        metrics[f"copy_psnr_db_gap{gap}"] = _mean(np.concatenate(
            [psnr_frames(f[:-gap], f[gap:], max_db=MAX_DB) for f, _ in pairs])) if pairs else None
        metrics[f"changed_fraction_gap{gap}"] = _mean(np.concatenate(
            [(c[:-gap] != c[gap:]).ravel() for _, c in pairs])) if pairs else None
    if use_lpips:
        try:
            from worldvla_bench.metrics.lpips_metric import lpips_frames

            metrics["vq_lpips"] = _mean(lpips_frames(recon, every))
            metrics["copy_prev_lpips"] = _mean(lpips_frames(prev, nxt)) if len(prev) else None
        except (ImportError, OSError, ValueError, BenchError) as error:
            notes.append(f"LPIPS not measured: {type(error).__name__}: {error}"[:200])
    return metrics, notes


def code_metrics(model: WorldVLA, codes: np.ndarray, actions: np.ndarray,
                 next_codes: np.ndarray, sensitivity_samples: int | None = 64,
                 batch_size: int = 32) -> dict[str, float | None]:
    """Teacher-forced and greedy next-frame accuracies, the copy baseline and action
    sensitivity over samples (codes (N, h, w) of frame t, actions (N, 7) taken from it, codes
    of frame t+1; for a model with `world_frame_step` S, actions (N, S, 7) and frame t+S).
    Sensitivity uses at most `sensitivity_samples` evenly spaced samples."""
    predicted = teacher_forced_codes(model, codes, actions, next_codes, batch_size)
    changed = codes != next_codes
    pick = _spread_indices(len(codes), sensitivity_samples)
    greedy = greedy_codes(model, codes[pick], actions[pick], batch_size)
    zeroed = greedy_codes(model, codes[pick], np.zeros_like(actions[pick]), batch_size)
    negated = greedy_codes(model, codes[pick], -actions[pick], batch_size)
    return {
        "tf_accuracy": float(np.mean(predicted == next_codes)),
        "copy_accuracy": float(np.mean(codes == next_codes)),
        "tf_predicts_previous": float(np.mean(predicted == codes)),
        "tf_accuracy_changed": _mean((predicted == next_codes)[changed]),
        "changed_fraction": float(np.mean(changed)),
        "greedy_accuracy": float(np.mean(greedy == next_codes[pick])),
        "reencode_agreement_predicted": float(np.mean(encode(model, decode(model, greedy))
                                                      == greedy)),
        "same_codes_zero_action": float(np.mean(zeroed == greedy)),
        "same_codes_negated_action": float(np.mean(negated == greedy)),
    }


def action_metrics(model: WorldVLA, episodes: list[WMEpisode], chunk_size: int,
                   action_mask: bool, max_samples: int | None = 512, batch_size: int = 32
                   ) -> dict[str, float | None]:
    """The held-out action figures of the module docstring over the K-step chunks of
    `episodes` (frames at the model's size), at most `max_samples` spread evenly."""
    tokenizer, first = model.tokenizer, model.tokenizer.actions.layout.first_value
    bins = tokenizer.actions.n_bins
    demos = DemoSet([e.frames for e in episodes],
                    [np.asarray(e.actions, dtype=np.float64) for e in episodes],
                    [e.instruction for e in episodes], [e.instruction for e in episodes])
    codes = [encode(model, f) for f in demos.frames]
    try:  # training's own sample builder: the same prompts and chunks
        builder = SampleBuilder(model, demos, codes, chunk_size)
    except BenchError:  # its one error: no episode has chunk_size actions
        return {name: None for name in ("action_loss", "action_token_accuracy",
                                        "action_l1_arm", "action_l1_arm_zero",
                                        "gripper_accuracy")}
    index = builder.action_index[_spread_indices(len(builder.action_index), max_samples)]
    samples = [(builder.action_sample(e, t), demos.label(e)[t : t + chunk_size])
               for e, t in index]
    loss_sum = weight_sum = 0.0
    predicted, expert = [], []
    for part in _batches(len(samples), batch_size):
        chosen = samples[part]
        batch = collate([sample for sample, _ in chosen]).to(model.device)
        with torch.no_grad():
            logits = forward_sequence(model.transformer, batch.input_ids, batch.valid,
                                      action_mask=action_mask)
            total, weight = lm_loss_sums(logits, batch.labels, model.class_weight)
        loss_sum, weight_sum = loss_sum + float(total), weight_sum + float(weight)
        targets = batch.labels[:, 1:]
        slots = (targets >= first) & (targets < first + bins)
        ranked = logits[:, :-1, first:first + bins].argmax(-1)
        for row, (_, chunk) in enumerate(chosen):
            predicted.append(ranked[row][slots[row]].reshape(chunk_size, 7).cpu().numpy())
            expert.append(tokenizer.actions.to_bins(chunk))
    predicted_bins, expert_bins = np.concatenate(predicted), np.concatenate(expert)
    expert_actions = np.concatenate([chunk for _, chunk in samples])
    values = tokenizer.actions.from_bins(predicted_bins)
    return {
        "action_loss": loss_sum / weight_sum,
        "action_token_accuracy": float(np.mean(predicted_bins == expert_bins)),
        "action_l1_arm": float(np.mean(np.abs(values[:, :6] - expert_actions[:, :6]))),
        "action_l1_arm_zero": float(np.mean(np.abs(expert_actions[:, :6]))),
        "gripper_accuracy": float(np.mean(np.sign(values[:, 6]) == np.sign(expert_actions[:, 6]))),
    }


def _spread_indices(n: int, limit: int | None) -> np.ndarray:
    """At most `limit` indices spread evenly over range(n) (all of them when limit is None)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, int(limit)).round().astype(np.int64))


def rollout(model: WorldVLA, first_frames: np.ndarray, actions: np.ndarray,
            feedback: str = "pixels", batch_size: int = 32) -> np.ndarray:
    """Free-running predicted frames (N, H // F, S, S, 3) uint8, the frames after actions F,
    2F, ..., from first frames (N, S, S, 3) and actions (N, H, 7), F the model's
    `world_frame_step` (1: one frame per action). `feedback` 'pixels': each predicted frame is
    decoded and encoded again before the next step (`WorldVLA.predict_next_images`, as
    `wm-eval`'s adapter rolls out); 'codes': the predicted codes are fed back directly."""
    if feedback not in ("pixels", "codes"):
        raise BenchError(f"feedback must be 'pixels' or 'codes', got {feedback!r}")
    step_actions = _step_groups(actions, model.config.world_frame_step)
    frames: list[np.ndarray] = []
    if feedback == "pixels":
        current = first_frames
        for step in range(step_actions.shape[1]):
            current = np.concatenate([model.predict_next_images(current[s], step_actions[s, step])
                                      for s in _batches(len(current), batch_size)])
            frames.append(current)
    else:
        codes = encode(model, first_frames)
        for step in range(step_actions.shape[1]):
            codes = greedy_codes(model, codes, step_actions[:, step], batch_size)
            frames.append(decode(model, codes))
    return np.stack(frames, 1)


def _step_groups(actions: np.ndarray, frame_step: int) -> np.ndarray:
    """Actions (N, H, 7) as the model's steps: (N, H, 7) for frame_step 1, else
    (N, H // frame_step, frame_step, 7) (a trailing partial group dropped)."""
    if frame_step == 1:
        return actions
    groups = actions.shape[1] // frame_step
    return actions[:, : groups * frame_step].reshape(len(actions), groups, frame_step, 7)


def spread(frames: np.ndarray) -> float:
    """Mean absolute pixel difference (0..255) between the frames (N, S, S, 3) of every pair of
    different episodes, averaged over pairs."""
    x = frames.astype(np.float64)
    return float(np.mean([np.abs(x[i] - x[j]).mean()
                          for i, j in itertools.combinations(range(len(x)), 2)]))


def rollout_metrics(model: WorldVLA, frames: list[np.ndarray], actions: list[np.ndarray],
                    horizon: int, batch_size: int = 32) -> tuple[dict[str, float | None],
                                                                  list[str]]:
    """Spread ratios (pixel and code feedback) and PSNR at step `horizon` over the episodes with
    at least `horizon` actions (None with a note when fewer than two have)."""
    empty: dict[str, float | None] = {k: None for k in (
        "rollout_spread_ratio", "rollout_spread_ratio_codes", "rollout_psnr_db",
        "copy_first_psnr_db")}
    keep = [i for i, a in enumerate(actions) if len(a) >= horizon]
    if len(keep) < 2:
        return empty, [f"rollout not measured: {len(keep)} episode(s) have {horizon} actions "
                       f"(two are needed)"]
    reached = horizon // model.config.world_frame_step * model.config.world_frame_step
    if reached < 1:
        return empty, [f"rollout not measured: horizon {horizon} < the model's frame step "
                       f"{model.config.world_frame_step}"]
    first = np.stack([frames[i][0] for i in keep])
    acts = np.stack([actions[i][:reached] for i in keep])
    real = np.stack([frames[i][reached] for i in keep])
    real_spread = spread(real)
    notes = []
    if real_spread == 0:
        notes.append("the real frames at step H are identical: no spread ratio")
    pixels = rollout(model, first, acts, "pixels", batch_size)[:, -1]
    codes = rollout(model, first, acts, "codes", batch_size)[:, -1]

    def ratio(predicted: np.ndarray) -> float | None:
        return spread(predicted) / real_spread if real_spread else None

    return {
        "rollout_spread_ratio": ratio(pixels),
        "rollout_spread_ratio_codes": ratio(codes),
        "rollout_psnr_db": _mean(psnr_frames(pixels, real, max_db=MAX_DB)),
        "copy_first_psnr_db": _mean(psnr_frames(first, real, max_db=MAX_DB)),
    }, notes


def diagnose(checkpoint: str | Path, data: Sequence[str | Path], episodes: int = 4,
             horizon: int = 20, stride: int = 1, max_samples: int | None = 512,
             sensitivity_samples: int | None = 64, use_lpips: bool = True,
             view: str = "agentview", batch_size: int = 32,
             action_episodes: int | None = None) -> Diagnosis:
    """Every measurement of the module docstring for `checkpoint` on `episodes` episodes of
    `data` (the action figures on `action_episodes` of them taken task by task; None: the same
    episodes). Teacher-forced samples: every `stride`-th step of each episode, at most
    `max_samples` of them spread evenly (None: all)."""
    if horizon < 1 or episodes < 1 or stride < 1 or (action_episodes or 1) < 1:
        raise BenchError("horizon, episodes, action episodes and stride must be >= 1")
    model, meta = load_checkpoint(checkpoint)
    size = model.config.vq.image_size
    chosen = read_sources(data, episodes, view)
    frames = [resize_image(e.frames, size) for e in chosen]
    actions = [np.asarray(e.actions, dtype=np.float64) for e in chosen]
    metrics, notes = vq_metrics(model, frames, use_lpips)
    cur, act, nxt = [], [], []
    frame_step = model.config.world_frame_step
    for f, a in zip(frames, actions, strict=True):
        codes = encode(model, f)
        steps = np.arange(0, len(a) - frame_step + 1, stride)
        cur.append(codes[steps])
        nxt.append(codes[steps + frame_step])
        act.append(np.array([world_step_actions(a, t, frame_step) for t in steps]).reshape(
            len(steps), *([] if frame_step == 1 else [frame_step]), 7))
    pick = _spread_indices(sum(map(len, cur)), max_samples)
    cur_all, act_all, nxt_all = (np.concatenate(x)[pick] for x in (cur, act, nxt))
    metrics.update(code_metrics(model, cur_all, act_all, nxt_all, sensitivity_samples,
                                batch_size))
    rolled, more = rollout_metrics(model, frames, actions, horizon, batch_size)
    metrics.update(rolled)
    held = (chosen if action_episodes is None
            else read_sources(data, action_episodes, view, by_task=True))
    if meta["instruction_source"] != "language":
        more.append(f"the action figures prompt with the episodes' language instruction, not "
                    f"the checkpoint's training source {meta['instruction_source']!r}")
    held_frames = (frames if action_episodes is None  # already resized
                   else [resize_image(e.frames, size) for e in held])
    metrics.update(action_metrics(
        model, [replace(e, frames=f) for e, f in zip(held, held_frames, strict=True)],
        meta["chunk_size"], meta["action_mask"], max_samples, batch_size))
    return Diagnosis(metrics={k: metrics.get(k) for k in METRICS}, checkpoint=meta["path"],
                     data=[str(p) for p in data], episodes=[e.name for e in chosen],
                     horizon=horizon, samples=len(pick), notes=notes + more,
                     action_episodes=[e.name for e in held])


# ------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worldvla_bench.integrations.worldvla.diagnosis",
        description="Measure why a WorldVLA world model collapses (VQ, teacher-forced accuracy "
                    "against copying, action sensitivity, rollout spread) on recorded episodes.")
    parser.add_argument("checkpoint", help="checkpoint file, training directory or shipped name")
    parser.add_argument("data", nargs="+",
                        help="run directories (eval --save-frames), .hdf5 files or directories")
    parser.add_argument("--episodes", type=int, default=4, help="episodes to use (default 4)")
    parser.add_argument("--horizon", type=int, default=20, help="rollout step H (default 20)")
    parser.add_argument("--stride", type=int, default=1, help="every k-th step is a sample")
    parser.add_argument("--max-samples", type=int, default=512,
                        help="teacher-forced samples, spread evenly (default 512)")
    parser.add_argument("--sensitivity-samples", type=int, default=64,
                        help="samples generated greedily, with the action, zeroed and negated")
    parser.add_argument("--action-episodes", type=int, default=None, metavar="N",
                        help="episodes of the held-out action figures, taken in turn from each "
                             "task (default: the --episodes ones)")
    parser.add_argument("--view", default="agentview", help="camera of the episodes")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        result = diagnose(args.checkpoint, args.data, episodes=args.episodes,
                          horizon=args.horizon, stride=args.stride, max_samples=args.max_samples,
                          sensitivity_samples=args.sensitivity_samples,
                          use_lpips=not args.no_lpips, view=args.view,
                          action_episodes=args.action_episodes)
    except BenchError as error:
        print(f"diagnosis: {error}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result.checkpoint}; {len(result.episodes)} episodes, "
          f"{result.samples} samples, H = {result.horizon}")
    for line in result.lines():
        print(line)
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        from worldvla_bench.atomic import write_atomic

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
