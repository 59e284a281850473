"""The training loop: the VQ-VAE first, then the transformer on mixed action and world-model
batches, resumable from `last.pt` with the same losses as an uninterrupted run.

On any torch device (`TrainConfig.device`; bf16 autocast of the transformer on CUDA). Launched
by `torchrun --nproc-per-node N` the transformer trains with torch's DDP (NCCL on CUDA, gloo on
CPU): every rank draws the same global batch of `batch_size` samples from the same seeded RNG and
trains on its share (samples rank, rank + N, ...); its loss is its share of the weighted
cross-entropy sums divided by the global weight sum (all-reduced), times N, so DDP's gradient
average is the gradient of the one-process loss of that batch. The VQ-VAE stage (small) runs
the same on every rank. Rank 0 alone writes checkpoints and losses.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import (
    CHECKPOINT_FORMAT,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    SNAPSHOTS_DIR,
    read_checkpoint,
    save_checkpoint,
    vq_state,
)
from worldvla_bench.integrations.worldvla.config import WorldVLAConfig, preset
from worldvla_bench.integrations.worldvla.demo_data import (
    DemoSet,
    SampleBuilder,
    load_training_demos,
)
from worldvla_bench.integrations.worldvla.devices import (
    autocast,
    init_process_group,
    launch_info,
    resolve_device,
    use_bf16,
)
from worldvla_bench.integrations.worldvla.generation import forward_sequence
from worldvla_bench.integrations.worldvla.loss_curves import (
    LOSS_COLUMNS,
    write_losses,
)
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.sequence import collate
from worldvla_bench.integrations.worldvla.shipped import export_payload
from worldvla_bench.integrations.worldvla.token_data import (
    RECIPE_KEYS,
    encode_frames,
    load_tokens,
    read_token_meta,
)
from worldvla_bench.integrations.worldvla.train_config import (
    LEGACY_TRAIN_ARGS,
    RESUMABLE_CHANGES,
    TrainConfig,
)
from worldvla_bench.integrations.worldvla.transformer import lm_loss, lm_loss_sums
from worldvla_bench.integrations.worldvla.vq import images_to_tensor
from worldvla_bench.run_lock import run_dir_lock


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    losses: list[dict[str, Any]]
    steps_per_s: float | None
    vq_steps_per_s: float | None
    stopped_early: bool
    #: episodes feeding action samples, and those of them labelled with intended actions
    action_episodes: int = 0
    intended_labels: int = 0


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
    saved = {**LEGACY_TRAIN_ARGS, **saved}
    diffs = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
             if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if diffs:
        raise BenchError(f"{path} was trained with other arguments ({'; '.join(diffs)}): "
                         "pass the same arguments to resume, or another --out")


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
            "data": {"files": self.demos.files, "episodes": self.demos.action_episodes(),
                     "intended_labels": self.demos.intended_labels,
                     "world_files": self.demos.world_files,
                     "world_episodes": len(self.demos) - self.demos.action_episodes()},
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
        path = self.out / LAST_CHECKPOINT
        if self.dist.main:  # one writer in a DDP launch
            save_checkpoint(path, self._payload(full=True))
            write_losses(self.losses, self.out)
        return path

    def snapshot(self) -> Path:
        """Keep an evaluation-only float16 copy of the model at this step (see `snapshot_every`);
        a resumed run that replays the step writes the same weights again."""
        path = self.out / SNAPSHOTS_DIR / f"step_{self.step:05d}.pt"
        if self.dist.main:
            payload = export_payload(self._payload(full=False), str(self.out / LAST_CHECKPOINT))
            save_checkpoint(path, payload)
        return path

    def _build(self) -> dict[str, Any] | None:
        config = self.config
        torch.set_num_threads(max(1, int(config.threads)))
        self.dist = launch_info()
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.dist.world_size > config.batch_size:
            raise BenchError(f"batch size {config.batch_size} < {self.dist.world_size} ranks")
        self.bf16 = use_bf16(self.device, config.bf16)
        init_process_group(self.dist, self.device)
        self.out.mkdir(parents=True, exist_ok=True)
        saved = None
        last = self.out / LAST_CHECKPOINT
        if config.resume and last.exists():
            saved = read_checkpoint(last)
            _check_resumable(saved.get("train_args") or {}, config, last)
        model_config = preset(config.config, image_loss_weight=float(config.image_loss_weight),
                              world_frame_step=int(config.world_frame_step))
        self.codes: list[np.ndarray] | None = None
        if not config.data and not config.tokens:
            raise BenchError("nothing to train on: give demos (--data) or a token file "
                             "(--tokens)")
        if config.tokens:
            self.demos, self.codes = self._read_tokens()
        else:
            self.demos = load_training_demos(config.data, config.world_data,
                                             model_config.vq.image_size, config.view,
                                             config.instruction_source, config.max_demos,
                                             config.action_labels)
        if config.action_labels == "intended" and not self.demos.intended_labels:
            raise BenchError("--action-labels intended: no demo in "
                             f"{', '.join(self.demos.files)} keeps intended_actions (record "
                             "them from an expert with action_noise or gripper_delay)")
        torch.manual_seed(config.seed)
        self.model = WorldVLA(model_config).to(self.device)
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
            source_vq = WorldVLAConfig.from_dict(source["config"]).vq
            if source_vq != model_config.vq:
                raise BenchError(f"VQ-VAE of {config.vq_from} has another configuration "
                                 f"({source_vq}) than {config.config!r} ({model_config.vq})")
            self.model.vq.load_state_dict(vq_state(source))
            self.stage = "transformer"
            self.vq_step = int(source.get("vq_step", 0))
        return saved

    def _read_tokens(self) -> tuple[DemoSet, list[np.ndarray]]:
        """The token file's demo set and codes, checked against this run's arguments."""
        config = self.config
        meta = read_token_meta(config.tokens)
        asked = {key: getattr(config, key) for key in RECIPE_KEYS}
        diffs = [f"{key}: {meta['recipe'].get(key)!r} in the file, {value!r} asked"
                 for key, value in asked.items() if meta["recipe"].get(key) != value]
        if diffs:
            raise BenchError(f"{config.tokens} was read with other arguments ({'; '.join(diffs)})")
        return load_tokens(config.tokens, world_only=config.world_model_weight > 0,
                           vq_checkpoint=config.vq_from)

    # -- phases
    def _train_vq(self) -> float | None:
        config, model = self.config, self.model
        all_frames = np.concatenate(self.demos.frames)
        model.vq.train()
        bar = _bar(config.vq_steps, self.vq_step, "VQ-VAE", config.progress and self.dist.main)
        t0, start_step = time.perf_counter(), self.vq_step
        try:
            while self.vq_step < config.vq_steps:
                idx = self.rng.integers(0, len(all_frames), config.vq_batch_size)
                x = images_to_tensor(all_frames[idx]).to(self.device)
                if self.vq_step == 0:  # data-dependent codebook init
                    self.vq_usage.zero_()
                    _restart_dead_codes(model, self.vq_usage, x, self.rng)
                out = model.vq(x)
                self.vq_opt.zero_grad(set_to_none=True)
                out.loss.backward()
                self.vq_opt.step()
                self.vq_usage += torch.bincount(out.codes.flatten().cpu(),
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
        codes = self.codes if self.codes is not None else encode_frames(model, self.demos)
        builder = SampleBuilder(model, self.demos, codes, config.chunk_size)
        model.transformer.train()
        net: torch.nn.Module = model.transformer
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model.transformer, device_ids=[self.device] if self.device.type == "cuda" else None)
        bar = _bar(config.steps, self.step, "transformer", config.progress and self.dist.main)
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
                if self.dist.enabled:
                    loss, action_loss, world_loss = self._ddp_step(net, samples, n_action)
                else:
                    loss, action_loss, world_loss = self._step(net, samples, n_action)
                self.step += 1
                self.losses.append(_row("transformer", self.step, loss, action_loss=action_loss,
                                        world_loss=world_loss, lr=lr, elapsed_s=self._elapsed()))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                if self.step % config.checkpoint_every == 0:
                    self.save()
                if config.snapshot_every and self.step % config.snapshot_every == 0:
                    self.snapshot()
        finally:
            bar.close()
        model.transformer.eval()
        done = self.step - start_step
        return (done / (time.perf_counter() - t0) if done else None), stopped

    def _update(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.transformer.parameters(),
                                           self.config.grad_clip)
        self.opt.step()

    def _step(self, net: torch.nn.Module, samples: list, n_action: int
              ) -> tuple[float, float, float]:
        """One optimizer step on the whole batch: (loss, action loss, world loss)."""
        model, batch = self.model, collate(samples).to(self.device)
        with autocast(self.device, self.bf16):
            logits = forward_sequence(net, batch.input_ids, batch.valid,
                                      action_mask=self.config.action_mask)
        loss = lm_loss(logits, batch.labels, model.class_weight)
        self._update(loss)
        with torch.no_grad():
            action_loss = float(lm_loss(logits[:n_action], batch.labels[:n_action],
                                        model.class_weight))
            world_loss = (float(lm_loss(logits[n_action:], batch.labels[n_action:],
                                        model.class_weight))
                          if n_action < len(samples) else float("nan"))
        return loss.item(), action_loss, world_loss

    def _ddp_step(self, net: torch.nn.Module, samples: list, n_action: int
                  ) -> tuple[float, float, float]:
        """One DDP step: this rank's share of the global batch (module docstring)."""
        import torch.distributed as td

        rank, world = self.dist.rank, self.dist.world_size
        mine = list(range(rank, len(samples), world))
        local_action = sum(1 for i in mine if i < n_action)
        batch = collate([samples[i] for i in mine]).to(self.device)
        weight = self.model.class_weight
        with autocast(self.device, self.bf16):
            logits = forward_sequence(net, batch.input_ids, batch.valid,
                                      action_mask=self.config.action_mask)
        total, denominator = lm_loss_sums(logits, batch.labels, weight)
        with torch.no_grad():
            parts = [total.detach(), denominator]
            for part in (slice(None, local_action), slice(local_action, None)):
                if len(batch.labels[part]):
                    parts += list(lm_loss_sums(logits[part], batch.labels[part], weight))
                else:
                    parts += [torch.zeros((), device=logits.device)] * 2
            sums = torch.stack([p.float() for p in parts])
            td.all_reduce(sums)
        self._update(total * world / sums[1])
        action = float(sums[2] / sums[3])
        world_loss = float(sums[4] / sums[5]) if n_action < len(samples) else float("nan")
        return float(sums[0] / sums[1]), action, world_loss

    def run(self) -> TrainResult:
        saved = self._build()
        if saved is not None and saved.get("stage") == "done":
            final = self.out / FINAL_CHECKPOINT
            return TrainResult(self.out, final if final.exists() else self.out / LAST_CHECKPOINT,
                               self.losses, None, None, False, *self._labelled())
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
            return TrainResult(self.out, self.save(), self.losses, rate, vq_rate, True,
                               *self._labelled())
        self.stage = "done"
        self.save()
        final = self.out / FINAL_CHECKPOINT
        if self.dist.main:
            save_checkpoint(final, self._payload(full=False))
        return TrainResult(self.out, final, self.losses, rate, vq_rate, False, *self._labelled())

    def _labelled(self) -> tuple[int, int]:
        """(episodes feeding action samples, those labelled with intended actions)."""
        return self.demos.action_episodes(), self.demos.intended_labels


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a WorldVLA model; see the module docstring. The writing rank holds the
    training directory's lock (`run_lock`) throughout: a second training of the same --out
    stops at once with a line naming the first, instead of both writing last.pt."""
    try:
        with contextlib.ExitStack() as stack:
            if launch_info().main:
                out = Path(config.out)
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_dir_lock(out, "training directory", "training",
                                                 "another --out"))
            return Trainer(config).run()
    finally:
        import torch.distributed as td

        if td.is_available() and td.is_initialized():
            td.barrier()  # rank 0 has written its checkpoints
            td.destroy_process_group()


def _bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled,
                dynamic_ncols=True, file=sys.stderr)


def _row(stage: str, step: int, loss: float, **values: float) -> dict[str, Any]:
    row: dict[str, Any] = {c: float("nan") for c in LOSS_COLUMNS}
    row.update(stage=stage, step=step, loss=loss, **values)
    return row
