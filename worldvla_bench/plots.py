"""Plots of success rates with 95% Wilson error bars, for one or several runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from worldvla_bench.report import interval_errors


def plot_success_rates(table: pd.DataFrame, ax=None, title: str | None = None):
    """Grouped bars: one group per task (and 'all' per suite), one bar per run, with CI bars.

    `table` is `success_rate_table(load_runs([...]))`. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.9 * table["task_id"].nunique() + 2), 4))
    runs = list(dict.fromkeys(table["run"])) if "run" in table else [None]
    labels = list(dict.fromkeys(f"{s}\n{t}" for s, t in zip(table["suite"], table["task_id"],
                                                              strict=True)))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        part = table if run is None else table[table["run"] == run]
        part_labels = [f"{s}\n{t}" for s, t in zip(part["suite"], part["task_id"], strict=True)]
        offset = (i - (len(runs) - 1) / 2) * width
        x = np.array([labels.index(label) for label in part_labels]) + offset
        ax.bar(x, part["success_rate"], width, yerr=interval_errors(part), capsize=3,
               label=str(run) if run is not None else None)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or "Success rate per task, 95% Wilson intervals")
    if runs != [None]:
        ax.legend(fontsize=8)
    return ax
