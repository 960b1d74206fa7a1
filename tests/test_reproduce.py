"""`nbkit reproduce` (parameters, data folder, argument checks, failures), its offline pages
and report (scoreboard, forest plot, metadata), checked in headless Chromium with every
request outside file:// blocked."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from nbkit.claims import read_claims, record_claim
from nbkit.cli import parse_params
from nbkit.report import forest_figure, forest_png, scoreboard

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "nbkit.cli"]


def _nb(path, code, params='profile = "quick"\nseeds = [0]', markdown=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = ([nbformat.v4.new_markdown_cell(markdown)] if markdown else []) + [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def _run(*args, timeout=300):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------ fast checks
def test_parse_params_reads_yaml_values():
    got = parse_params(["a=1", "b=[0, 1, 2]", "c=/some/path", "d=1e-3", "e=true", "f=", "g=-2"])
    assert got == {"a": 1, "b": [0, 1, 2], "c": "/some/path", "d": 0.001, "e": True, "f": None, "g": -2}
    for bad in ("novalue", "=3", "1x=2", "a=[1, 2"):
        with pytest.raises(ValueError, match="-p"):
            parse_params([bad])


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout (seconds per cell) must be an integer >= 1, got 0"),
    (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--data-dir", "/no/such/folder"], "--data-dir must be an existing folder"),
    (["-p", "lonely"], "-p must be NAME=VALUE"),
    (["-p", "no_such_param=1"], "no selected notebook defines it; their parameters are"),
    (["--only", "99"], "match no notebook"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, args, message):
    r = _run("reproduce", "--out", tmp_path / "runs", *args, timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    r = _run("reproduce", "--out", f, "--only", "00", timeout=120)
    assert r.returncode == 2 and "--out must be a folder" in r.stderr and "Traceback" not in r.stderr


def _claims():
    rows = [record_claim("P1", f"c{i}", "m", v, dataset="toy", reference_value=ref, record=False)
            for i, (v, ref) in enumerate([([0.1, 0.12, 0.11], 0.2), ([-0.1, 0.2, 0.05], float("nan")),
                                          ([-0.3, -0.2, -0.25], float("nan"))])]
    rows.append(record_claim("P2", "level", "m", [1.0, 2.0, 3.0], dataset="toy", verdict_text="", record=False))
    return pd.concat(rows, ignore_index=True)


def test_scoreboard_counts_verdicts_per_paper():
    board = scoreboard(_claims()).set_index("paper")
    assert board.loc["P1", ["supported", "not supported", "inconclusive", "measured", "rows"]].tolist() == [1, 1, 1, 0, 3]
    assert board.loc["P2", ["measured", "rows"]].tolist() == [1, 1]


def test_forest_figure_and_png():
    c = _claims()
    fig = forest_figure(c)
    dots = [t for t in fig.data if t.name != "paper's value"]
    assert len(dots) == len(c)
    # each dot sits at the effect's mean and its bar spans the 95% interval
    first = dots[0]
    assert first.x[0] == pytest.approx(c.ours_mean[0])
    assert first.x[0] + first.error_x.array[0] == pytest.approx(c.ci_high[0])
    assert first.x[0] - first.error_x.arrayminus[0] == pytest.approx(c.ci_low[0])
    assert [t.x[0] for t in fig.data if t.name == "paper's value"] == [0.2]       # the only reference given
    png = forest_png(c)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="empty"):
        forest_figure(c.iloc[:0])


# ------------------------------------------------------------------- runs (kernels)
@pytest.mark.notebooks
def test_reproduce_reports_failures_keeps_going_and_passes_parameters(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "01_ok.ipynb", "from nbkit.claims import record_claim\n"
        "record_claim('P', f'seen {profile} {alpha}', 'acc', seeds, dataset='toy')",
        params='profile = "quick"\nseeds = [0]\nalpha = 0')
    _nb(nbs / "02_fail.ipynb", "raise RuntimeError('deliberate failure')")
    _nb(nbs / "03_ok.ipynb", "import os\nfrom nbkit.claims import record_claim\n"
        "record_claim('Q', beta, 'x', [1.0, 2.0, 3.0], dataset=os.environ.get('NBKIT_DATA', 'none'))",
        params='profile = "quick"\nseeds = [0]\nbeta = "b"')
    out = tmp_path / "runs"
    data = tmp_path / "mydata"
    data.mkdir()
    r = _run("reproduce", "--notebooks", nbs, "--out", out, "--seeds", 3, 4, "-p", "alpha=[1, 2]",
             "-p", "beta=from-cli", "--data-dir", data)
    assert r.returncode == 1, r.stderr
    latest = out / "latest"
    assert latest.is_symlink() and (latest / "report.html").exists()
    status = pd.read_csv(latest / "notebooks.csv").set_index("notebook")["status"].to_dict()
    assert status == {"01_ok": "ok", "02_fail": "failed", "03_ok": "ok"}
    assert (latest / "03_ok.html").exists() and (latest / "02_fail.html").exists()
    report = (latest / "report.html").read_text()
    assert "deliberate failure" in report and "02_fail" in report and "Scoreboard" in report
    claims = read_claims(latest / "claims.csv")
    assert list(claims.paper) == ["P", "Q"]                                 # notebook order
    assert claims.loc[0, "claim"] == "seen quick [1, 2]" and claims.loc[0, "n_seeds"] == 2   # -p and --seeds
    assert claims.loc[1, "claim"] == "from-cli" and claims.loc[1, "dataset"] == str(data.resolve())  # NBKIT_DATA
    r2 = _run("reproduce", "--notebooks", nbs, "--out", out, "--only", "03")
    assert r2.returncode == 0, r2.stderr
    r3 = _run("reproduce", "--notebooks", nbs, "--out", out, "--only", "03", "-p", "alpha=1")
    assert r3.returncode == 2 and "their parameters are ['beta', 'profile', 'seeds']" in r3.stderr


@pytest.mark.notebooks
def test_notebook_10_runs_on_a_users_folder_through_the_main_job(tmp_path):
    from nbkit.data.oulad import write_sample

    sample = write_sample(tmp_path / "oulad", n_students=300, seed=1)
    r = _run("reproduce", "--only", "10", "--out", tmp_path / "runs", "-p", f"data_dir={sample}",
             "-p", "epochs=2", "-p", "seeds=[0, 1, 2]", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    claims = read_claims(tmp_path / "runs" / "latest" / "claims.csv")
    assert len(claims) >= 1
    assert claims.dataset.str.startswith("OULAD sample (NOT REAL DATA)").all()
    assert (claims.n_seeds == 3).all()


# --------------------------------------------------------------- offline, in Chromium
CHROMIUM = next((c for c in (os.environ.get("NBKIT_CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium")
                 if c and Path(c).is_file()), None)


def _load_offline(page_path: Path) -> dict:
    """Open ``page_path`` in headless Chromium with every request outside file:// aborted;
    return what was blocked and what rendered."""
    from playwright.sync_api import sync_playwright

    blocked = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--headless=new", "--no-sandbox", "--disable-gpu",
                                           "--disable-background-networking", "--disable-component-update"])
        try:
            ctx = browser.new_context()

            def route(r):
                if r.request.url.startswith(("file://", "data:", "blob:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            ctx.route("**/*", route)
            page = ctx.new_page()
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            # MathJax 3 typesets after load; its startup promise resolves when it is done
            page.evaluate("() => (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) ? "
                          "window.MathJax.startup.promise.then(() => true) : true")
            text = page.evaluate("() => Array.from(document.querySelectorAll('.jp-MarkdownOutput'))"
                                 ".map(e => e.innerText).join('\\n')")
            got = {"blocked": blocked, "raw": re.findall(r"\$[^$\n]{1,80}\$", text),
                   "math": page.evaluate("() => document.querySelectorAll('mjx-container svg').length"),
                   "plots": page.evaluate("() => document.querySelectorAll('.plotly-graph-div .main-svg').length")}
        finally:
            browser.close()
    return got


@pytest.mark.browser
@pytest.mark.notebooks
def test_pages_render_offline_with_one_shared_plotly(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set NBKIT_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="the pip package playwright is not installed")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    code = ("import plotly.express as px\nfrom nbkit.claims import record_claim\n"
            "record_claim('P', 'a claim', 'x', [0.1, 0.2, 0.15], dataset='toy', reference_value=0.3)\n"
            "px.scatter(x=[1, 2, 3], y=[3, 1, 2], title='toy')")
    for name in ("01_a", "02_b"):
        _nb(nbs / f"{name}.ipynb", code, markdown=r"Inline $\lambda_{dec} \sum_{i \ne j} C_{ij}^2$ and"
                                                  "\n\n$$L = L_{task} + \\lambda L_{orth}$$")
    out = tmp_path / "runs"
    r = _run("reproduce", "--notebooks", nbs, "--out", out)
    assert r.returncode == 0, r.stderr
    run = (out / "latest").resolve()
    # plotly.js once per run folder, and no page carries its own copy
    copies = [p for p in run.rglob("*") if p.is_file() and b"plotly.js v" in p.read_bytes()[:2_000_000]
              and p.stat().st_size > 1_000_000]
    assert [p.relative_to(run).as_posix() for p in copies] == ["_static/plotly.min.js"]
    assert all(p.stat().st_size < 1_000_000 for p in run.glob("*.html"))
    for page in ("01_a.html", "02_b.html"):
        got = _load_offline(run / page)
        assert got["blocked"] == [], got
        assert got["raw"] == [] and got["math"] >= 2 and got["plots"] >= 1, got
    rep = _load_offline(run / "report.html")
    assert rep["blocked"] == [] and rep["plots"] >= 1, rep
    assert (run / "forest.png").stat().st_size > 5000


@pytest.mark.parametrize("args, message", [
    (["sweep", "no-such", "--grid", "a=1"], "experiment must be one of"),
    (["sweep", "lambda-grid"], "--grid must name at least one setting"),
    (["sweep", "lambda-grid", "--grid", "colour=red,blue"], "not a setting of 'lambda-grid'"),
    (["sweep", "lambda-grid", "--grid", "lambda_dec=1,1"], "give distinct values"),
    (["sweep", "lambda-grid", "--grid", "lambda_dec"], "--grid must be NAME=V1,V2"),
    (["reproduce", "--address", "auto"], "need --executor ray"),
])
def test_bad_sweep_and_executor_arguments_exit_2(tmp_path, args, message):
    r = _run(*args, "--out", tmp_path / "x", timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_sweep_local_balance_table_and_claims(tmp_path):
    from nbkit.sweep import sweep

    folder = sweep("balance", {"method": ["joint", "RedReg"], "epochs": [1]}, seeds=[0, 1], out=tmp_path,
                   progress=False)
    frame = pd.read_csv(folder / "sweep.csv")
    assert set(frame.method) == {"joint", "RedReg"} and set(frame.seed) == {0, 1}
    assert {"acc", "acc/audio", "acc/image"} <= set(frame.metric) and "ms_step" not in set(frame.metric)
    # the trial numbering follows the grid, and every (trial, seed, metric) appears once
    assert not frame.duplicated(["trial", "seed", "metric"]).any()
    assert frame.groupby("trial").method.first().tolist() == ["joint", "RedReg"]
    claims = read_claims(folder / "claims.csv")
    assert len(claims) == 1 and claims.verdict.iloc[0].startswith(("inconclusive", "not supported"))   # 2 seeds
    assert "RedReg" in claims.claim.iloc[0] and "joint" in claims.claim.iloc[0]
