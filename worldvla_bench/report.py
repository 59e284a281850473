"""Reports derived from run directories: success rates with 95% Wilson intervals, and warnings.

Every number is computed from the run's records (`RunDir.records`); nothing is stored by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from worldvla_bench.atomic import write_atomic
from worldvla_bench.errors import BenchError
from worldvla_bench.manifest import manifest_config, read_manifest, run_render_provenances
from worldvla_bench.render_provenance import format_render_provenance
from worldvla_bench.results_json import write_results_json
from worldvla_bench.run_dir import EPISODES_FILE, MANIFEST_FILE, RunDir

CONFIDENCE = 0.95


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """One row per episode of a run, with a `run` column naming it. Errors if there is none."""
    run_dir = Path(run_dir)
    if not RunDir(run_dir).is_run():
        raise BenchError(f"{run_dir} is not a run directory (no {EPISODES_FILE})")
    records = RunDir(run_dir).records()
    if not records:
        raise BenchError(f"run {run_dir} has no finished episodes yet")
    frame = pd.DataFrame.from_records(records)
    duplicates = frame.duplicated(["suite", "task_id", "trial"], keep="first")
    frame = frame[~duplicates].reset_index(drop=True)
    frame.attrs["duplicates"] = int(duplicates.sum())
    frame["run"] = run_dir.name
    frame["success"] = frame["success"].astype(bool)
    frame["is_error"] = frame["error"].notna() if "error" in frame else False
    return frame


def load_runs(run_dirs: list[Path | str]) -> pd.DataFrame:
    """Episodes of several runs stacked, for plots across runs."""
    return pd.concat([load_run(d) for d in run_dirs], ignore_index=True)


def wilson_interval(
    successes: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion, as fractions in [0, 1]."""
    if trials == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def percent_with_interval(successes: int, trials: int) -> tuple[float, float, float]:
    """(rate, low, high) in percent, the interval the 95% Wilson one; NaN for no trials."""
    low, high = wilson_interval(successes, trials)
    rate = 100.0 * successes / trials if trials else float("nan")
    return rate, 100.0 * low, 100.0 * high


def _summarise(group: pd.DataFrame) -> pd.Series:
    """`trials`: the episodes that ran (the success rate's denominator); `errors` apart."""
    ran = group[~group["is_error"]]
    trials = len(ran)
    successes = int(ran["success"].sum())
    rate, low, high = percent_with_interval(successes, trials)
    return pd.Series(
        {
            "trials": trials,
            "successes": successes,
            "success_rate": rate,
            "ci_low": low,
            "ci_high": high,
            # over the episodes that ran, as `trials` (NaN when none did)
            "mean_steps": float(ran["steps"].mean()) if trials else float("nan"),
            "errors": int(group["is_error"].sum()),
        }
    )


def success_rate_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per-task rows, then one per-suite row (task_id 'all'); rates and intervals in percent."""
    keys = ["run", "suite", "task_id"] if "run" in episodes else ["suite", "task_id"]
    per_task = episodes.groupby(keys, sort=True)[episodes.columns].apply(_summarise).reset_index()
    names = episodes.drop_duplicates(keys).set_index(keys)["task_name"]
    per_task["task_name"] = [names.loc[tuple(k)] for k in per_task[keys].itertuples(index=False)]
    suite_keys = keys[:-1]
    per_suite = episodes.groupby(suite_keys, sort=True)[episodes.columns].apply(_summarise)
    per_suite = per_suite.reset_index()
    per_suite["task_id"] = "all"
    per_suite["task_name"] = "(suite)"
    table = pd.concat([per_task.astype({"task_id": object}), per_suite], ignore_index=True)
    for column in ("trials", "successes", "errors"):
        table[column] = table[column].astype(int)
    return table[keys + ["task_name", "trials", "successes", "success_rate", "ci_low", "ci_high",
                         "mean_steps", "errors"]]


def run_warnings(episodes: pd.DataFrame) -> list[str]:
    """Signs of a broken evaluation (DESIGN 6): all failures, saturated actions, errors."""
    warnings: list[str] = []
    valid = episodes[~episodes["is_error"]]
    if len(valid) >= 5 and not valid["success"].any():
        warnings.append(
            f"0 successes in {len(valid)} episodes: check the policy's observation profile "
            "(image orientation, gripper sign, normalisation statistics, chunk size)"
        )
    if "actions_at_bound_frac" in valid and len(valid):
        saturated = float(valid["actions_at_bound_frac"].mean())
        if saturated > 0.5:
            warnings.append(
                f"{100 * saturated:.0f}% of arm actions sit at the bounds [-1, 1]: "
                "check action un-normalisation"
            )
    n_errors = int(episodes["is_error"].sum())
    if n_errors:
        first = episodes.loc[episodes["is_error"], "error"].iloc[0]
        warnings.append(f"{n_errors} episodes ended in an error (not counted in the success "
                        f"rate; re-run with --retry-errors); first: {first}")
    duplicates = episodes.attrs.get("duplicates", 0)
    if duplicates:
        warnings.append(f"{duplicates} duplicate records of episodes already recorded (two runs "
                        "wrote into this directory at once?) were left out: the first record "
                        "of each episode counts")
    return warnings


def policy_ending_reasons(episodes: pd.DataFrame) -> pd.Series:
    """The reasons of the episodes the policy ended (`EndEpisode`: failures, each with its
    reason in `extra["ended_by_policy"]`), one entry per such episode."""
    if "extra" not in episodes:
        return pd.Series([], dtype=object)
    return pd.Series([e.get("ended_by_policy") if isinstance(e, dict) else None
                      for e in episodes["extra"]], dtype=object).dropna()


def policy_endings(episodes: pd.DataFrame) -> str | None:
    """One line counting the episodes the policy ended (`policy_ending_reasons`), the most
    frequent reason first; None if none."""
    reasons = policy_ending_reasons(episodes)
    if reasons.empty:
        return None
    counts = reasons.value_counts()
    listed = "; ".join(f"{n} x {reason}" for reason, n in counts.items())
    return (f"Ended by the policy (failures): {len(reasons)} of {len(episodes)} episodes "
            f"({listed})")


#: what a table shows for the success rate of a task none of whose episodes ran (all errors)
NOT_AVAILABLE = "n/a"


def format_percent(value: float) -> str:
    """A percentage with one decimal; `NOT_AVAILABLE` for none (NaN: no episode ran)."""
    return NOT_AVAILABLE if pd.isna(value) else f"{value:.1f}"


def format_interval(low: float, high: float) -> str:
    """'[low, high]' in percent with one decimal; `NOT_AVAILABLE` for none."""
    if pd.isna(low) or pd.isna(high):
        return NOT_AVAILABLE
    return f"[{low:.1f}, {high:.1f}]"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: 'success %' with its interval, rounded steps; a task whose
    episodes all ended in an error shows n/a (its errors in their column)."""
    shown = table.copy()
    shown["success %"] = shown["success_rate"].map(format_percent)
    bounds = zip(shown["ci_low"], shown["ci_high"], strict=True)
    shown["95% CI"] = [format_interval(lo, hi) for lo, hi in bounds]
    shown["mean steps"] = shown["mean_steps"].map(
        lambda v: NOT_AVAILABLE if pd.isna(v) else f"{v:.1f}")
    shown["task"] = shown["task_name"].map(lambda s: s if len(s) <= 60 else s[:57] + "...")
    columns = [c for c in ("run", "suite") if c in shown] + [
        "task_id", "task", "trials", "success %", "95% CI", "mean steps", "errors",
    ]
    return shown[columns]


def write_report(run_dir: Path | str) -> dict[str, Any]:
    """Compute the report of a run, write `report.md`, `report.csv` and `results.json`
    (`results_json.py`) into it, return the table, markdown and warnings."""
    run_dir = Path(run_dir)
    episodes = load_run(run_dir)
    table = success_rate_table(episodes)
    manifest = read_manifest(run_dir) or {}
    config = manifest_config(manifest) if manifest else {}
    lines = [f"# Run `{run_dir.name}`", ""]
    if config:
        lines.append(
            f"policy `{config.get('policy')}` {config.get('policy_kwargs') or ''} on "
            f"`{config.get('suite')}`: max steps {config.get('max_steps')}, image "
            f"{config.get('image_size')} px, seed {config.get('seed')}, scenes seeded "
            f"{config.get('seeding')}"
        )
        lines.append("")
    lines += [render_line(manifest), ""]
    shown = format_table(table).drop(columns=["run"])
    lines.append(shown.to_markdown(index=False, disable_numparse=True))
    ended = policy_endings(episodes)
    if ended:
        lines += ["", ended]
    warnings = run_warnings(episodes)
    if warnings:
        lines += ["", "Warnings:"] + [f"- {w}" for w in warnings]
    markdown = "\n".join(lines) + "\n"
    write_error = None
    try:
        write_atomic(run_dir / "report.md", markdown.encode("utf-8"))
        write_atomic(run_dir / "report.csv", table.to_csv(index=False).encode("utf-8"))
        write_results_json(run_dir, table, manifest, warnings)
    except OSError as error:  # a read-only or full disk: the report is still returned
        write_error = f"cannot write the report into {run_dir}: {error.strerror or error}"
    return {"table": table, "markdown": markdown, "warnings": warnings,
            "write_error": write_error}


def render_line(manifest: dict[str, Any]) -> str:
    """The run's render provenance in one line ('render: not recorded' for older runs)."""
    found, unrecorded = run_render_provenances(manifest)
    line = "render: " + format_render_provenance(found[0] if found else None)
    if len(found) > 1:
        line += f" (and {len(found) - 1} other renderer(s) in this run: see {MANIFEST_FILE})"
    if found and unrecorded:
        line += f" (not recorded for {unrecorded} earlier invocation(s))"
    return line


def interval_errors(table: pd.DataFrame) -> np.ndarray:
    """(2, n) asymmetric error-bar lengths for matplotlib from a success-rate table."""
    return np.vstack(
        [table["success_rate"] - table["ci_low"], table["ci_high"] - table["success_rate"]]
    )


def summary_markdown(run_dirs: list[Path | str]) -> str:
    """One row per run (its suite row): policy, episodes, success with the 95% Wilson interval,
    and the code revision and render backend it ran with; each run's report.md is rewritten."""
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        table = write_report(run_dir)["table"]
        suite = table[table["task_id"] == "all"].iloc[0]
        manifest = read_manifest(run_dir) or {}
        config = manifest.get("config", {})
        invocations = manifest.get("invocations") or [{}]
        render = (run_render_provenances(manifest)[0] or [{}])[0]
        rows.append({
            "run": run_dir.name, "policy": config.get("policy"), "suite": suite["suite"],
            "episodes": int(suite["trials"]), "success %": format_percent(suite["success_rate"]),
            "95% CI": format_interval(suite["ci_low"], suite["ci_high"]),
            "revision": str(invocations[-1].get("git_revision"))[:12]
            + ("+dirty" if str(invocations[-1].get("git_revision")).endswith("+dirty") else ""),
            "MUJOCO_GL": render.get("mujoco_gl"),
        })
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"


if __name__ == "__main__":  # python -m worldvla_bench.report RUN [RUN ...]: the summary table
    import sys

    print(summary_markdown(sys.argv[1:]), end="")
