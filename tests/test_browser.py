"""Real-browser test of the DSRSD lambda panel (notebook 02).

A JupyterLab server on 127.0.0.1 (free port, random token, throwaway config/runtime dirs)
serves a copy of notebooks/02_decorrelation_orthogonality.ipynb whose parameters cell is
overridden (papermill-style) to make it tiny; headless Chromium, driven by Playwright's
Python API, runs the notebook's cells up to the panel, moves the lambda_dec slider with the
keyboard and checks that the heatmap and the metrics changed. The browser may only reach
127.0.0.1 (every other request is aborted), and the server is always shut down.

Needs: apt chromium (/usr/lib/chromium/chromium or /usr/bin/chromium; Playwright's own
browser download is not used) and the pip package playwright. Skips, saying why, when
either is missing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_decorrelation_orthogonality.ipynb"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
# the cell that builds the panel calls this; cells after it are not run (they are the rest of
# the lesson, not the panel)
PANEL_CALL = "lambda_panel("
# parameters overridden in the served copy: tiny panel, fast first draw (names from notebook 02)
TINY = {"profile": "quick", "seeds": [0], "n": 600, "epochs": 1, "panel_n_train": 192, "panel_n_eval": 160,
        "panel_epochs": 2}

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    env = os.environ.get("NBKIT_CHROMIUM")
    for c in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_copy(src: Path, dst: Path, overrides: dict) -> list[str]:
    """Copy notebook ``src`` to ``dst`` keeping the cells up to the one that builds the panel,
    with an injected cell after the ``parameters`` cell that overrides ``overrides`` (only the
    names the parameters cell defines). Returns the overridden names."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    idx = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(idx) != 1:
        raise ValueError(f"{src.name} must have exactly one code cell tagged 'parameters', found {len(idx)}")
    panel = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and PANEL_CALL in c.source]
    if not panel:
        raise ValueError(f"{src.name} has no cell calling {PANEL_CALL!r}")
    names = set(re.findall(r"^([A-Za-z_]\w*)\s*=", nb.cells[idx[0]].source, flags=re.M))
    used = {k: v for k, v in overrides.items() if k in names}
    inject = nbformat.v4.new_code_cell("# injected by tests/test_browser.py\n"
                                       + "\n".join(f"{k} = {v!r}" for k, v in used.items()))
    inject.metadata["tags"] = ["injected-parameters"]
    cells = nb.cells[: idx[0] + 1] + [inject] + nb.cells[idx[0] + 1: panel[0] + 1]
    nb.cells = cells
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, dst)
    return sorted(used)


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 serving ``root``; a context manager that always stops it."""

    def __init__(self, root: Path, state: Path, timeout: float = 60.0):
        self.root, self.state, self.timeout = root, state, timeout
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log = state / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "JupyterLab":
        env = dict(os.environ)
        for k, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                       ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                       ("IPYTHONDIR", "ipython")):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
            env[k] = str(self.state / sub)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False", "--allow-root",
               "--LabApp.extension_manager=readonly"]
        self._logfh = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._logfh, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                     start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError(f"JupyterLab did not answer within {self.timeout:.0f} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:   # its own session: the kernels it started go with it
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if getattr(self, "_logfh", None):
            self._logfh.close()


def _only_localhost(route) -> None:
    host = urlparse(route.request.url).hostname
    if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const nb = app.shell.currentWidget;
  await nb.context.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells');
  return nb.context.sessionContext.session.kernel.name;
}"""
HEATMAP_Z = """() => { const gd = document.querySelector('.nbkit-panel-figure .js-plotly-plot');
  return gd && gd.data && gd.data.length ? JSON.stringify(gd.data[0].z) : null; }"""
KERNEL_ERRORS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'))
  .map(e => e.innerText).filter(t => /Error|Traceback/.test(t)).join('\\n---\\n')"""


def drive_panel(notebook: Path, workdir: Path, overrides: dict = TINY, timeout_s: float = 75.0) -> dict:
    """Serve a tiny copy of ``notebook``, run it in Chromium, move the lambda_dec slider.
    Returns what was seen (titles, metrics, screenshots' sizes, timings)."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    root = workdir / "root"
    root.mkdir(parents=True, exist_ok=True)
    served = root / notebook.name
    seen = {"overridden": tiny_copy(notebook, served, overrides)}
    t0 = time.monotonic()
    with JupyterLab(root, workdir / "state") as lab, sync_playwright() as pw:
        seen["server_s"] = time.monotonic() - t0
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.route("**/*", _only_localhost)
            page = ctx.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.goto(f"{lab.url}/lab/tree/{served.name}?token={lab.token}&reset")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.context"
                                   " && window.jupyterapp.shell.currentWidget.context.sessionContext.session")
            seen["kernel"] = page.evaluate(RUN_ALL)
            fig = page.locator(".nbkit-panel-figure .js-plotly-plot")
            metrics = page.locator(".nbkit-panel-metrics")
            try:
                fig.first.wait_for(state="visible")
            except Exception:
                raise AssertionError(f"the panel's figure never appeared; kernel errors:\n{page.evaluate(KERNEL_ERRORS)}"
                                     f"\nserver log:\n{lab.log.read_text()[-2000:]}") from None
            seen["first_draw_s"] = time.monotonic() - t0
            title = page.locator(".nbkit-panel-figure .gtitle")
            seen["title_before"] = title.first.text_content()
            seen["metrics_before"] = metrics.first.inner_text()
            seen["png_before"] = fig.first.screenshot()
            seen["z_before"] = page.evaluate(HEATMAP_Z)
            slider = page.locator(".nbkit-lambda-dec")
            seen["readout_before"] = slider.locator(".widget-readout").first.inner_text()
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_function(
                "(before) => { const t = document.querySelector('.nbkit-panel-figure .gtitle');"
                " return t && t.textContent !== before; }", arg=seen["title_before"])
            page.wait_for_function("() => /update 2/.test(document.querySelector('.nbkit-panel-metrics').innerText)")
            seen["readout_after"] = slider.locator(".widget-readout").first.inner_text()
            seen["title_after"] = title.first.text_content()
            seen["metrics_after"] = metrics.first.inner_text()
            fig.first.wait_for(state="visible")
            page.wait_for_timeout(300)                     # let plotly finish painting
            seen["png_after"] = fig.first.screenshot()
            seen["z_after"] = page.evaluate(HEATMAP_Z)
            seen["total_s"] = time.monotonic() - t0
        finally:
            browser.close()
    return seen


def test_lambda_slider_changes_figure(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the pip package playwright is not installed")
    if _chromium() is None:
        pytest.skip(f"chromium is not installed (looked for {list(CHROMIUM_CANDIDATES)}; apt-get install chromium, "
                    f"or set NBKIT_CHROMIUM to its binary)")
    if not NOTEBOOK.is_file():
        pytest.skip(f"{NOTEBOOK.relative_to(ROOT)} does not exist yet")
    seen = drive_panel(NOTEBOOK, tmp_path)
    assert seen["kernel"] == "python3"
    assert seen["readout_before"] != seen["readout_after"], seen
    ld = seen["readout_after"].strip()
    assert f"lambda_dec={ld}" in seen["title_after"].replace(" ", ""), seen["title_after"]
    assert seen["title_before"] != seen["title_after"]
    assert "update 1" in seen["metrics_before"] and "update 2" in seen["metrics_after"]
    assert seen["png_before"] != seen["png_after"], "the figure's pixels did not change"
    assert seen["z_before"] and seen["z_after"], "no heatmap data found in the plotly figure"
    assert seen["z_before"] != seen["z_after"], "the heatmap's values did not change"
    assert seen["total_s"] < 120, f"took {seen['total_s']:.0f} s"
