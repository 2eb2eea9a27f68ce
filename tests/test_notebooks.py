"""The figure notebooks run top to bottom (nbclient) at their small size, from the saved results."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")  # dev extras: absent where only torch is installed (a GPU machine)
NotebookClient = pytest.importorskip("nbclient").NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SAVED = sorted(p.name for p in (ROOT / "docs" / "results").iterdir() if (p / f"{p.name}.json").exists())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws_every_saved_figure(path, monkeypatch):
    monkeypatch.setenv("QUADFLOW_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("QUADFLOW_RESULTS", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # one image per saved figure, plus the phase diagram, which the notebook recomputes
    assert len(images) == len(set(SAVED) | {"phase_diagram"})
