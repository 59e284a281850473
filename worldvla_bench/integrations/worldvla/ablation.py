"""The WorldVLA ablation grid (as in the paper): action model vs action + world model, action
chunks with and without the action attention mask. Trains each cell (or takes its checkpoint),
evaluates it with `run_evaluation`, and writes one comparison table.

| cell | world model | action chunk | action mask |
|---|---|---|---|
| `action` | - | - (K=1) | - |
| `action+world` | yes | - (K=1) | - |
| `action_chunk` | - | K | off |
| `action_chunk+mask` | - | K | on |
| `action+world_chunk+mask` | yes | K | on |

All cells share one VQ-VAE (trained once, or `--vq-from`), the same data, steps and seed, so
the cells differ only in what the grid names. Every stage resumes: re-running the same command
skips finished training runs and finished episodes. Output under `--out`: `vq/`, `train/<cell>/`,
`runs/<cell>/` (ordinary run directories: `worldvla-bench report` and `compare` work on them),
and `ablation.md`, `ablation.csv`: success % with the 95% Wilson interval and the number of
trials per cell.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.protocol import Protocol, RunOptions

POLICY_TARGET = "worldvla_bench.integrations.worldvla.policy:WorldVLAPolicy"
TABLE_MD = "ablation.md"
TABLE_CSV = "ablation.csv"


@dataclass(frozen=True)
class AblationCell:
    name: str
    world_model: bool
    chunk: bool
    action_mask: bool


GRID: tuple[AblationCell, ...] = (
    AblationCell("action", world_model=False, chunk=False, action_mask=False),
    AblationCell("action+world", world_model=True, chunk=False, action_mask=False),
    AblationCell("action_chunk", world_model=False, chunk=True, action_mask=False),
    AblationCell("action_chunk+mask", world_model=False, chunk=True, action_mask=True),
    AblationCell("action+world_chunk+mask", world_model=True, chunk=True, action_mask=True),
)
CELLS = {cell.name: cell for cell in GRID}


def select_cells(names: Sequence[str] | str | None) -> list[AblationCell]:
    if names is None:
        return list(GRID)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        raise UnknownChoiceError("ablation cell", unknown[0], list(CELLS))
    return [CELLS[n] for n in names]


@dataclass
class CellRun:
    """One evaluated cell: its run directory, the K it used and where its checkpoint is."""

    cell: AblationCell
    run_dir: Path
    chunk_size: int
    checkpoint: str | None = None


# ------------------------------------------------------------------------------------- table


def ablation_table(runs: Sequence[CellRun]) -> pd.DataFrame:
    """One row per cell: flags, trials, successes, success % with its 95% Wilson interval,
    errors and mean steps, computed from each run's records (`RunDir`; missing runs: 0 trials)."""
    from worldvla_bench.report import load_run, wilson_interval

    rows: list[dict[str, Any]] = []
    for entry in runs:
        run_dir = Path(entry.run_dir)
        try:
            episodes = load_run(run_dir)
        except BenchError:
            episodes = None
        trials = 0 if episodes is None else len(episodes)
        successes = 0 if episodes is None else int(episodes["success"].sum())
        low, high = wilson_interval(successes, trials)
        rows.append({
            "cell": entry.cell.name,
            "world_model": entry.cell.world_model,
            "chunk_size": entry.chunk_size,
            "action_mask": entry.cell.action_mask,
            "suite": ",".join(sorted(episodes["suite"].unique())) if trials else "",
            "tasks": ",".join(map(str, sorted(episodes["task_id"].unique()))) if trials else "",
            "trials": trials,
            "successes": successes,
            "success_rate": 100.0 * successes / trials if trials else float("nan"),
            "ci_low": 100.0 * low,
            "ci_high": 100.0 * high,
            "errors": 0 if episodes is None else int(episodes["is_error"].sum()),
            "mean_steps": float(episodes["steps"].mean()) if trials else float("nan"),
            "run": str(run_dir),
            "checkpoint": entry.checkpoint or "",
        })
    return pd.DataFrame(rows)


def format_ablation(table: pd.DataFrame) -> str:
    """The table as markdown: success % and its 95% Wilson interval, trials per cell."""
    def pct(v: float) -> str:
        return "-" if v != v else f"{v:.1f}"

    shown = pd.DataFrame({
        "cell": table["cell"],
        "world model": table["world_model"].map(lambda v: "yes" if v else "-"),
        "action chunk": table["chunk_size"].map(lambda k: f"K={k}" if k > 1 else "-"),
        "action mask": [("on" if m else "off") if k > 1 else "-"
                        for m, k in zip(table["action_mask"], table["chunk_size"], strict=True)],
        "trials": table["trials"].astype(int).astype(str),
        "success %": table["success_rate"].map(pct),
        "95% CI": [f"[{pct(lo)}, {pct(hi)}]" for lo, hi in zip(table["ci_low"], table["ci_high"],
                                                              strict=True)],
        "errors": table["errors"].astype(int).astype(str),
    })
    return shown.to_markdown(index=False, disable_numparse=True)


def write_ablation(table: pd.DataFrame, out: str | Path, title: str = "WorldVLA ablation"
                   ) -> dict[str, Any]:
    """Write `ablation.md` and `ablation.csv` into `out` (atomically); returns paths and text."""
    out = Path(out)
    suites = sorted({s for s in table.get("suite", []) if s})
    header = f"# {title}" + (f" on `{', '.join(suites)}`" if suites else "")
    markdown = (f"{header}\n\n{format_ablation(table)}\n\n"
                "Success rates in percent with the 95% Wilson interval; trials = episodes per "
                "cell (all selected tasks).\n")
    write_atomic(out / TABLE_MD, markdown.encode())
    write_atomic(out / TABLE_CSV, table.to_csv(index=False).encode())
    return {"markdown": markdown, "md": out / TABLE_MD, "csv": out / TABLE_CSV}


# ----------------------------------------------------------------------------------- running


@dataclass
class AblationConfig:
    """What to train and evaluate. `protocol`: the evaluations' suite, run seed, seeding, image
    size, step limit and render settings (its policy is each cell's checkpoint, whatever it
    names); `options`: which episodes (default: task 0) and the workers (its run directory is
    `<out>/runs/<cell>`); `options.progress` also shows training progress. `train` holds
    `TrainConfig` fields shared by every cell."""

    data: list[str]
    protocol: Protocol
    out: str
    options: RunOptions = field(default_factory=lambda: RunOptions(tasks="0"))
    cells: list[str] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    chunk_size: int = 5
    world_model_weight: float = 1.0
    train: dict[str, Any] = field(default_factory=dict)


def _train_cell(config: AblationConfig, cell: AblationCell, vq_checkpoint: str | None) -> str:
    from worldvla_bench.integrations.worldvla.training import TrainConfig, train

    out = Path(config.out) / "train" / cell.name
    args = {**config.train, "data": config.data, "out": str(out),
            "chunk_size": config.chunk_size if cell.chunk else 1,
            "world_model_weight": config.world_model_weight if cell.world_model else 0.0,
            "action_mask": cell.action_mask, "progress": config.options.progress}
    if vq_checkpoint:
        args["vq_from"] = vq_checkpoint
    return str(train(TrainConfig(**args)).checkpoint)


def _shared_vq(config: AblationConfig) -> str | None:
    from worldvla_bench.integrations.worldvla.training import TrainConfig, train

    if config.train.get("vq_from"):
        return str(config.train["vq_from"])
    args = {**config.train, "data": config.data, "out": str(Path(config.out) / "vq"),
            "steps": 0, "progress": config.options.progress}
    return str(train(TrainConfig(**args)).checkpoint)


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Train (or take) every selected cell, evaluate each, write the table; returns
    {'table', 'markdown', 'md', 'csv', 'runs'}."""
    from worldvla_bench.integrations.worldvla.training import load_checkpoint
    from worldvla_bench.rollout import run_evaluation

    cells = select_cells(config.cells)
    unknown = sorted(set(config.checkpoints) - set(CELLS))
    if unknown:
        raise UnknownChoiceError("ablation cell", unknown[0], list(CELLS))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    needs_training = [c for c in cells if c.name not in config.checkpoints]
    vq = _shared_vq(config) if needs_training else None
    runs: list[CellRun] = []
    for cell in cells:
        checkpoint = config.checkpoints.get(cell.name) or _train_cell(config, cell, vq)
        _, meta = load_checkpoint(checkpoint)
        run_dir = out / "runs" / cell.name.replace("+", "_plus_")
        run_evaluation(
            replace(config.protocol, policy=POLICY_TARGET,
                    policy_kwargs={"checkpoint": str(Path(checkpoint).resolve()),
                                   "action_mask": cell.action_mask}),
            replace(config.options, run_dir=run_dir))
        runs.append(CellRun(cell, run_dir, int(meta["chunk_size"]), str(checkpoint)))
    table = ablation_table(runs)
    written = write_ablation(table, out)
    return {"table": table, "runs": runs, **written}


# --------------------------------------------------------------------------------------- CLI


def _parse_checkpoints(items: Sequence[str] | None) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise BenchError(f"bad --checkpoint {item!r}: use CELL=PATH")
        parsed[name.strip()] = path.strip()
    return parsed


def add_ablation_parser(subparsers) -> argparse.ArgumentParser:
    """Register `worldvla-bench ablation` on an argparse subparsers object."""
    from worldvla_bench.commands import run_flags
    from worldvla_bench.integrations.worldvla.training import add_train_arguments

    parser = subparsers.add_parser(
        "ablation", help="WorldVLA ablation grid: train, evaluate, one comparison table",
        description=__doc__.split("\n\n")[0],
    )
    add_train_arguments(parser, data_required=False)
    # --seed is the training seed: the evaluations' run seed is --eval-seed; the policy is
    # each cell's checkpoint
    run_flags.add_protocol_flags(parser, policy=False, seed_flag="--eval-seed",
                                 seed_help="run seed of the evaluations")
    run_flags.add_selection_flags(parser, tasks_default="0")
    run_flags.add_execution_flags(parser)
    parser.add_argument("--cells", default=None,
                        help=f"comma-separated subset of: {', '.join(CELLS)} (default all)")
    parser.add_argument("--checkpoint", action="append", metavar="CELL=PATH",
                        help="take this checkpoint for a cell instead of training it (repeatable)")
    parser.add_argument("--world-model-weight", type=float, default=1.0, metavar="W",
                        help="world samples per action sample in the world-model cells")
    parser.add_argument("--out", default=None, help="output directory (default "
                                                    "results/ablation_<suite>)")
    parser.set_defaults(func=cmd_ablation)
    return parser


def cmd_ablation(args: argparse.Namespace) -> int:
    from worldvla_bench.commands import run_flags

    checkpoints = _parse_checkpoints(args.checkpoint)
    cells = select_cells(args.cells)
    if not args.data and any(c.name not in checkpoints for c in cells):
        raise BenchError("--data is needed to train the cells without a --checkpoint")
    train_args = {
        "config": args.config, "steps": args.steps, "vq_steps": args.vq_steps,
        "batch_size": args.batch_size, "vq_batch_size": args.vq_batch_size, "lr": args.lr,
        "vq_lr": args.vq_lr, "seed": args.seed, "view": args.view,
        "instruction_source": args.instruction_source, "max_demos": args.max_demos,
        "vq_from": args.vq_from, "checkpoint_every": args.checkpoint_every,
        "threads": args.threads,
    }
    result = run_ablation(AblationConfig(
        data=list(args.data or []),
        protocol=run_flags.protocol_from_args(args, policy=POLICY_TARGET),
        out=args.out or str(Path("results") / f"ablation_{args.suite}"),
        options=run_flags.options_from_args(args),
        cells=[c.name for c in cells],
        checkpoints=checkpoints,
        chunk_size=args.chunk_size,
        world_model_weight=args.world_model_weight,
        train=train_args,
    ))
    print(result["markdown"])
    print(f"written: {result['md']}, {result['csv']}")
    return 0
