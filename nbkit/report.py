"""The pages of a reproduction run: each executed notebook as HTML, and ``report.html``.

Every page works offline and the run folder stays small:

- plotly.js is copied ONCE into ``<run>/_static/plotly.min.js`` (from the plotly package);
  notebooks run with the ``plotly_mimetype`` renderer, so executed notebooks hold each
  figure's JSON only, and the HTML export turns that JSON into a ``<div>`` drawn by the
  shared copy;
- formulas are typeset by MathJax 3 (SVG output, no font files) from
  ``<run>/_static/mathjax/tex-svg.js``, copied from the ``django-static-mathjax`` package
  (MathJax 3.2.2, Apache-2.0; a plain wheel of MathJax's files, it needs no Django);
- nbconvert's links to CDNs (MathJax 2, require.js) are replaced or removed.

``report.html``: a scoreboard per paper (supported / not supported / inconclusive /
measured), a forest plot of every claim (the effect's mean and 95% interval, 0, and the
paper's value where there is one; plotly, and a static PNG drawn with seaborn), run
metadata (commit, profile, seeds, device, versions, wall time per notebook) and links.
"""
from __future__ import annotations

import html
import io
import json
import math
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

__all__ = ["STATIC", "install_static", "export_html", "run_metadata", "scoreboard", "forest_figure",
           "forest_png", "write_report"]

STATIC = "_static"
PLOTLY_JS = f"{STATIC}/plotly.min.js"
MATHJAX_JS = f"{STATIC}/mathjax/tex-svg.js"
VERDICT_COLOURS = {"supported": "#1a7f37", "not supported": "#cf222e", "inconclusive": "#9a6700",
                   "measured": "#57606a"}


# ------------------------------------------------------------------------- shared assets
def _mathjax_source() -> Path:
    from importlib import resources

    try:
        p = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5" / "tex-svg.js"
    except ModuleNotFoundError:
        p = None
    if p is None or not p.is_file():
        raise FileNotFoundError("MathJax's tex-svg.js was not found: install the package django-static-mathjax "
                                "(a dependency of nbkit: pip install -e .) so that formulas render offline")
    return p


def install_static(run_dir: Path) -> Path:
    """Copy plotly.js and MathJax into ``run_dir/_static`` (once per run folder)."""
    import plotly

    static = Path(run_dir) / STATIC
    (static / "mathjax").mkdir(parents=True, exist_ok=True)
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not (static / "plotly.min.js").exists():
        shutil.copyfile(src, static / "plotly.min.js")
    if not (static / "mathjax" / "tex-svg.js").exists():
        shutil.copyfile(_mathjax_source(), static / "mathjax" / "tex-svg.js")
    return static


# ------------------------------------------------------------------------ notebook pages
_MATHJAX_CONFIG = """<script>
window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
                        processEscapes: true, processEnvironments: true, tags: 'ams'},
                  svg: {fontCache: 'global'}, options: {ignoreHtmlClass: 'jp-OutputArea-output'}};
</script>
<script src="%s" id="MathJax-script"></script>"""


def _plotly_div(spec: dict) -> str:
    import plotly.io as pio

    fig = pio.from_json(json.dumps(spec), skip_invalid=True)
    return pio.to_html(fig, include_plotlyjs=False, full_html=False,
                       config={"displaylogo": False, "responsive": True})


def _prepare(nb) -> None:
    """In place: plotly JSON outputs become HTML divs for the shared plotly.js; outputs that
    embed a copy of plotly.js itself (the "notebook" renderer) are dropped."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        keep = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = data.get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            if "application/vnd.plotly.v1+json" in data:
                out["data"] = {"text/html": _plotly_div(data["application/vnd.plotly.v1+json"]),
                               "text/plain": data.get("text/plain", "<plotly figure>")}
            elif "plotly.js v" in text and "application/vnd.plotly.v1+json" not in data and len(text) > 1_000_000:
                continue                                      # a bundled plotly.js: the page has its own
            keep.append(out)
        cell["outputs"] = keep


def _offline(body: str, depth: str = "") -> str:
    """Replace nbconvert's MathJax 2 block by our MathJax 3 config, load the shared
    plotly.js, and drop every other script or stylesheet fetched from a network URL."""
    start, end = body.find("<!-- Load mathjax -->"), body.find("<!-- End of mathjax configuration -->")
    mj = _MATHJAX_CONFIG % (depth + MATHJAX_JS)
    if start >= 0 and end > start:
        body = body[:start] + mj + body[end + len("<!-- End of mathjax configuration -->"):]
    else:
        body = body.replace("</head>", mj + "\n</head>", 1)
    # the widget-renderer loader fetches a script from unpkg; no widget state is saved in a
    # papermill run, so the page has nothing for it to render
    body = re.sub(r"<script>\s*\(function\(\) \{\s*function addWidgetsRenderer\(\).*?</script>", "", body,
                  count=1, flags=re.S)
    body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    body = re.sub(r'<link[^>]+href="https?://[^"]*"[^>]*>', "", body)
    return body.replace("</head>", f'<script src="{depth}{PLOTLY_JS}"></script>\n</head>', 1)


def export_html(ipynb: Path, run_dir: Path | None = None) -> Path:
    """``ipynb`` as an offline HTML page next to it, using the run folder's ``_static``."""
    import nbformat
    from nbconvert import HTMLExporter

    ipynb = Path(ipynb)
    run_dir = Path(run_dir) if run_dir is not None else ipynb.parent
    install_static(run_dir)
    nb = nbformat.read(ipynb, as_version=4)
    _prepare(nb)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    rel = ipynb.parent.resolve().relative_to(run_dir.resolve())
    depth = "../" * len(rel.parts)
    out = ipynb.with_suffix(".html")
    out.write_text(_offline(body, depth), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------ metadata
def _git(*args: str) -> str:
    from .notebooks import REPO

    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_metadata(profile: str, seeds, params: dict | None = None, threads: int | None = None,
                 data_dir: str | None = None) -> dict[str, Any]:
    """What a reader needs to know to trust or repeat the run."""
    from importlib import metadata

    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    import torch

    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    if torch.cuda.is_available():
        device = f"CUDA: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    else:
        device = f"CPU: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"
    return {
        "commit": (commit + (" (with uncommitted changes)" if dirty else "")) if commit else "not a git checkout",
        "profile": profile, "seeds": "each notebook's defaults" if not seeds else str(list(seeds)),
        "parameters": json.dumps(params or {}, default=str), "threads per notebook": threads,
        "data folder (NBKIT_DATA)": data_dir or "none (bundled data and samples)",
        "device": device, "python": sys.version.split()[0], "platform": platform.platform(),
        **{pkg: version(pkg) for pkg in ("nbkit", "torch", "numpy", "pandas", "scikit-learn", "plotly",
                                          "papermill", "nbconvert")},
    }


# ------------------------------------------------------------------------------- claims
def _kind(verdict) -> str:
    v = "" if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)) else str(verdict)
    if not v:
        return "measured"
    for k in ("not supported", "supported", "inconclusive"):
        if v.startswith(k):
            return k
    return "measured"


def scoreboard(claims: pd.DataFrame) -> pd.DataFrame:
    """Per paper: how many claim rows are supported / not supported / inconclusive /
    measured (no verdict), and the total."""
    cols = ["supported", "not supported", "inconclusive", "measured"]
    if claims.empty:
        return pd.DataFrame(columns=["paper", *cols, "rows"])
    kinds = claims.assign(kind=claims.verdict.map(_kind))
    tab = kinds.groupby(["paper", "kind"]).size().unstack(fill_value=0).reindex(columns=cols, fill_value=0)
    tab["rows"] = tab.sum(axis=1)
    return tab.rename_axis(columns=None).reset_index()


def _short(text: str, n: int = 95) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def forest_figure(claims: pd.DataFrame):
    """One row per claim: the effect's mean (dot) and 95% interval (bar), coloured by
    verdict, 0 (dashed) and the paper's value (diamond) where there is one. Each claim is in
    its own units (AUC points, accuracy, R²...), so each row has its own x-axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(claims)
    if n == 0:
        raise ValueError("claims is empty: nothing to plot")
    titles = [f"{_short(r.claim)}<br><sup>{html.escape(str(r.paper))} · {html.escape(str(r.dataset))}</sup>"
              for r in claims.itertuples()]
    fig = make_subplots(rows=n, cols=1, subplot_titles=titles, vertical_spacing=min(0.6 / n, 0.08))
    seen = set()
    for i, r in enumerate(claims.itertuples(), start=1):
        kind = _kind(r.verdict)
        colour = VERDICT_COLOURS[kind]
        lo = r.ci_low if not pd.isna(r.ci_low) else r.ours_mean
        hi = r.ci_high if not pd.isna(r.ci_high) else r.ours_mean
        fig.add_trace(go.Scatter(x=[r.ours_mean], y=[0], mode="markers", marker=dict(size=11, color=colour),
                                 error_x=dict(type="data", symmetric=False, array=[hi - r.ours_mean],
                                              arrayminus=[r.ours_mean - lo], color=colour, thickness=2),
                                 name=kind, legendgroup=kind, showlegend=kind not in seen,
                                 hovertemplate=(f"ours {r.ours_mean:+.4g} [{lo:+.4g}, {hi:+.4g}] over {r.n_seeds} "
                                                f"seeds<br>{html.escape(str(r.metric))}<extra>{kind}</extra>")),
                      row=i, col=1)
        seen.add(kind)
        xs = [lo, hi, 0.0]
        if not pd.isna(r.reference_value):
            fig.add_trace(go.Scatter(x=[r.reference_value], y=[0], mode="markers",
                                     marker=dict(symbol="diamond-open", size=12, color="#0969da"),
                                     name="paper's value", legendgroup="paper", showlegend="paper" not in seen,
                                     hovertemplate=f"paper: {r.reference_value:+.4g}<extra>{html.escape(str(r.reference))}</extra>"),
                          row=i, col=1)
            seen.add("paper")
            xs.append(r.reference_value)
        span = max(max(xs) - min(xs), 1e-9)
        fig.add_vline(x=0.0, line_dash="dash", line_color="#8c959f", row=i, col=1)
        fig.update_xaxes(range=[min(xs) - 0.15 * span, max(xs) + 0.15 * span], row=i, col=1, zeroline=False)
        fig.update_yaxes(visible=False, range=[-1, 1], row=i, col=1)
    fig.update_annotations(font_size=11, align="left", x=0.0, xanchor="left")
    height = 110 * n + 150
    fig.update_layout(height=height, title=dict(text="Every claim: our effect (mean, 95% interval over seeds) vs 0 "
                                                     "(dashed) and the paper's value (diamond); each row in its own units",
                                                y=1 - 12 / height, yanchor="top", x=0.0, xanchor="left"),
                      margin=dict(l=30, r=30, t=130, b=30),
                      legend=dict(orientation="h", x=0.0, y=1.0 + 40 / height, yanchor="bottom"))
    return fig


def forest_png(claims: pd.DataFrame) -> bytes:
    """The forest plot as a static PNG (seaborn/matplotlib), for the report or a paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    n = len(claims)
    if n == 0:
        raise ValueError("claims is empty: nothing to plot")
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.85 * n + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], claims.itertuples()):
        kind = _kind(r.verdict)
        lo = r.ci_low if not pd.isna(r.ci_low) else r.ours_mean
        hi = r.ci_high if not pd.isna(r.ci_high) else r.ours_mean
        ax.errorbar([r.ours_mean], [0], xerr=[[r.ours_mean - lo], [hi - r.ours_mean]], fmt="o",
                    color=VERDICT_COLOURS[kind], capsize=3)
        ax.axvline(0, ls="--", color="#8c959f", lw=1)
        if not pd.isna(r.reference_value):
            ax.plot([r.reference_value], [0], "D", mfc="none", color="#0969da")
        ax.set_yticks([])
        ax.set_title(f"{_short(str(r.claim), 110)}  [{kind}]", fontsize=7, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------- report
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top;font-size:14px}
th{background:#f6f8fa}pre{margin:0;white-space:pre-wrap;font-size:12px}.ok{color:#1a7f37;font-weight:bold}
.failed{color:#cf222e;font-weight:bold}.n{text-align:right}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.tag{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-size:12px}"""


def _table(df: pd.DataFrame, escape: bool = True) -> str:
    return df.to_html(index=False, escape=escape, na_rep="", border=0,
                      float_format=lambda v: f"{v:.4g}")


def write_report(run_dir: Path, results: Sequence, meta: dict[str, Any], claims: pd.DataFrame) -> Path:
    """``run_dir/report.html`` (plus ``forest.png`` and ``notebooks.csv``) from the
    notebook results (objects with name, status, seconds, output, html, error) and claims."""
    run_dir = Path(run_dir)
    install_static(run_dir)
    nb_rows = []
    for r in results:
        link = (f'<a href="{html.escape(r.html.name)}">{html.escape(r.name)}</a>' if r.html
                else html.escape(r.name))
        nb_rows.append(f"<tr><td>{link}</td><td class='{r.status}'>{r.status}</td><td class='n'>{r.seconds:.1f}</td>"
                       f"<td><a href='{html.escape(r.output.name)}'>ipynb</a></td><td><pre>{html.escape(r.error)}</pre></td></tr>")
    total = sum(r.seconds for r in results)
    n_ok = sum(r.status == "ok" for r in results)
    meta = {**meta, "notebooks ok": f"{n_ok} / {len(results)}", "wall time (notebooks)": f"{total:.0f} s"}
    meta_html = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items())
    if len(claims):
        board = scoreboard(claims)
        forest = forest_figure(claims).to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
        (run_dir / "forest.png").write_bytes(forest_png(claims))
        shown = claims.assign(verdict=[f'<span class="tag" style="background:{VERDICT_COLOURS[_kind(v)]}">'
                                       f'{html.escape(str(v) or "measured")}</span>' for v in claims.verdict])
        for c in ("paper", "claim", "metric", "reference", "dataset"):
            shown[c] = [html.escape("" if pd.isna(v) else str(v)) for v in shown[c]]
        claims_html = (f"<h2>Scoreboard</h2>{_table(board)}"
                       f"<h2>Forest plot</h2>{forest}"
                       f'<p>Static copy (seaborn): <a href="forest.png">forest.png</a></p>'
                       f"<h2>Claims (<a href='claims.csv'>claims.csv</a>)</h2>{_table(shown, escape=False)}")
    else:
        claims_html = "<h2>Claims</h2><p>No claims recorded.</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>nbkit reproduction run {html.escape(run_dir.name)}</title>
<style>{_CSS}</style><script src="{PLOTLY_JS}"></script></head><body>
<h1>nbkit reproduction run <small>{html.escape(run_dir.name)}</small></h1>
<p>Verdicts: <b>supported</b> = the 95% interval of the per-seed effect excludes 0 on the claimed side;
<b>not supported</b> = the mean effect is on the wrong side; <b>inconclusive</b> otherwise (and below 3 seeds);
<b>measured</b> = a number without a verdict. The paper's values are on the paper's data: references, not targets.</p>
<h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>seconds</th><th>executed</th><th>error</th></tr>
{''.join(nb_rows)}</table>
{claims_html}
<h2>Run</h2><table>{meta_html}</table>
</body></html>"""
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    pd.DataFrame([{"notebook": r.name, "status": r.status, "seconds": round(r.seconds, 2), "error": r.error}
                  for r in results]).to_csv(run_dir / "notebooks.csv", index=False)
    return path
