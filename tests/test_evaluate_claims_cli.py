import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from nbkit import viz
from nbkit.claims import read_claims
from nbkit.evaluate import accuracy, auc, collect, linear_probe, probe_table, project_2d
from nbkit.train import History

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ metrics and probes
def test_accuracy_and_auc_match_definitions():
    from sklearn.metrics import roc_auc_score

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.2], [0.1, 0.3]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, y) == 0.75
    p1 = torch.softmax(logits, 1)[:, 1].numpy()
    assert auc(logits, y) == pytest.approx(roc_auc_score(y.numpy(), p1))
    assert np.isnan(auc(logits, torch.tensor([1, 1, 1, 1])))
    with pytest.raises(ValueError, match="logits must be"):
        accuracy(torch.zeros(3), y)


def test_linear_probe_separates_decodable_from_noise():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 8))
    t = z[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])
    assert linear_probe(z, t) > 0.95
    assert linear_probe(rng.normal(size=(600, 8)), t) < 0.05
    labels = (z[:, 0] > 0).astype(int)
    assert linear_probe(z, labels) > 0.95
    assert linear_probe(rng.normal(size=(600, 8)), labels) < 0.65
    tab = probe_table({"z": z}, {"t": t, "lab": labels})
    assert set(tab.metric) == {"R2", "accuracy"} and len(tab) == 2
    with pytest.raises(ValueError, match="z has 600 rows but target has 5"):
        linear_probe(z, t[:5])
    with pytest.raises(ValueError, match="kind must be"):
        linear_probe(z, t, kind="svm")


def test_project_2d_methods_and_errors():
    z = np.random.default_rng(0).normal(size=(60, 5))
    assert project_2d(z, "pca").shape == (60, 2)
    assert project_2d(z, "tsne").shape == (60, 2)
    with pytest.raises(ValueError, match="method must be"):
        project_2d(z, "mds")
    with pytest.raises(ValueError, match="at least 5 points"):
        project_2d(z[:3])


def test_collect_concatenates_outputs_in_order():
    from nbkit.data import make_synthetic
    from nbkit.models import LateFusion

    ds = make_synthetic(n=70, seed=0)
    m = LateFusion.for_dataset(ds)
    res = collect(m, ds, batch_size=16, with_terms=True)
    assert res["logits"].shape == (70, 4) and set(res["features"]) == {"m1", "m2"}
    assert "task" in res["terms"] and m.training  # collect restores train mode
    assert torch.allclose(res["logits"][:16], m.eval()(ds[:16]).logits, atol=1e-6)


# ------------------------------------------------------------------ figures
def test_viz_functions_build_figures_from_tidy_data():
    h = History()
    for s in range(1, 5):
        h.log(s, s // 2, "train", {"loss": 1.0 / s})
    h.log(4, 1, "val", {"loss": 0.4})
    f = viz.history_figure(h, ["loss"])
    assert len(f.data) == 2
    with pytest.raises(ValueError, match="none of metrics"):
        viz.history_figure(h, ["acc"])
    e = viz.embedding_figure(np.zeros((10, 2)), np.arange(10) % 2, color_name="class")
    assert len(e.data) == 2                      # one trace per category
    with pytest.raises(ValueError, match="xy must be"):
        viz.embedding_figure(np.zeros((10, 3)), np.arange(10))
    hm = viz.heatmap_figure(np.eye(3), x=list("abc"), y=list("abc"), text_fmt=".1f")
    assert np.array_equal(np.asarray(hm.data[0].z), np.eye(3))
    df = pd.DataFrame({"method": ["a", "a", "b", "b"], "acc": [0.5, 0.7, 0.2, 0.2], "seed": [0, 1, 0, 1]})
    b = viz.bar_figure(df, "method", "acc")
    assert list(b.data[0].y) == pytest.approx([0.6, 0.2])
    cdf = pd.DataFrame({"p": [0, 0, 1, 1], "acc": [1.0, 0.8, 0.5, 0.3], "method": "m"})
    c = viz.curve_figure(cdf, "p", "acc", "method")
    assert list(c.data[-1].y) == pytest.approx([0.9, 0.4])
    t = viz.summary_table(df, "method", "acc")
    assert t.loc[0, "acc"].startswith("0.600 ± 0.141 (n=2)")
    gap = viz.summary_table(df.assign(f1=[0.1, 0.2, np.nan, np.nan]), "method", "f1")
    assert gap.loc[1, "f1"] == "—"                     # no value for a group: a dash, not "nan ± 0"


def test_import_nbkit_is_light():
    code = "import sys, time; t=time.perf_counter(); import nbkit; print(time.perf_counter()-t, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False"          # torch is loaded only when a submodule needs it


def test_strip_solutions_removes_solution_cells_and_keeps_the_rest(tmp_path):
    from nbkit.notebooks import solution_names_used_later, strip_solutions

    nb = nbformat.v4.new_notebook()
    ex = nbformat.v4.new_markdown_cell("**Exercise 1.** Predict x.")
    ex.metadata["tags"] = ["exercise"]
    sol = nbformat.v4.new_code_cell("x = 41 + 1\nprint(x)")
    sol.metadata.update(tags=["solution"], jupyter={"source_hidden": True})
    sol_md = nbformat.v4.new_markdown_cell("Because 41 + 1 = 42.")
    sol_md.metadata["tags"] = ["solution"]
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), ex, sol, sol_md, nbformat.v4.new_code_cell("b = a + 1")]
    src = tmp_path / "05_x.ipynb"
    nbformat.write(nb, src)
    out, n = strip_solutions(src, tmp_path / "handout")
    assert n == 2 and out == tmp_path / "handout" / "05_x.ipynb"
    got = nbformat.read(out, as_version=4)
    assert [c.source for c in got.cells] == ["a = 1", "**Exercise 1.** Predict x.", got.cells[2].source, "b = a + 1"]
    assert got.cells[2].metadata["tags"] == ["answer"] and "Your answer" in got.cells[2].source
    assert not any("solution" in c.metadata.get("tags", []) for c in got.cells)
    assert solution_names_used_later(src) == {}
    # a later cell that needs a name only a solution defines would break the hand-out: reported
    nb.cells.append(nbformat.v4.new_code_cell("print(x)"))
    nbformat.write(nb, src)
    assert list(solution_names_used_later(src).values()) == [["x"]]
    with pytest.raises(ValueError, match="out must differ"):
        strip_solutions(src, src)
    r = subprocess.run([sys.executable, "-m", "nbkit.cli", "strip-solutions", str(src), "--out", str(tmp_path / "h2")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "2 solution cell(s) removed" in r.stdout


def test_repository_notebooks_keep_solutions_strippable():
    """Every notebook's solution cells define nothing a later non-solution cell reads, so the
    hand-out made by `nbkit strip-solutions` still runs top to bottom."""
    from nbkit.notebooks import find_notebooks, solution_names_used_later

    bad = {p.name: solution_names_used_later(p) for p in find_notebooks()}
    assert {k: v for k, v in bad.items() if v} == {}
