"""Every notebook is committed clean and runs end to end with its defaults (papermill)."""
import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_ordered():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0].startswith("00_")
    assert all(n[:2].isdigit() and n[2] == "_" for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert not [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")], "outputs present"
    assert "widgets" not in nb["metadata"], "widget state saved in metadata"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    assert "profile" in src and "seeds" in src
    assert cells[0]["cell_type"] == "markdown", "a notebook opens by saying what it teaches"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_defaults(path, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("NBKIT_CLAIMS", str(tmp_path / "claims.csv"))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")          # the thread policy of `nbkit reproduce` (its --threads default)
    t0 = time.perf_counter()
    pm.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                        progress_bar=False)
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
