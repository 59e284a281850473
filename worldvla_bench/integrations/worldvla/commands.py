"""WorldVLA's commands for `worldvla-bench`, registered through the `worldvla_bench.commands`
entry points (pyproject.toml). This module is light: a command's own module, which imports
torch, is imported only when that command runs."""

from worldvla_bench.registry import Command

TRAIN = Command(help="train a WorldVLA model on demonstration HDF5 files",
                add_parser="worldvla_bench.integrations.worldvla.train_cli:add_train_parser")
ABLATION = Command(help="train and evaluate the WorldVLA ablation grid, one table",
                   add_parser="worldvla_bench.integrations.worldvla.ablation:add_ablation_parser")
EXPORT = Command(help="write a small evaluation-only (float16) copy of a WorldVLA checkpoint",
                 add_parser="worldvla_bench.integrations.worldvla.shipped:add_export_parser")
