"""Compare two runs: per-task and overall success deltas with a significance test.

Runs that share init states (the official protocol) are paired by (suite, task, trial) and tested
with an exact McNemar test on the discordant pairs. Where only some trials pair (e.g. a run of
init states 40-49 against one of 40-44), the success rates, the delta and the test are taken over
the pairs alone, and `unpaired` counts the episodes left out; only where no trial pairs does the
test fall back to Fisher's exact test on all the success counts. Next to them: every difference
between the two manifests, and whether it can move the numbers (`manifest_diff.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import binomtest, fisher_exact

from worldvla_bench.manifest import read_manifest
from worldvla_bench.manifest_diff import ManifestDifference, manifest_differences
from worldvla_bench.report import load_run

KEY = ["suite", "task_id", "trial"]


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts."""
    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def _compare_group(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """One row: the trials of each run, success rates and delta (B - A, points) over the paired
    trials (all trials where none pairs) and the test that goes with them."""
    paired = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    row: dict[str, Any] = {"trials_a": len(a), "trials_b": len(b), "pairs": len(paired),
                           "unpaired": len(a) + len(b) - 2 * len(paired)}
    if len(paired):
        success_a, success_b = paired["success_a"], paired["success_b"]
        only_a = int((success_a & ~success_b).sum())
        only_b = int((~success_a & success_b).sum())
        row.update(success_a=100.0 * success_a.mean(), success_b=100.0 * success_b.mean(),
                   test="mcnemar", only_a=only_a, only_b=only_b,
                   p_value=exact_mcnemar(only_a, only_b))
    else:
        sa, sb = int(a["success"].sum()), int(b["success"].sum())
        table = [[sa, len(a) - sa], [sb, len(b) - sb]]
        row.update(success_a=100.0 * sa / len(a), success_b=100.0 * sb / len(b), test="fisher",
                   only_a=None, only_b=None, p_value=float(fisher_exact(table)[1]))
    row["delta"] = row["success_b"] - row["success_a"]
    order = ["trials_a", "trials_b", "pairs", "unpaired", "success_a", "success_b", "delta"]
    return {**{k: row[k] for k in order}, **{k: v for k, v in row.items() if k not in order}}


def compare_runs(run_a: Path | str, run_b: Path | str, alpha: float = 0.05) -> dict[str, Any]:
    """Per-task rows and an overall row (task_id 'all'); deltas are B minus A, in points."""
    # episodes that ended in an error did not run: compared neither as successes nor failures
    loaded = load_run(run_a), load_run(run_b)
    a, b = (run[~run["is_error"]] for run in loaded)
    errors = [run[run["is_error"]].groupby(["suite", "task_id"]).size() for run in loaded]
    rows = []
    tasks = sorted(set(map(tuple, a[["suite", "task_id"]].values)) |
                   set(map(tuple, b[["suite", "task_id"]].values)))
    for suite, task_id in tasks:
        ga = a[(a["suite"] == suite) & (a["task_id"] == task_id)]
        gb = b[(b["suite"] == suite) & (b["task_id"] == task_id)]
        if len(ga) == 0 or len(gb) == 0:
            # say why: a task whose episodes all ended in an error ran, but has no trial
            why = [f"{name}: every episode an error ({int(err[(suite, task_id)])})"
                   for name, err, group in (("A", errors[0], ga), ("B", errors[1], gb))
                   if len(group) == 0 and (suite, task_id) in err.index]
            rows.append({"suite": suite, "task_id": task_id, "trials_a": len(ga),
                         "trials_b": len(gb), "test": "; ".join(why) or "missing in one run"})
            continue
        rows.append({"suite": suite, "task_id": task_id, **_compare_group(ga, gb)})
    shared = set(map(tuple, a[["suite", "task_id"]].values)) & set(
        map(tuple, b[["suite", "task_id"]].values))
    sa = a[[tuple(x) in shared for x in a[["suite", "task_id"]].values]]
    sb = b[[tuple(x) in shared for x in b[["suite", "task_id"]].values]]
    if len(sa) and len(sb):
        rows.append({"suite": "all", "task_id": "all", **_compare_group(sa, sb)})
    table = pd.DataFrame(rows)
    if "p_value" in table:
        table["significant"] = table["p_value"] < alpha
    return {"table": table, "differences": manifest_differences_of(run_a, run_b)}


def manifest_differences_of(run_a: Path | str, run_b: Path | str) -> list[ManifestDifference]:
    """Every difference between the two runs' manifests (`manifest_diff.manifest_differences`)."""
    return manifest_differences(read_manifest(Path(run_a)) or {}, read_manifest(Path(run_b)) or {})


def format_differences(differences: list[ManifestDifference]) -> pd.DataFrame:
    """One row per difference: what, A, B, whether it can move the numbers, why."""
    verdict = {True: "yes", False: "no", None: "cannot tell"}
    return pd.DataFrame([{"what": d.what, "A": _shown(d.a), "B": _shown(d.b),
                          "can move the numbers": verdict[d.moves_numbers], "why": d.why}
                         for d in differences],
                        columns=["what", "A", "B", "can move the numbers", "why"])


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def format_comparison(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in ("success_a", "success_b"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    if "delta" in shown:
        shown["delta"] = shown["delta"].map(lambda v: "" if pd.isna(v) else f"{v:+.1f}")
    if "p_value" in shown:
        shown["p_value"] = shown["p_value"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    if "significant" in shown:
        shown["significant"] = shown["significant"].map(lambda v: "*" if v is True else "")
    hidden = ["only_a", "only_b"]
    if "unpaired" in shown and not (shown["unpaired"].fillna(0) > 0).any():
        hidden.append("unpaired")  # every trial paired: nothing to say
    return shown.drop(columns=[c for c in hidden if c in shown])
