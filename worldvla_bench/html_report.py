"""The HTML report: one static page for one or more runs, to look at and to share.

`write_html_report([run, ...], out_dir)` writes `out_dir/index.html` and copies each run's episode
videos under `out_dir/runs/<run>/videos/`, so the directory opens from disk (no server, no
network) and can be zipped and sent. The page holds, per run: the success chart (per task and
per suite, 95% Wilson intervals; one PNG embedded as base64, drawn by `plots.py`), the success
table, a task x trial grid coloured by outcome whose cells play the episode's video, the
protocol with its hash (`results_json.py`), revision, versions and render provenance, and the
warnings; for two or more runs, each later run compared with the first (`compare.py`: paired
deltas, exact McNemar or Fisher) and every manifest difference that can move the numbers.

The page is rendered by a Jinja2 template (`html/report.html.j2`) with autoescaping on: every
value from a run (task names, instructions, errors, paths) is escaped. Its style sheet and
script ship in the package (`html/`) and are inlined.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd

from worldvla_bench.atomic import write_atomic
from worldvla_bench.compare import compare_runs, format_comparison, format_differences
from worldvla_bench.errors import BenchError
from worldvla_bench.manifest import package_versions, read_manifest, run_render_provenances
from worldvla_bench.plots import plot_success_rates
from worldvla_bench.report import (
    format_table,
    load_run,
    render_line,
    run_warnings,
    success_rate_table,
)
from worldvla_bench.results_json import protocol_hash, protocol_of
from worldvla_bench.run_dir import RunDir

INDEX_FILE = "index.html"
OUTCOME_MARK = {"success": "\u2713", "failure": "\u2717", "error": "!"}


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("worldvla_bench", "html"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


def _asset(name: str) -> str:
    return resources.files("worldvla_bench").joinpath(f"html/{name}").read_text(encoding="utf-8")


def png_data_uri(figure) -> str:
    """A matplotlib Figure as a `data:image/png;base64,...` URI (the page embeds its images)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def success_chart(table: pd.DataFrame, title: str | None = None) -> str:
    """The grouped-bar chart of `plots.plot_success_rates` as a data URI (no pyplot state);
    the legend beside the axes, none for one run."""
    from matplotlib.figure import Figure

    width = max(6.0, 0.9 * table[["suite", "task_id"]].drop_duplicates().shape[0] + 2)
    figure = Figure(figsize=(min(width, 18.0), 4.2))
    ax = plot_success_rates(table, ax=figure.subplots(), title=title)
    if ax.get_legend() is not None:
        ax.get_legend().remove()
        if table["run"].nunique() > 1:  # beside the axes, never over a bar
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png_data_uri(figure)


def video_poster(path: Path) -> str | None:
    """The first frame of a video as a PNG data URI (what the player shows before it plays)."""
    import imageio.v2 as imageio
    from PIL import Image

    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            frame = reader.get_data(0)
    except (OSError, IndexError, RuntimeError, ValueError):
        return None
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _slugs(run_dirs: list[Path]) -> list[str]:
    """A distinct, file-name-safe directory name per run (its name; -2, -3 for repeats)."""
    slugs: list[str] = []
    for run_dir in run_dirs:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", run_dir.name).strip("._") or "run"
        slug, n = base, 2
        while slug in slugs:
            slug, n = f"{base}-{n}", n + 1
        slugs.append(slug)
    return slugs


def _outcome(episode: pd.Series) -> str:
    if episode["is_error"]:
        return "error"
    return "success" if episode["success"] else "failure"


def _copy_video(run_dir: Path, video: Any, out_dir: Path, slug: str) -> str | None:
    """Copy one episode's video into the page's directory; its relative URL, or None."""
    if not isinstance(video, str) or not video:
        return None
    source = (run_dir / video).resolve()
    if not source.is_file() or not source.is_relative_to(run_dir.resolve()):
        return None  # a video the record names but the run does not hold
    target = out_dir / "runs" / slug / "videos" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copy2(source, target)
    return "/".join(quote(part) for part in ("runs", slug, "videos", source.name))


def episode_grid(episodes: pd.DataFrame, run_dir: Path, out_dir: Path,
                 slug: str) -> dict[str, Any]:
    """Rows of tasks, columns of trials, one cell per episode: outcome, tooltip, video URL."""
    trials = sorted(int(t) for t in episodes["trial"].unique())
    rows = []
    for (suite, task_id), group in episodes.groupby(["suite", "task_id"], sort=True):
        by_trial = {int(e["trial"]): e for _, e in group.iterrows()}
        cells = []
        for trial in trials:
            episode = by_trial.get(trial)
            if episode is None:
                cells.append({"outcome": "missing", "mark": "", "title": f"trial {trial}: not run",
                              "href": None})
                continue
            outcome = _outcome(episode)
            title = (f"{suite} task {task_id} trial {trial}: {outcome}, "
                     f"{int(episode['steps'])} steps")
            if outcome == "error":
                title += f" ({episode['error']})"
            href = _copy_video(run_dir, episode.get("video"), out_dir, slug)
            cells.append({"outcome": outcome, "mark": OUTCOME_MARK[outcome], "title": title,
                          "href": href})
        rows.append({"suite": suite, "task_id": int(task_id),
                     "task_name": str(group["task_name"].iloc[0]),
                     "instruction": str(group["instruction"].iloc[0])
                     if "instruction" in group else "", "cells": cells})
    first = next((c for r in rows for c in r["cells"] if c["href"]), None)
    if first is not None:
        first["poster"] = video_poster(out_dir / unquote(first["href"]))
    return {"trials": trials, "rows": rows, "first_video": first,
            "videos": sum(1 for r in rows for c in r["cells"] if c["href"])}


def _table_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    shown = format_table(table).drop(columns=["run"], errors="ignore")
    return [dict(zip(shown.columns, map(str, values), strict=True))
            for values in shown.itertuples(index=False)]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_section(run_dir: Path, slug: str, out_dir: Path) -> dict[str, Any]:
    """What the page shows of one run."""
    episodes = load_run(run_dir)
    table = success_rate_table(episodes)
    manifest = read_manifest(run_dir) or {}
    protocol = protocol_of(manifest)
    found, _ = run_render_provenances(manifest)
    invocations = manifest.get("invocations") or []
    revisions = list(dict.fromkeys(inv.get("git_revision") for inv in invocations)) or [
        manifest.get("git_revision")]
    return {
        "name": run_dir.name, "slug": slug, "path": str(run_dir),
        "protocol": {k: _shown(v) for k, v in protocol.items()},
        "protocol_hash": protocol_hash(protocol),
        "revisions": [str(r) for r in revisions],
        "versions": {k: str(v) for k, v in (manifest.get("versions") or {}).items()},
        "render_line": render_line(manifest),
        "render": {k: _shown(v) for k, v in (found[0] if found else {}).items()},
        "created_at": manifest.get("created_at"),
        "episodes": len(episodes),
        "table": table,
        "rows": _table_rows(table),
        "columns": [c for c in format_table(table).columns if c != "run"],
        "grid": episode_grid(episodes, run_dir, out_dir, slug),
        "warnings": run_warnings(episodes),
    }


def comparison_section(run_a: Path, run_b: Path, name_a: str, name_b: str,
                       alpha: float = 0.05) -> dict[str, Any]:
    """A later run against the first: paired deltas and the manifest differences."""
    result = compare_runs(run_a, run_b, alpha=alpha)
    shown = format_comparison(result["table"]).fillna("")
    differences = format_differences(result["differences"])
    return {
        "a": name_a, "b": name_b, "alpha": alpha,
        "columns": list(shown.columns),
        "rows": [dict(zip(shown.columns, map(str, v), strict=True))
                 for v in shown.itertuples(index=False)],
        "difference_columns": list(differences.columns),
        "differences": [dict(zip(differences.columns, map(str, v), strict=True))
                        for v in differences.itertuples(index=False)],
        "moving": sum(d.moves_numbers is not False for d in result["differences"]),
    }


def write_html_report(run_dirs: list[Path | str], out_dir: Path | str,
                      alpha: float = 0.05) -> Path:
    """Write the page of these runs into `out_dir` (created); return the path of index.html."""
    run_dirs = [Path(d) for d in run_dirs]
    out_dir = _page_dir(out_dir)
    slugs = _slugs(run_dirs)
    runs = [run_section(d, s, out_dir) for d, s in zip(run_dirs, slugs, strict=True)]
    stacked = pd.concat([r["table"].assign(run=r["slug"]) for r in runs], ignore_index=True)
    comparisons = [comparison_section(run_dirs[0], d, slugs[0], s, alpha)
                   for d, s in zip(run_dirs[1:], slugs[1:], strict=True)]
    return _write_page("report.html.j2", out_dir, title="worldvla-bench: " + ", ".join(slugs),
                       runs=runs, comparisons=comparisons, chart=success_chart(stacked))


def _write_page(template: str, out_dir: Path, **context: Any) -> Path:
    """Render a template of `html/` with the shared context into out_dir/index.html."""
    page = _environment().get_template(template).render(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=package_versions()["worldvla-bench"],
        css=_asset("report.css"), js=_asset("report.js"), **context)
    index = out_dir / INDEX_FILE
    write_atomic(index, page.encode("utf-8"))
    return index


def _page_dir(out_dir: Path | str) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BenchError(f"{out_dir} is a file: give a directory for the HTML page")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def is_rank_output(path: Path | str) -> bool:
    """Whether `path` is a `wm-rank` output directory (its ranking.csv beside imagined/)."""
    path = Path(path)
    return (path / "ranking.csv").is_file() and (path / "imagined").is_dir()


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV's columns and rows as text, floats to 3 significant decimals."""
    if not path.is_file():
        return [], []
    table = pd.read_csv(path)
    shown = table.map(lambda v: "" if pd.isna(v) else f"{v:.3g}" if isinstance(v, float)
                      else str(v))
    return list(shown.columns), shown.to_dict("records")


def write_rank_html(rank_dir: Path | str, out_dir: Path | str) -> Path:
    """The page of a `wm-rank` output: the ranking and agreement tables, the scatter plot, and
    per world model and policy the episode grid whose cells play the side-by-side video
    (simulated | imagined). Returns the path of index.html."""
    rank_dir, out_dir = Path(rank_dir), _page_dir(out_dir)
    columns, rows = _csv_rows(rank_dir / "ranking.csv")
    agreement_columns, agreement = _csv_rows(rank_dir / "agreement.csv")
    plot = rank_dir / "ranking.png"
    scatter = ("data:image/png;base64," + base64.b64encode(plot.read_bytes()).decode("ascii")
               if plot.is_file() else None)
    panels = []
    for model_dir in sorted(p for p in (rank_dir / "imagined").iterdir() if p.is_dir()):
        for policy_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if not RunDir(policy_dir).is_run():
                continue
            slug = _slugs([Path(f"{model_dir.name}_{policy_dir.name}")])[0]
            episodes = load_run(policy_dir)
            panels.append({"world_model": model_dir.name, "policy": policy_dir.name,
                           "slug": slug, "grid": episode_grid(episodes, policy_dir, out_dir, slug)})
    markdown = rank_dir / "ranking.md"  # its "Judge: ..." line (worldmodel/rank.format_rank)
    lines = markdown.read_text(encoding="utf-8").splitlines() if markdown.is_file() else []
    judge_line = next((line for line in lines if line.startswith("Judge: ")), "")
    return _write_page("rank.html.j2", out_dir, title=f"worldvla-bench wm-rank: {rank_dir.name}",
                       path=str(rank_dir), columns=columns, rows=rows,
                       agreement_columns=agreement_columns, agreement=agreement,
                       scatter=scatter, panels=panels, judge_line=judge_line)
