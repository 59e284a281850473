"""Learning curves of a training run: policy success and world-model probes against training step.

Input: a directory with one `step_NNNNN/` folder per evaluated snapshot (`train --snapshot-every`),
each holding a policy run directory `policy/` (any `eval` run of that snapshot) and, optionally,
`diagnosis.json` (the collapse diagnosis, `python -m worldvla_bench.integrations.worldvla.diagnosis
... --json`). `--losses` adds the mean training losses over the `--window` steps up to each step.

Output beside the input: `curve.csv` (one row per step: episodes, successes, success rate with its
Wilson 95% interval in percent, the probes' figures, the losses), `curve.md` and `curve.png`.
`make tiny-curve` makes the input from the tiny recipe's snapshots and runs this.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from worldvla_bench.errors import BenchError
from worldvla_bench.report import load_run, success_rate_table

#: diagnosis figures kept in the curve (see diagnosis.py for their definitions)
PROBES = ("tf_accuracy", "copy_accuracy", "tf_accuracy_changed", "same_codes_zero_action",
          "rollout_spread_ratio", "rollout_psnr_db", "copy_first_psnr_db", "action_loss",
          "action_token_accuracy", "action_l1_arm")
STEP_DIR = re.compile(r"^step_(\d+)$")


def curve_table(root: str | Path, losses: str | Path | None = None,
                window: int = 500) -> pd.DataFrame:
    """One row per `root/step_NNNNN/` folder, sorted by step (see the module docstring)."""
    root = Path(root)
    rows = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        match = STEP_DIR.match(folder.name)
        if not match:
            continue
        row: dict = {"step": int(match.group(1))}
        row.update(_success(folder / "policy"))
        if (folder / "diagnosis.json").exists():
            metrics = json.loads((folder / "diagnosis.json").read_text())["metrics"]
            row.update({name: metrics.get(name) for name in PROBES})
        rows.append(row)
    if not rows:
        raise BenchError(f"{root}: no step_NNNNN folders to draw a curve from")
    table = pd.DataFrame(rows).sort_values("step", ignore_index=True)
    counts = [c for c in ("step", "trials", "successes", "errors") if c in table]
    table[counts] = table[counts].astype("Int64")  # counts stay whole where a point has none
    if losses is not None:
        table = table.join(_window_losses(losses, table["step"], window))
    return table


def _success(run: Path) -> dict:
    """The suite row of `run` (trials, successes, rate and interval in percent, errors); empty
    when there is no run or it has no finished episode yet (said on stderr)."""
    if not run.exists():
        return {}
    try:
        episodes = load_run(run)
    except BenchError as error:  # a run still starting: the point waits for it
        print(f"{run.parent.name}: no success figure ({error})", file=sys.stderr)
        return {}
    suite = success_rate_table(episodes)
    suite = suite[suite["task_id"] == "all"]
    if len(suite) != 1:
        raise BenchError(f"{run}: one suite per point, got {len(suite)}")
    return suite.iloc[0][["trials", "successes", "success_rate", "ci_low", "ci_high",
                          "errors"]].to_dict()


def _window_losses(path: str | Path, steps: pd.Series, window: int) -> pd.DataFrame:
    """Mean transformer losses over the `window` steps up to each of `steps`."""
    frame = pd.read_csv(path)
    frame = frame[frame["stage"] == "transformer"]
    out = []
    for step in steps:
        part = frame[(frame["step"] > step - window) & (frame["step"] <= step)]
        out.append({f"train_{name}": float(part[name].mean()) if len(part) else float("nan")
                    for name in ("loss", "action_loss", "world_loss")})
    return pd.DataFrame(out, index=steps.index)


def plot_curve(table: pd.DataFrame, path: str | Path) -> Path:
    """Success (with its interval) and the probes against step, two panels, saved as PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    success, probes = figure.subplots(1, 2)
    if "success_rate" in table:
        rows = table.dropna(subset=["success_rate"])
        success.errorbar(rows["step"], rows["success_rate"],
                         yerr=[rows["success_rate"] - rows["ci_low"],
                               rows["ci_high"] - rows["success_rate"]], marker="o", capsize=3)
    success.set(xlabel="transformer step", ylabel="success (%)", ylim=(0, 100),
                title="policy success, 95% Wilson interval")
    for name in PROBES[:5]:
        if name in table and table[name].notna().any():
            probes.plot(table["step"], table[name], marker="o", label=name)
    probes.set(xlabel="transformer step", ylim=(0, 1.05), title="world-model probes")
    if probes.lines:
        probes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldvla_bench.integrations.worldvla."
                                     "learning_curve", description=__doc__.split("\n")[0])
    parser.add_argument("root", help="folder of step_NNNNN/ folders")
    parser.add_argument("--losses", default=None, help="the training run's losses.csv")
    parser.add_argument("--window", type=int, default=500, help="steps averaged per loss figure")
    args = parser.parse_args(argv)
    root = Path(args.root)
    table = curve_table(root, args.losses, args.window)
    table.to_csv(root / "curve.csv", index=False)
    shown = table.astype(object).map(
        lambda v: "n/a" if pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else str(v))
    (root / "curve.md").write_text(shown.to_markdown(index=False, disable_numparse=True) + "\n")
    plot_curve(table, root / "curve.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written: {root / 'curve.csv'}, curve.md, curve.png")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        raise SystemExit(f"error: {exc}") from None
