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
from nbkit.claims import COLUMNS, read_claims, record_claim, verdict_greater
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


# ------------------------------------------------------------------ claims
def test_verdict_greater_logic():
    assert verdict_greater([0.9, 0.91, 0.92], [0.5, 0.52, 0.51]) == "supported"
    assert verdict_greater([0.5, 0.52], [0.6, 0.61]) == "not supported"
    assert verdict_greater([0.5, 0.9, 0.1], [0.45, 0.1, 0.8]) == "inconclusive"
    assert verdict_greater([0.6], [0.5]) == "supported (1 seed)"
    assert verdict_greater([0.6, 0.61], 0.5, margin=0.2) == "not supported"
    with pytest.raises(ValueError, match="non-empty finite"):
        verdict_greater([], [1.0])


def test_record_claim_appends_rows(tmp_path, monkeypatch):
    path = tmp_path / "claims.csv"
    record_claim("P", "c1", "acc", [0.5, 0.7], "supported", "paper", 0.6, path=path)
    monkeypatch.setenv("NBKIT_CLAIMS", str(path))
    row = record_claim("P", "c2", "auc", 0.9, "not supported")
    df = read_claims(path)
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert df.loc[0, "ours_mean"] == pytest.approx(0.6) and df.loc[0, "ours_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert df.loc[1, "n_seeds"] == 1 and row.loc[0, "claim"] == "c2"
    with pytest.raises(ValueError, match="verdict must start with"):
        record_claim("P", "c", "m", [1.0], "yes")
    with pytest.raises(ValueError, match="at least one number"):
        record_claim("P", "c", "m", [], "supported")
    monkeypatch.delenv("NBKIT_CLAIMS")
    record_claim("P", "c3", "m", [1.0], "supported")        # no path: returns the row, writes nothing
    assert len(read_claims(path)) == 2


# ------------------------------------------------------------------ the main job
def _nb(path, code):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('profile = "quick"\nseeds = [0]')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


@pytest.mark.notebooks
def test_reproduce_reports_failures_and_keeps_going(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "01_ok.ipynb", "from nbkit.claims import record_claim\n"
        "record_claim('P', 'seen ' + profile, 'acc', seeds, 'supported')")
    _nb(nbs / "02_fail.ipynb", "raise RuntimeError('deliberate failure')")
    _nb(nbs / "03_ok.ipynb", "x = 1")
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "nbkit.cli", "reproduce", "--notebooks", str(nbs), "--out", str(out),
                        "--seeds", "3", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    latest = out / "latest"
    assert latest.is_symlink() and (latest / "report.html").exists()
    status = pd.read_csv(latest / "notebooks.csv").set_index("notebook")["status"].to_dict()
    assert status == {"01_ok": "ok", "02_fail": "failed", "03_ok": "ok"}
    assert (latest / "03_ok.html").exists() and (latest / "02_fail.html").exists()
    report = (latest / "report.html").read_text()
    assert "deliberate failure" in report and "02_fail" in report
    claims = read_claims(latest / "claims.csv")
    assert claims.loc[0, "claim"] == "seen quick" and claims.loc[0, "n_seeds"] == 2   # parameters injected
    r2 = subprocess.run([sys.executable, "-m", "nbkit.cli", "reproduce", "--notebooks", str(nbs), "--out",
                         str(out), "--only", "03"], capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
    r3 = subprocess.run([sys.executable, "-m", "nbkit.cli", "reproduce", "--notebooks", str(nbs), "--only", "99"],
                        capture_output=True, text=True, timeout=60)
    assert r3.returncode == 2 and "match no notebook" in r3.stderr


def test_import_nbkit_is_light():
    code = "import sys, time; t=time.perf_counter(); import nbkit; print(time.perf_counter()-t, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False"          # torch is loaded only when a submodule needs it
