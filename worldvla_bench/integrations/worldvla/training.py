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
the action model alone). Episodes of `world_data` files give world-model samples only. The loss is
one weighted cross-entropy over every answer token of the batch, with the model's per-class
weight on image-code targets (`image_loss_weight`, default WorldVLA's 0.04).

Checkpoints (`last.pt` while training, with optimizer and RNG state, for resuming; `final.pt` at
the end, weights only) carry the model config, the training arguments, the instruction source and
the instructions seen, and load with `load_checkpoint` (or `WorldVLA.load`). They are written
atomically; re-running the same command resumes from `last.pt` and gives the same losses as an
uninterrupted run. `losses.csv` and `losses.png` are rewritten at every checkpoint.

The code lives in `train_config`, `demo_data`, `checkpoints`, `trainer`, `loss_curves` and
`train_cli`; this module is the one place to import it from.
"""

from worldvla_bench.integrations.worldvla.checkpoints import (  # noqa: F401
    CHECKPOINT_FORMAT,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from worldvla_bench.integrations.worldvla.demo_data import (  # noqa: F401
    DemoSet,
    SampleBuilder,
    demo_files,
    instruction_from_filename,
    load_demos,
    make_synthetic_demos,
)
from worldvla_bench.integrations.worldvla.loss_curves import (  # noqa: F401
    LOSS_COLUMNS,
    LOSSES_CSV,
    LOSSES_PNG,
    iter_loss_rows,
    plot_losses,
    write_losses,
)
from worldvla_bench.integrations.worldvla.train_cli import (  # noqa: F401
    add_train_arguments,
    add_train_parser,
    cmd_train,
    config_from_args,
)
from worldvla_bench.integrations.worldvla.train_config import (  # noqa: F401
    INSTRUCTION_SOURCES,
    LEGACY_TRAIN_ARGS,
    RESUMABLE_CHANGES,
    TrainConfig,
)
from worldvla_bench.integrations.worldvla.trainer import (  # noqa: F401
    Trainer,
    TrainResult,
    train,
)
