"""The WorldVLA paper's three ablation claims, tested on the episodes of the ablation grid: a
summary row and a table per claim (`claims.md`, `claims.csv` beside `ablation.md`).

The paper (arXiv 2506.21539, ablation table, LIBERO average success %): action model 62.8,
action + world model 67.2, action chunks 54.0, chunks + attention mask 76.6, chunks + mask +
world model 78.1. Its claims, as pairs of grid cells (A -> B, the paper's direction the sign of
B - A in its numbers):

1.  co-training the world model helps the action model: action -> action+world (up);
2a. action chunks without the mask hurt: action -> action_chunk (down);
2b. the attention mask repairs them: action_chunk -> action_chunk+mask (up);
3.  the world model helps the chunked, masked model too: action_chunk+mask ->
    action+world_chunk+mask (up).

For each claim: each cell's success over the paired episodes with its 95% Wilson interval; the
paired difference B - A with a 95% two-way bootstrap interval over tasks and training seeds
(`worldvla_bench.paired.bootstrap_difference`); exact McNemar p per training seed and over all
pairs pooled; the paper's numbers; a verdict by `VERDICT_RULE`; and the paired episodes an exact
McNemar test would need at the measured effect (`paired.pairs_needed`, Connor 1987). Episodes
pair by (suite, task, trial, training seed); episodes that ended in an error did not run and
are left out, as in `compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from worldvla_bench.atomic import write_atomic
from worldvla_bench.paired import (
    bootstrap_difference,
    discordant,
    mcnemar,
    mcnemar_by,
    pair_episodes,
    pairs_needed,
)
from worldvla_bench.report import wilson_interval

CLAIMS_MD = "claims.md"
CLAIMS_CSV = "claims.csv"
ALPHA = 0.05
#: LIBERO average success % per cell in the paper's ablation table (arXiv 2506.21539)
PAPER_LIBERO_AVERAGE: dict[str, float] = {
    "action": 62.8,
    "action+world": 67.2,
    "action_chunk": 54.0,
    "action_chunk+mask": 76.6,
    "action+world_chunk+mask": 78.1,
}
SUPPORTED, CONTRADICTED, UNRESOLVED, NOT_RUN = (
    "supported", "contradicted", "not resolved at this n", "not run")
VERDICT_RULE = (
    f"supported: the 95% interval of the difference excludes 0 and the pooled McNemar p < "
    f"{ALPHA}, in the paper's direction; contradicted: the same in the opposite direction; "
    "otherwise not resolved at this n")


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as a comparison of grid cell `a` (before) with cell `b` (after)."""

    key: str
    title: str
    a: str
    b: str

    @property
    def paper_direction(self) -> int:
        """+1 if the paper has B above A, -1 if below."""
        return 1 if PAPER_LIBERO_AVERAGE[self.b] > PAPER_LIBERO_AVERAGE[self.a] else -1


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "co-training the world model helps the action model", "action", "action+world"),
    Claim("2a", "action chunks without the attention mask hurt", "action", "action_chunk"),
    Claim("2b", "the attention mask repairs action chunks", "action_chunk", "action_chunk+mask"),
    Claim("3", "the world model helps the chunked, masked model too", "action_chunk+mask",
          "action+world_chunk+mask"),
)


def verdict(low: float, high: float, p_value: float, paper_direction: int,
            alpha: float = ALPHA) -> str:
    """`VERDICT_RULE` on the difference's interval [low, high] and the pooled McNemar p."""
    if math.isnan(low) or math.isnan(high):
        return NOT_RUN
    if p_value < alpha and (low > 0 or high < 0):
        return SUPPORTED if (1 if low > 0 else -1) == paper_direction else CONTRADICTED
    return UNRESOLVED


def claim_row(claim: Claim, episodes: pd.DataFrame, n_resamples: int = 10_000,
              bootstrap_seed: int = 0) -> dict[str, Any]:
    """One claim tested on `episodes` (columns cell, train_seed, suite, task_id, trial, success,
    is_error): percentages in points, p-values, the verdict, the episodes needed."""
    ran = episodes[~episodes["is_error"].astype(bool)] if "is_error" in episodes else episodes
    a, b = (ran[ran["cell"] == name] for name in (claim.a, claim.b))
    pairs = pair_episodes(a, b)
    n = len(pairs)
    only_a, only_b = discordant(pairs)
    row: dict[str, Any] = {"claim": claim.key, "title": claim.title, "a": claim.a, "b": claim.b,
                           "episodes_a": len(a), "episodes_b": len(b), "pairs": n,
                           "seeds": ",".join(str(s) for s in sorted(pairs["train_seed"].unique()))}
    for side, column in (("a", "success_a"), ("b", "success_b")):
        successes = int(pairs[column].sum())
        low, high = wilson_interval(successes, n)
        row.update({f"successes_{side}": successes,
                    f"success_{side}": 100.0 * successes / n if n else math.nan,
                    f"ci_{side}_low": 100.0 * low, f"ci_{side}_high": 100.0 * high})
    low, high = bootstrap_difference(pairs, n_resamples=n_resamples, seed=bootstrap_seed)
    p_pooled = mcnemar(pairs) if n else math.nan
    row.update({
        "difference": 100.0 * (only_b - only_a) / n if n else math.nan,
        "diff_low": 100.0 * low, "diff_high": 100.0 * high,
        "only_a": only_a, "only_b": only_b, "p_pooled": p_pooled,
        "p_per_seed": "; ".join(f"seed {s}: {p:.3g}" for s, p in mcnemar_by(pairs).items()),
        "paper_a": PAPER_LIBERO_AVERAGE[claim.a], "paper_b": PAPER_LIBERO_AVERAGE[claim.b],
        "paper_difference": round(PAPER_LIBERO_AVERAGE[claim.b]
                                  - PAPER_LIBERO_AVERAGE[claim.a], 1),
        "verdict": verdict(low, high, p_pooled, claim.paper_direction) if n else NOT_RUN,
        "pairs_needed": pairs_needed(only_a, only_b, n),
    })
    return row


def claims_table(episodes: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS,
                 n_resamples: int = 10_000, bootstrap_seed: int = 0) -> pd.DataFrame:
    """One row per claim (`claim_row`), from the episodes of every cell and training seed."""
    return pd.DataFrame([claim_row(c, episodes, n_resamples, bootstrap_seed) for c in claims])


def percent(value: float) -> str:
    """A percentage to one decimal, '-' for NaN (no episodes)."""
    return "-" if value != value else f"{value:.1f}"


def interval(low: float, high: float) -> str:
    """An interval in percent or points as '[low, high]' (`percent` of each end)."""
    return f"[{percent(low)}, {percent(high)}]"


def _signed(value: float) -> str:
    return "-" if value != value else f"{value:+.1f}"


def _p_value(value: float) -> str:
    return "-" if value != value else f"{value:.3g}"


def _needed(value: float) -> str:
    if value != value:
        return "-"
    return "no difference measured" if math.isinf(value) else f"{int(value)}"


def format_claim(row: pd.Series) -> str:
    """One claim as markdown: a heading, the two cells, then the paired comparison."""
    cells = pd.DataFrame({
        "cell": [row["a"], row["b"]],
        "paired episodes": [str(row["pairs"])] * 2,
        "success %": [percent(row["success_a"]), percent(row["success_b"])],
        "95% Wilson": [interval(row["ci_a_low"], row["ci_a_high"]),
                       interval(row["ci_b_low"], row["ci_b_high"])],
        "paper (LIBERO avg %)": [f"{row['paper_a']:.1f}", f"{row['paper_b']:.1f}"],
    })
    comparison = pd.DataFrame([{
        "difference B - A (points)": _signed(row["difference"]),
        "95% interval": interval(row["diff_low"], row["diff_high"]),
        "only A / only B": f"{row['only_a']} / {row['only_b']}",
        "McNemar p (pooled)": _p_value(row["p_pooled"]),
        "McNemar p per seed": row["p_per_seed"] or "-",
        "paper's difference": _signed(row["paper_difference"]),
        "verdict": row["verdict"],
        "pairs to resolve": _needed(row["pairs_needed"]),
    }])
    return (f"## Claim {row['claim']}: {row['title']}\n\n`{row['a']}` (A) -> `{row['b']}` (B)"
            f"\n\n{cells.to_markdown(index=False, disable_numparse=True)}\n\n"
            f"{comparison.to_markdown(index=False, disable_numparse=True)}\n")


def format_summary(table: pd.DataFrame) -> str:
    """Every claim in one markdown table (one row each): what README shows of `claims.md`."""
    rows = [{
        "claim": row["claim"],
        "A -> B": f"{row['a']} -> {row['b']}",
        "training seeds": row["seeds"] or "-",
        "paired episodes": str(row["pairs"]),
        "success A / B %": f"{percent(row['success_a'])} / {percent(row['success_b'])}",
        "B - A (points) [95%]": "-" if row["difference"] != row["difference"]
        else f"{_signed(row['difference'])} {interval(row['diff_low'], row['diff_high'])}",
        "McNemar p": _p_value(row["p_pooled"]),
        "paper's difference": _signed(row["paper_difference"]),
        "verdict": row["verdict"],
        "pairs to resolve": _needed(row["pairs_needed"]),
    } for _, row in table.iterrows()]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"


def claims_footnote(n_resamples: int = 10_000, bootstrap_seed: int = 0) -> str:
    return (
        "Episodes are paired by (suite, task, trial, training seed); success % is over the "
        "paired episodes, with the 95% Wilson interval. The 95% interval of the difference is "
        f"a percentile bootstrap ({n_resamples} resamples, numpy generator seed "
        f"{bootstrap_seed}) that resamples tasks and training seeds independently with "
        "replacement (`worldvla_bench.paired.bootstrap_difference`; with two seeds the seed "
        "resampling is coarse). McNemar p: two-sided "
        "exact test on the discordant pairs (only A / only B succeeded), per training seed and "
        f"over all pairs. Verdict: {VERDICT_RULE}. Pairs to resolve: paired episodes an exact "
        "McNemar test at 5% would need for 80% power at the measured discordant fraction and "
        "difference (Connor 1987; it treats pairs as independent, so it is a lower bound when "
        "tasks or training seeds vary). Paper: WorldVLA (arXiv 2506.21539), ablation table, "
        "LIBERO average over four suites of a 7B model initialised from Chameleon: a direction to "
        "compare with, not a level to reach.\n")


def write_claims(table: pd.DataFrame, out: str | Path, title: str = "WorldVLA's claims",
                 n_resamples: int = 10_000, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Write `claims.md` and `claims.csv` into `out` (atomically); returns paths and text."""
    out = Path(out)
    sections = "\n".join(format_claim(row) for _, row in table.iterrows())
    markdown = (f"# {title}\n\n{format_summary(table)}\n{sections}\n"
                f"{claims_footnote(n_resamples, bootstrap_seed)}")
    write_atomic(out / CLAIMS_MD, markdown.encode())
    write_atomic(out / CLAIMS_CSV, table.to_csv(index=False).encode())
    return {"markdown": markdown, "md": out / CLAIMS_MD, "csv": out / CLAIMS_CSV}
