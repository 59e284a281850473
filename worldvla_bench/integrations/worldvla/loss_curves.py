"""Training losses on disk: `losses.csv` (one row per logged step) and `losses.png`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from worldvla_bench.atomic import write_atomic

LOSSES_CSV = "losses.csv"
LOSSES_PNG = "losses.png"
LOSS_COLUMNS = ("stage", "step", "loss", "action_loss", "world_loss", "recon_loss", "lr",
                "elapsed_s")


def write_losses(losses: Sequence[dict[str, Any]], out: str | Path) -> tuple[Path, Path]:
    """`losses.csv` (one row per optimizer step) and `losses.png` (curves), written atomically."""
    out = Path(out)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(LOSS_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in losses:
        writer.writerow({k: ("" if isinstance(v, float) and v != v else v)
                         for k, v in row.items()})
    write_atomic(out / LOSSES_CSV, text.getvalue().encode())
    write_atomic(out / LOSSES_PNG, plot_losses(losses))
    return out / LOSSES_CSV, out / LOSSES_PNG


def plot_losses(losses: Sequence[dict[str, Any]]) -> bytes:
    """PNG bytes: VQ-VAE reconstruction loss and transformer losses against step (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_vq, ax_tf = fig.subplots(1, 2)
    for ax, stage, keys in ((ax_vq, "vq", ("recon_loss", "loss")),
                            (ax_tf, "transformer", ("loss", "action_loss", "world_loss"))):
        rows = [r for r in losses if r.get("stage") == stage]
        for key in keys:
            xs = [r["step"] for r in rows if r.get(key) == r.get(key)]
            ys = [r[key] for r in rows if r.get(key) == r.get(key)]
            if ys:
                ax.plot(xs, ys, label=key, linewidth=1)
        ax.set_title("VQ-VAE" if stage == "vq" else "transformer")
        ax.set_xlabel("step")
        if any(r.get("loss", 0) > 0 for r in rows):
            ax.set_yscale("log")
        if rows:
            ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def iter_loss_rows(path: str | Path) -> Iterator[dict[str, str]]:
    """Rows of a `losses.csv` (strings), for notebooks."""
    with Path(path).open(encoding="utf-8") as stream:
        yield from csv.DictReader(stream)
