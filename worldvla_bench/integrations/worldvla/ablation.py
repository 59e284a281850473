"""The WorldVLA ablation grid (as in the paper): action model vs action + world model, action
chunks with and without the action attention mask. Trains each cell once per training seed (or
takes its checkpoint), evaluates each with `run_evaluation`, and writes the grid's table and one
table per claim of the paper (`claims.py`).

| cell | world model | action chunk | action mask |
|---|---|---|---|
| `action` | - | - (K=1) | - |
| `action+world` | yes | - (K=1) | - |
| `action_chunk` | - | K | off |
| `action_chunk+mask` | - | K | on |
| `action+world_chunk+mask` | yes | K | on |

All cells share one VQ-VAE (trained once, with the first training seed, on the frames of
`data` and `world_data`; or `--vq-from`) and train on the same demos, encoded once by it into a
token file (`token_data`), with the same steps and training seeds, so the cells differ only in
what the grid names; `world_data` (world-model-only episodes) feeds the world-model cells only,
as `train --world-data` does. The grid's data is `data/vq.pt` (the VQ-VAE alone) and
`data/tokens.npz` under `--out`: once they exist the demos are not read again, so a grid can be
carried on on another machine (MuJoCo rollouts, hence re-recorded demos, differ between
machines) from these two files. Each training run is exported as `train/<cell>/seed<k>/
model.pt` (float16, `export_checkpoint`), the file its run evaluates; once it exists the cell is
not trained again. Every stage resumes: re-running the same command skips finished training
runs and finished episodes. Output under `--out`: `data/`, `vq/` (the VQ-VAE's training run),
`train/<cell>/seed<k>/`, `runs/<cell>/seed<k>/` (ordinary run directories: `worldvla-bench
report` and `compare` work on any of them; `<cell>` with `+` written `_plus_`), `ablation.md`,
`ablation.csv` (success % with the 95% Wilson interval per cell and seed, and pooled over
seeds) and `claims.md`, `claims.csv` (`claims.py`). The tables are rewritten after every
evaluated run, so a long grid shows what it has so far.

`--models-from GRID` evaluates another grid's exports (`GRID/train/<cell>/seed<k>/model.pt`)
instead of training, e.g. under other policy arguments (`--policy-arg constrained=true`: the
same models, answers always well formed) into another `--out`; cells the other grid has not
trained yet are named and left out of the tables.
"""

from __future__ import annotations

import argparse
import sys
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
#: the grid's data under --out: the shared VQ-VAE and the demos as its codes
DATA_DIR = "data"
VQ_FILE = "vq.pt"
TOKENS_FILE = "tokens.npz"
#: the grid's trainings under --out (`<out>/train/<cell>/seed<k>/`) and each one's float16
#: export, the checkpoint its run evaluates
TRAIN_DIR = "train"
CELL_MODEL = "model.pt"
#: policy arguments each cell sets itself (`--policy-arg` may not)
PER_CELL_POLICY_ARGS = frozenset({"checkpoint", "action_mask"})
#: TrainConfig fields each cell sets itself (the rest are shared by every cell)
PER_CELL_TRAIN_ARGS = frozenset({"data", "out", "chunk_size", "world_model_weight",
                                 "world_data", "action_mask", "seed", "progress", "tokens",
                                 "vq_from"})


@dataclass(frozen=True)
class AblationCell:
    name: str
    world_model: bool
    chunk: bool
    action_mask: bool

    @property
    def slug(self) -> str:
        """The cell's directory name ('+' written '_plus_')."""
        return self.name.replace("+", "_plus_")


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


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """Training seeds from '0,1' (or a list): distinct non-negative integers, in order."""
    if isinstance(text, str):
        try:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise BenchError(f"bad training seeds {text!r}: use e.g. '0,1'") from None
    else:
        seeds = [int(s) for s in text]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BenchError(f"training seeds must be distinct integers >= 0, got {text!r}")
    return seeds


@dataclass
class CellRun:
    """One evaluated cell and training seed: its run directory, the K it used and where its
    checkpoint is."""

    cell: AblationCell
    run_dir: Path
    chunk_size: int
    checkpoint: str | None = None
    seed: int = 0


# ------------------------------------------------------------------------------------ tables


def grid_episodes(runs: Sequence[CellRun]) -> pd.DataFrame:
    """Every episode of every run, with `cell` and `train_seed` columns (runs without
    episodes are skipped); the episodes' own seeds stay in `seed`."""
    return _tagged_episodes([(entry.cell.name, entry.seed, entry.run_dir) for entry in runs])


def recorded_episodes(grid: str | Path) -> pd.DataFrame:
    """`grid_episodes` of the runs a grid's --out holds (`runs/<cell>/seed<k>`), whatever
    made them: what its claims are computed from."""
    runs = []
    for cell in GRID:
        for run_dir in sorted((Path(grid) / "runs" / cell.slug).glob("seed*")):
            seed = run_dir.name.removeprefix("seed")
            if seed.isdigit():
                runs.append((cell.name, int(seed), run_dir))
    return _tagged_episodes(runs)


def _tagged_episodes(runs: Sequence[tuple[str, int, Path]]) -> pd.DataFrame:
    """The episodes of each (cell name, training seed, run directory), tagged with both."""
    from worldvla_bench.report import load_run

    frames = []
    for name, seed, run_dir in runs:
        try:
            episodes = load_run(run_dir)
        except BenchError:
            continue
        frames.append(episodes.assign(cell=name, train_seed=seed))
    if not frames:
        return pd.DataFrame(columns=["cell", "train_seed", "suite", "task_id", "trial",
                                     "success", "is_error"])
    return pd.concat(frames, ignore_index=True)


def _table_row(cell: AblationCell, seed: str, chunk_size: int, episodes: pd.DataFrame | None,
               runs: list[str], checkpoints: list[str]) -> dict[str, Any]:
    from worldvla_bench.integrations.worldvla.checkpoints import file_sha256
    from worldvla_bench.report import policy_ending_reasons, wilson_interval

    ran = None if episodes is None else episodes[~episodes["is_error"]]
    trials = 0 if ran is None else len(ran)
    successes = 0 if ran is None else int(ran["success"].sum())
    low, high = wilson_interval(successes, trials)
    return {
        "cell": cell.name,
        "train_seed": seed,
        "world_model": cell.world_model,
        "chunk_size": chunk_size,
        "action_mask": cell.action_mask,
        "suite": ",".join(sorted(ran["suite"].unique())) if trials else "",
        "tasks": ",".join(map(str, sorted(ran["task_id"].unique()))) if trials else "",
        "trials": trials,
        "successes": successes,
        "success_rate": 100.0 * successes / trials if trials else float("nan"),
        "ci_low": 100.0 * low,
        "ci_high": 100.0 * high,
        "errors": 0 if episodes is None else int(episodes["is_error"].sum()),
        # failed episodes the policy ended (a broken answer, the official rule), not for want
        # of time
        "ended_by_policy": 0 if ran is None else len(policy_ending_reasons(ran)),
        # the answers asked of the policy: a K=1 cell asks K times as often per step as a
        # K-chunk cell, so it has K times the chances to break an answer
        "policy_calls": int(ran["policy_calls"].fillna(0).sum()) if trials else 0,
        "mean_steps": float(ran["steps"].mean()) if trials else float("nan"),
        "train_min": sum(_training_seconds(c) for c in checkpoints) / 60.0,
        "episodes_min": (0.0 if episodes is None or "wall_time_s" not in episodes
                         else float(episodes["wall_time_s"].fillna(0).sum()) / 60.0),
        "run": ";".join(runs),
        "checkpoint": ";".join(checkpoints),
        "checkpoint_sha256": ";".join(file_sha256(c) for c in checkpoints),
    }


def _training_seconds(checkpoint: str) -> float:
    """The training time a checkpoint records (`elapsed_s`: every session of a resumed
    training, kept by the float16 export); NaN when there is none to read."""
    from worldvla_bench.integrations.worldvla.checkpoints import read_checkpoint

    if not checkpoint:
        return float("nan")
    try:
        return float(read_checkpoint(checkpoint).get("elapsed_s", float("nan")))
    except BenchError:
        return float("nan")


def ablation_table(runs: Sequence[CellRun]) -> pd.DataFrame:
    """One row per run (cell and training seed): flags, trials (episodes that ran), successes,
    success % with its 95% Wilson interval, errors, episodes the policy ended, mean steps, the
    run and the checkpoint with its sha256, from each run's records (missing runs: 0 trials).
    A cell with more than one training seed gets a pooled row after its runs (`train_seed`
    'all')."""
    from worldvla_bench.report import load_run

    rows: list[dict[str, Any]] = []
    by_cell: dict[str, list[tuple[CellRun, pd.DataFrame | None]]] = {}
    for entry in runs:
        try:
            episodes = load_run(entry.run_dir)
        except BenchError:
            episodes = None
        by_cell.setdefault(entry.cell.name, []).append((entry, episodes))
    for entries in by_cell.values():
        for entry, episodes in entries:
            rows.append(_table_row(entry.cell, str(entry.seed), entry.chunk_size, episodes,
                                   [str(entry.run_dir)], [entry.checkpoint or ""]))
        if len(entries) > 1:
            found = [e for _, e in entries if e is not None]
            first = entries[0][0]
            rows.append(_table_row(first.cell, "all", first.chunk_size,
                                   pd.concat(found, ignore_index=True) if found else None,
                                   [str(e.run_dir) for e, _ in entries],
                                   [e.checkpoint or "" for e, _ in entries]))
    return pd.DataFrame(rows)


def format_ablation(table: pd.DataFrame) -> str:
    """The table as markdown: success % and its 95% Wilson interval, trials per cell."""
    from worldvla_bench.integrations.worldvla.claims import interval, percent

    shown = pd.DataFrame({
        "cell": table["cell"],
        "training seed": table["train_seed"].astype(str),
        "world model": table["world_model"].map(lambda v: "yes" if v else "-"),
        "action chunk": table["chunk_size"].map(lambda k: f"K={k}" if k > 1 else "-"),
        "action mask": [("on" if m else "off") if k > 1 else "-"
                        for m, k in zip(table["action_mask"], table["chunk_size"], strict=True)],
        "trials": table["trials"].astype(int).astype(str),
        "success %": table["success_rate"].map(percent),
        "95% CI": [interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"],
                                                      strict=True)],
        "errors": table["errors"].astype(int).astype(str),
        "ended by policy": table["ended_by_policy"].astype(int).astype(str),
        "policy calls": table["policy_calls"].astype(int).astype(str),
        "training min": table["train_min"].map(lambda v: "-" if v != v else f"{v:.0f}"),
        "episodes min": table["episodes_min"].map(lambda v: f"{v:.0f}"),
    })
    return shown.to_markdown(index=False, disable_numparse=True)


def write_ablation(table: pd.DataFrame, out: str | Path,
                   title: str = "WorldVLA ablation") -> dict[str, Any]:
    """Write `ablation.md` and `ablation.csv` into `out` (atomically); returns paths and text."""
    out = Path(out)
    suites = sorted({s for s in table.get("suite", []) if s})
    header = f"# {title}" + (f" on `{', '.join(suites)}`" if suites else "")
    markdown = (f"{header}\n\n{format_ablation(table)}\n\n"
                "Success rates in percent with the 95% Wilson interval; trials = episodes that "
                "ran per cell and training seed (all selected tasks); training seed 'all' pools "
                "a cell's seeds; ended by policy: failed episodes the policy ended itself (a "
                "broken answer: no well-formed action block, the official rule), out of "
                "the policy calls (answers asked: one per action at K=1, one per K actions "
                "with chunks); training "
                "min: the training's own time (`elapsed_s` in its checkpoint); episodes min: "
                "the episodes' wall times summed (workers run them side by side). Checkpoints "
                f"and their sha256 are in {TABLE_CSV}.\n{_time_line(table, out)}")
    write_atomic(out / TABLE_MD, markdown.encode())
    write_atomic(out / TABLE_CSV, table.to_csv(index=False).encode())
    return {"markdown": markdown, "md": out / TABLE_MD, "csv": out / TABLE_CSV}


def _trained_elsewhere(checkpoint: str, out: str | Path) -> str | None:
    """Where a run's checkpoint was trained when not by the grid under `out` (its exports are
    `<out>/train/...`): another grid's --out for one of its exports, else the file; None for
    this grid's own (or no checkpoint)."""
    if not checkpoint:
        return None
    path = Path(checkpoint)
    if path.resolve().is_relative_to((Path(out) / TRAIN_DIR).resolve()):
        return None
    parents = path.parents  # an export is <grid>/train/<cell>/seed<k>/model.pt (_cell_export)
    return str(parents[3]) if len(parents) > 3 and parents[2].name == TRAIN_DIR else checkpoint


def _time_line(table: pd.DataFrame, out: str | Path) -> str:
    """'Time so far: ...' over the runs' rows (pooled rows left out), or '' for no rows. Only
    the training of this grid's own models counts as its time; models it took (another grid's
    exports, --checkpoint files) are named with their training time."""
    rows = table[table["train_seed"].astype(str) != "all"] if len(table) else table
    if not len(rows):
        return ""
    origins = [_trained_elsewhere(c, out) for c in rows["checkpoint"].fillna("").astype(str)]
    taken = pd.Series([o is not None for o in origins], index=rows.index)
    sources = list(dict.fromkeys(o for o in origins if o is not None))

    def trainings(part: pd.DataFrame) -> str:
        return (f"{part['train_min'].sum(skipna=True) / 60.0:.1f} h of training "
                f"({int(part['train_min'].notna().sum())} of {len(part)} trainings recorded)")

    episodes = f"{rows['episodes_min'].sum() / 60.0:.1f} h of episodes (summed over the workers)"
    if not taken.any():
        return f"\nTime so far: {trainings(rows)}, {episodes}.\n"
    files = set(rows["checkpoint"][taken])  # a --checkpoint file is its own source
    owner = (f"{sources[0]}'s" if len(sources) == 1 and sources[0] not in files
             else f"from {', '.join(sources)}")
    if taken.all():
        return (f"\nTime so far: {episodes}; nothing trained here: the models are {owner}, "
                f"{trainings(rows)}.\n")
    return (f"\nTime so far: {trainings(rows[~taken])}, {episodes}; not counted: "
            f"{int(taken.sum())} of the {len(rows)} models are {owner}, "
            f"{trainings(rows[taken])}.\n")


def write_tables(runs: Sequence[CellRun], out: str | Path,
                 policy_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The grid's table and the claims tables of `runs`, written into `out`; the titles name
    `policy_kwargs`, the policy arguments every cell's runs share beyond the grid's own."""
    from worldvla_bench.integrations.worldvla.claims import claims_table, write_claims

    shared = ", ".join(f"{key}={value}" for key, value in sorted((policy_kwargs or {}).items()))
    suffix = f" (every cell's policy with {shared})" if shared else ""
    table = ablation_table(runs)
    written = write_ablation(table, out, title=f"WorldVLA ablation{suffix}")
    claims = claims_table(grid_episodes(runs))
    claims_written = write_claims(claims, out, title=f"WorldVLA's claims{suffix}")
    return {"table": table, **written, "claims": claims,
            "claims_markdown": claims_written["markdown"], "claims_md": claims_written["md"],
            "claims_csv": claims_written["csv"]}


# ----------------------------------------------------------------------------------- running


@dataclass
class AblationConfig:
    """What to train and evaluate. `protocol`: the evaluations' suite, run seed, seeding, image
    size, step limit and render settings (its policy is each cell's checkpoint, whatever it
    names; its policy arguments go to every cell's policy, beside the checkpoint and action
    mask the cell sets); `options`: which episodes (default: task 0) and the workers (its run
    directory is `<out>/runs/<cell>/seed<k>`); `options.progress` also shows training progress.
    `train_seeds`: one training run per cell and seed; `world_data`: world-model-only episodes
    (world-model cells only); `train` holds the other `TrainConfig` fields, shared by every
    cell (e.g. steps, vq_steps, image_loss_weight). `checkpoints` maps (cell, seed) to a
    checkpoint taken instead of training; `models_from`: another grid's --out whose exports
    every other cell takes (nothing is trained; a cell it lacks is skipped, and named)."""

    data: list[str]
    protocol: Protocol
    out: str
    options: RunOptions = field(default_factory=lambda: RunOptions(tasks="0"))
    cells: list[str] | None = None
    train_seeds: list[int] = field(default_factory=lambda: [0, 1])
    checkpoints: dict[tuple[str, int], str] = field(default_factory=dict)
    models_from: str | None = None
    chunk_size: int = 5
    world_model_weight: float = 1.0
    world_data: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GridData:
    """The grid's shared data: the VQ-VAE file and the token file it encoded."""

    vq: Path
    tokens: Path


def _cell_export(grid: str | Path, cell: AblationCell, seed: int) -> Path:
    """Where the grid under `grid` keeps the float16 export of `cell` trained with `seed`."""
    return Path(grid) / TRAIN_DIR / cell.slug / f"seed{seed}" / CELL_MODEL


def _train_cell(config: AblationConfig, cell: AblationCell, seed: int,
                data: GridData | None) -> str:
    """Train one cell with one seed on the grid's tokens (unless its export exists) and return
    its float16 export, the file its run evaluates."""
    from worldvla_bench.integrations.worldvla.shipped import export_checkpoint
    from worldvla_bench.integrations.worldvla.training import TrainConfig, train

    model = _cell_export(config.out, cell, seed)
    out = model.parent
    if model.exists():
        return str(model)
    if data is None:
        raise BenchError(f"no grid data to train {cell.name} (seed {seed})")
    args = {**config.train, "data": [], "out": str(out), "seed": seed,
            "tokens": str(data.tokens), "vq_from": str(data.vq),
            "chunk_size": config.chunk_size if cell.chunk else 1,
            "world_model_weight": config.world_model_weight if cell.world_model else 0.0,
            "world_data": [], "action_mask": cell.action_mask,
            "progress": config.options.progress}
    result = train(TrainConfig(**args))
    if result.stopped_early:
        raise BenchError(f"training of {cell.name} (seed {seed}) stopped at step "
                         f"{result.losses[-1]['step'] if result.losses else 0}: re-run to resume")
    return str(export_checkpoint(result.checkpoint, model))


def _grid_data(config: AblationConfig, seed: int) -> GridData:
    """The grid's VQ-VAE and tokens under `<out>/data`: made once (the VQ-VAE trained with
    `seed` on the frames of `data` and `world_data`, or taken from `vq_from`), then read back.
    Demos named again must be the files the tokens were made from."""
    from worldvla_bench.integrations.worldvla.checkpoints import save_vq_only
    from worldvla_bench.integrations.worldvla.demo_data import demo_files
    from worldvla_bench.integrations.worldvla.token_data import (
        RECIPE_KEYS,
        make_tokens,
        read_token_meta,
    )

    folder = Path(config.out) / DATA_DIR
    grid = GridData(folder / VQ_FILE, folder / TOKENS_FILE)
    if grid.vq.exists() and grid.tokens.exists():
        meta = read_token_meta(grid.tokens)
        for paths, key in ((config.data, "files"), (config.world_data, "world_files")):
            if paths and all(Path(p).exists() for p in paths):
                named = [str(p) for p in demo_files(paths)]
                if named != meta[key]:
                    raise BenchError(
                        f"{grid.tokens} was made from other demos ({len(meta[key])} files, "
                        f"{len(named)} named now): use another --out, or delete "
                        f"{folder} to make the grid's data again")
        return grid
    if not config.data:
        raise BenchError(f"no grid data in {folder}: --data is needed to make it")
    source = config.train.get("vq_from") or _train_vq(config, seed)
    save_vq_only(source, grid.vq)
    make_tokens(grid.tokens, grid.vq, config.data, config.world_data,
                **{key: config.train[key] for key in RECIPE_KEYS if key in config.train})
    return grid


def _train_vq(config: AblationConfig, seed: int) -> str:
    from worldvla_bench.integrations.worldvla.training import TrainConfig, train

    # the world-model-only frames train the VQ too (as in `train --world-data`); a weight > 0
    # is what TrainConfig asks of world data, the VQ stage itself has no transformer samples
    args = {**config.train, "data": config.data, "out": str(Path(config.out) / "vq"),
            "steps": 0, "seed": seed, "world_data": config.world_data,
            "world_model_weight": config.world_model_weight if config.world_data else 0.0,
            "progress": config.options.progress, "tokens": None, "vq_from": None}
    return str(train(TrainConfig(**args)).checkpoint)


def _checkpoints(config: AblationConfig, cells: Sequence[AblationCell], seeds: Sequence[int]
                 ) -> tuple[dict[tuple[str, int], str], list[str]]:
    """The checkpoints taken instead of training ({(cell, seed): path}: --checkpoint, then
    --models-from) and, with --models-from, the cells and seeds it has no export of."""
    taken = dict(config.checkpoints)
    missing: list[str] = []
    if config.models_from:
        if Path(config.models_from).resolve() == Path(config.out).resolve():
            raise BenchError(f"--out {config.out} is the grid --models-from reads: its "
                             f"evaluations go to another directory")
        if not (Path(config.models_from) / TRAIN_DIR).is_dir():
            raise BenchError(f"--models-from {config.models_from}: no train/ directory there "
                             f"(the --out of an ablation grid)")
        for seed in seeds:
            for cell in cells:
                if (cell.name, seed) in taken:
                    continue
                export = _cell_export(config.models_from, cell, seed)
                if export.exists():
                    taken[(cell.name, seed)] = str(export)
                else:
                    missing.append(f"{cell.name} seed {seed}")
    return taken, missing


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Train (or take) every selected cell for every training seed, evaluate each, write the
    tables (after every run); seed by seed, so the first seed's grid is complete first.
    Returns {'table', 'markdown', 'md', 'csv', 'claims', 'claims_markdown', 'claims_md',
    'claims_csv', 'runs', 'missing'} ('missing': the cells and seeds --models-from lacks)."""
    from worldvla_bench.integrations.worldvla.training import load_checkpoint
    from worldvla_bench.rollout import run_evaluation

    cells = select_cells(config.cells)
    seeds = parse_seeds(config.train_seeds)
    unknown = sorted({name for name, _ in config.checkpoints} - set(CELLS))
    if unknown:
        raise UnknownChoiceError("ablation cell", unknown[0], list(CELLS))
    fixed = sorted(PER_CELL_POLICY_ARGS & set(config.protocol.policy_kwargs))
    if fixed:
        raise BenchError(f"policy argument {fixed[0]!r} is set by each cell of the grid")
    checkpoints, missing = _checkpoints(config, cells, seeds)
    if missing:
        print(f"{config.models_from} has no export yet of: {', '.join(missing)}; "
              f"evaluating the rest (re-run when it has)", file=sys.stderr)
        if len(missing) == len(cells) * len(seeds):
            raise BenchError(f"nothing to evaluate: {config.models_from} has no export of the "
                             f"selected cells and seeds")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    needs_training = [] if config.models_from else [
        (c, s) for s in seeds for c in cells
        if (c.name, s) not in checkpoints and not _cell_export(out, c, s).exists()]
    data = _grid_data(config, seeds[0]) if needs_training else None
    runs: list[CellRun] = []
    written: dict[str, Any] = {}
    for seed in seeds:
        for cell in cells:
            if config.models_from and (cell.name, seed) not in checkpoints:
                continue
            checkpoint = (checkpoints.get((cell.name, seed))
                          or _train_cell(config, cell, seed, data))
            _, meta = load_checkpoint(checkpoint)
            run_dir = out / "runs" / cell.slug / f"seed{seed}"
            # the checkpoint as written (relative to the working directory when --out is):
            # the manifest then names the file under --out on any machine
            run_evaluation(
                replace(config.protocol, policy=POLICY_TARGET,
                        policy_kwargs={**config.protocol.policy_kwargs,
                                       "checkpoint": str(checkpoint),
                                       "action_mask": cell.action_mask}),
                replace(config.options, run_dir=run_dir))
            runs.append(CellRun(cell, run_dir, int(meta["chunk_size"]), str(checkpoint), seed))
            written = write_tables(runs, out, config.protocol.policy_kwargs)
    return {**written, "runs": runs, "missing": missing}


# --------------------------------------------------------------------------------------- CLI


def parse_checkpoints(items: Sequence[str] | None, seeds: Sequence[int]
                      ) -> dict[tuple[str, int], str]:
    """--checkpoint CELL@SEED=PATH items as {(cell, seed): path}; CELL=PATH only with a single
    training seed (one checkpoint is one training run)."""
    parsed: dict[tuple[str, int], str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        cell, at, seed_text = name.strip().partition("@")
        if not sep or not cell or not path.strip() or (at and not seed_text.strip().isdigit()):
            raise BenchError(f"bad --checkpoint {item!r}: use CELL@SEED=PATH")
        if not at and len(seeds) != 1:
            raise BenchError(f"--checkpoint {item!r}: name the training seed (CELL@SEED=PATH) "
                             f"of the {len(seeds)} seeds")
        seed = int(seed_text) if at else int(seeds[0])
        if seed not in seeds:
            raise BenchError(f"--checkpoint {item!r}: seed {seed} is not one of the training "
                             f"seeds {list(seeds)}")
        parsed[(cell, seed)] = path.strip()
    return parsed


def add_ablation_parser(subparsers) -> argparse.ArgumentParser:
    """Register `worldvla-bench ablation` on an argparse subparsers object."""
    from worldvla_bench.commands import run_flags
    from worldvla_bench.integrations.worldvla.training import add_train_arguments

    parser = subparsers.add_parser(
        "ablation", help="WorldVLA ablation grid: train, evaluate, the grid's and the claims' "
                         "tables",
        description=__doc__.split("\n\n")[0],
    )
    add_train_arguments(parser, data_required=False, seed=False)
    parser.add_argument("--train-seeds", default="0,1", metavar="0,1",
                        help="training seeds: one training run per cell and seed (default 0,1)")
    # the evaluations' run seed is --eval-seed; the policy is each cell's checkpoint
    run_flags.add_protocol_flags(parser, policy=False, seed_flag="--eval-seed",
                                 seed_help="run seed of the evaluations")
    run_flags.add_selection_flags(parser, tasks_default="0")
    run_flags.add_execution_flags(parser)
    parser.add_argument("--cells", default=None,
                        help=f"comma-separated subset of: {', '.join(CELLS)} (default all)")
    parser.add_argument("--checkpoint", action="append", metavar="CELL@SEED=PATH",
                        help="take this checkpoint for a cell and training seed instead of "
                             "training it (repeatable; CELL=PATH with one training seed)")
    parser.add_argument("--models-from", default=None, metavar="GRID",
                        help="evaluate the exports of another grid (its --out: "
                             "GRID/train/<cell>/seed<k>/model.pt) instead of training; cells it "
                             "has not trained yet are named and left out")
    parser.add_argument("--policy-arg", action="append", metavar="KEY=VALUE",
                        help="policy constructor argument for every cell (repeatable; e.g. "
                             "constrained=true), beside the checkpoint and action mask each "
                             "cell sets")
    parser.add_argument("--world-model-weight", type=float, default=1.0, metavar="W",
                        help="world samples per action sample in the world-model cells")
    parser.add_argument("--out", default=None, help="output directory (default "
                                                    "results/ablation_<suite>)")
    parser.set_defaults(func=cmd_ablation)
    return parser


def cmd_ablation(args: argparse.Namespace) -> int:
    from worldvla_bench.commands import run_flags
    from worldvla_bench.integrations.worldvla.training import config_from_args
    from worldvla_bench.policy import parse_key_values

    seeds = parse_seeds(args.train_seeds)
    checkpoints = parse_checkpoints(args.checkpoint, seeds)
    cells = select_cells(args.cells)
    if (not args.data and not args.models_from
            and any((c.name, s) not in checkpoints for c in cells for s in seeds)):
        raise BenchError("--data is needed to train the cells without a --checkpoint "
                         "(or --models-from)")
    shared = config_from_args(args, data=list(args.data or []), out="", seed=seeds[0]).to_dict()
    result = run_ablation(AblationConfig(
        data=list(args.data or []),
        protocol=run_flags.protocol_from_args(args, policy=POLICY_TARGET,
                                              policy_kwargs=parse_key_values(args.policy_arg)),
        out=args.out or str(Path("results") / f"ablation_{args.suite}"),
        options=run_flags.options_from_args(args),
        cells=[c.name for c in cells],
        train_seeds=seeds,
        checkpoints=checkpoints,
        models_from=args.models_from,
        chunk_size=args.chunk_size,
        world_model_weight=args.world_model_weight,
        world_data=list(args.world_data or []),
        train={k: v for k, v in shared.items() if k not in PER_CELL_TRAIN_ARGS},
    ))
    print(result["markdown"])
    print(result["claims_markdown"])
    print(f"written: {result['md']}, {result['csv']}, {result['claims_md']}, "
          f"{result['claims_csv']}")
    return 0


def summary_main(argv: list[str] | None = None) -> int:
    """Print the claims summary of a grid's recorded runs (what README shows)."""
    from worldvla_bench.integrations.worldvla.claims import claims_table, format_summary

    parser = argparse.ArgumentParser(
        prog="python -m worldvla_bench.integrations.worldvla.ablation",
        description="print the one-table summary of the claims, from the runs of a grid's --out")
    parser.add_argument("grid", help="an ablation grid's --out (its runs/<cell>/seed<k>)")
    args = parser.parse_args(argv)
    if not (Path(args.grid) / "runs").is_dir():
        parser.error(f"{args.grid}: no runs/ directory there (the --out of an ablation grid)")
    print(format_summary(claims_table(recorded_episodes(args.grid))), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(summary_main())
