"""The plotting notebook runs end to end on real runs and plots them."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "success_rates.ipynb"


def test_success_rates_notebook_executes_on_runs(recorded_run: Path, tmp_path, monkeypatch):
    plot = tmp_path / "plot.png"
    monkeypatch.setenv("WORLDVLA_RUNS", f"{recorded_run},{recorded_run}")
    monkeypatch.setenv("WORLDVLA_PLOT", str(plot))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert plot.exists() and plot.stat().st_size > 5000
    table_html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "random_small" in table_html and "95% CI" in table_html


def test_the_notebook_is_valid_as_saved():
    """Valid nbformat as committed, every cell with its id (nbformat 4.5: a cell without one is
    a warning now and an error in future nbformat versions)."""
    import json

    saved = json.loads(NOTEBOOK.read_text())
    assert [c for c in saved["cells"] if "id" not in c] == []
    nbformat.validate(nbformat.from_dict(saved))
