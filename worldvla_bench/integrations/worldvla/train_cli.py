"""`worldvla-bench train`: its arguments and the command."""

from __future__ import annotations

import argparse
from typing import Any

from worldvla_bench.integrations.worldvla.config import PRESETS
from worldvla_bench.integrations.worldvla.devices import launch_info
from worldvla_bench.integrations.worldvla.loss_curves import (
    LOSSES_CSV,
    LOSSES_PNG,
)
from worldvla_bench.integrations.worldvla.train_config import (
    ACTION_LABELS,
    INSTRUCTION_SOURCES,
    TrainConfig,
)
from worldvla_bench.integrations.worldvla.trainer import (
    train,
)


def _on_off(value: str) -> bool:
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def add_train_arguments(parser: argparse.ArgumentParser, data_required: bool = True,
                        seed: bool = True) -> None:
    """The data, model and optimisation flags shared by `train` and `ablation` (`seed` False:
    no --seed, the command takes its training seeds another way)."""
    d = TrainConfig
    parser.add_argument("--data", nargs="+", required=data_required, metavar="PATH",
                        help="LIBERO/robomimic .hdf5 demo files or directories of them")
    parser.add_argument("--world-data", nargs="+", default=[], metavar="PATH",
                        help="more .hdf5 demo files or directories whose episodes feed "
                             "world-model samples only (e.g. noisy-expert episodes, failures "
                             "included); --data feeds both")
    parser.add_argument("--image-loss-weight", type=float, default=d.image_loss_weight,
                        metavar="W",
                        help="loss weight of image-code targets relative to other tokens "
                             "(default 0.04, WorldVLA's)")
    parser.add_argument("--world-frame-step", type=int, default=d.world_frame_step, metavar="S",
                        help="world-model samples predict frame t+S from frame t and actions "
                             "t..t+S-1 (default 1, WorldVLA's: the next frame)")
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
    if seed:
        parser.add_argument("--seed", type=int, default=d.seed, help="training seed")
    parser.add_argument("--view", default=d.view, help="camera of the demos (agentview)")
    parser.add_argument("--instruction-source", default=d.instruction_source,
                        choices=INSTRUCTION_SOURCES,
                        help="training prompt text: the file's language instruction, or the "
                             "file name (WorldVLA's libero_10 prompts, scene prefix included)")
    parser.add_argument("--action-labels", default=d.action_labels, choices=ACTION_LABELS,
                        help="what action samples learn: the executed actions, or those the "
                             "recording expert meant where the demo files keep them "
                             "(intended_actions: noisy-expert demos, DART); the world model "
                             "always reads the executed ones")
    parser.add_argument("--max-demos", type=int, default=None, help="demos per file (default all)")
    parser.add_argument("--vq-from", default=None, metavar="CKPT",
                        help="reuse the VQ-VAE of this checkpoint (skips VQ training)")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--snapshot-every", type=int, default=None, metavar="N",
                        help="keep a float16 evaluation copy of the model every N transformer "
                             "steps in OUT/snapshots/step_NNNNN.pt (learning curves)")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    parser.add_argument("--device", default=d.device,
                        help="torch device: cpu (default), cuda, cuda:1, mps, ...; under "
                             "torchrun --nproc-per-node N, cuda is each rank's local GPU")
    parser.add_argument("--bf16", type=_on_off, default=d.bf16, metavar="on|off",
                        help="bfloat16 autocast of the transformer (default: on CUDA only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register `worldvla-bench train` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "train", help="train a WorldVLA model on demonstrations (VQ-VAE, then transformer)",
        description="Train WorldVLA: the VQ-VAE on the demo frames, then the transformer on "
                    "action samples (instruction + previous + current frame -> K actions) mixed "
                    "with world-model samples (frame + action -> next frame). Re-running the "
                    "same command resumes from OUT/last.pt. On several GPUs: torchrun "
                    "--standalone --nproc-per-node N -m worldvla_bench train ... --device cuda "
                    "(DDP; --batch-size is the global batch).",
    )
    add_train_arguments(parser, data_required=False)
    parser.add_argument("--tokens", default=None, metavar="FILE",
                        help="train the transformer on this token file (demos as VQ codes, "
                             "made by `ablation`; with --vq-from the VQ-VAE that encoded them) "
                             "instead of --data: the same samples on any machine")
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
        "data": args.data or [], "out": getattr(args, "out", None), "config": args.config,
        "chunk_size": args.chunk_size, "steps": args.steps, "vq_steps": args.vq_steps,
        "batch_size": args.batch_size, "vq_batch_size": args.vq_batch_size, "lr": args.lr,
        "vq_lr": args.vq_lr, "seed": getattr(args, "seed", TrainConfig.seed),
        "view": args.view,
        "instruction_source": args.instruction_source, "max_demos": args.max_demos,
        "action_labels": args.action_labels,
        "vq_from": args.vq_from, "tokens": getattr(args, "tokens", None),
        "checkpoint_every": args.checkpoint_every,
        "snapshot_every": getattr(args, "snapshot_every", None),
        "threads": args.threads, "progress": not args.no_progress,
        "device": getattr(args, "device", "cpu"), "bf16": getattr(args, "bf16", None),
        "world_model_weight": getattr(args, "world_model_weight", 0.0),
        "world_data": getattr(args, "world_data", None) or [],
        "image_loss_weight": getattr(args, "image_loss_weight", TrainConfig.image_loss_weight),
        "world_frame_step": getattr(args, "world_frame_step", TrainConfig.world_frame_step),
        "action_mask": getattr(args, "action_mask", True),
        "stop_at": getattr(args, "stop_at", None),
        "resume": not getattr(args, "restart", False),
    }
    values.update(overrides)
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train(config)
    if launch_info().rank:  # under torchrun, rank 0 reports
        return 0
    transformer = [r for r in result.losses if r["stage"] == "transformer"]
    if transformer:
        print(f"transformer step {transformer[-1]['step']}: loss {transformer[-1]['loss']:.4f}")
    if result.steps_per_s:
        print(f"{result.steps_per_s:.2f} transformer steps/s")
    if config.action_labels == "intended":
        print(f"action labels: the intended actions of {result.intended_labels} of "
              f"{result.action_episodes} demos (the executed ones of the rest: their files "
              "keep none)")
    state = "stopped (resume with the same command)" if result.stopped_early else "done"
    print(f"{state}: {result.checkpoint}; losses in {result.out / LOSSES_CSV}, "
          f"{result.out / LOSSES_PNG}")
    return 0
