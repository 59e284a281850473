"""Where the tiny WorldVLA model runs: a torch device, bf16 autocast on CUDA, and the process
group of a `torchrun` launch (DDP).

CPU is the default everywhere. `bf16` None means "on where it pays": bfloat16 autocast on CUDA,
never on another device (CPU autocast is slow and changes the numbers the tests pin).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from worldvla_bench.errors import BenchError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device from 'cpu', 'cuda', 'cuda:1', 'mps', ... (None: 'cpu')."""
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as error:
        raise BenchError(f"bad device {device!r}: {error}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device {device!r}: torch sees no CUDA device here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BenchError(f"device {device!r}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"device {device!r}: MPS is not available here")
    return dev


def use_bf16(device: torch.device, bf16: bool | None) -> bool:
    """Whether to autocast to bfloat16: on CUDA unless `bf16` is False; refused elsewhere."""
    if bf16 and device.type != "cuda":
        raise BenchError(f"bf16 autocast is for CUDA devices only, not {device}")
    return device.type == "cuda" and bf16 is not False


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bfloat16 autocast on `device` when `enabled` (see `use_bf16`), else nothing."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` launch (rank 0 of 1 when launched alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launch_info() -> Distributed:
    """Rank, world size and local rank from torchrun's environment (RANK, WORLD_SIZE, ...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(dist: Distributed, device: torch.device) -> None:
    """Join torchrun's process group: NCCL for CUDA devices, gloo otherwise."""
    import torch.distributed as td

    if dist.enabled and not td.is_initialized():
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
