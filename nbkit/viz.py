"""Figures, each a function of tidy data (frames, arrays): plotly for interactive figures.

Every figure a notebook shows comes from here, and tests call each function.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["history_figure", "embedding_figure", "heatmap_figure", "bar_figure", "curve_figure",
           "summary_table", "heatmap_grid_figure", "lambda_grid_figure", "gate_noise_figure",
           "image_grid_figure", "spectrogram_grid_figure", "mask_figure", "signals_figure", "audio_table",
           "mi_staircase_figure", "codebook_usage_figure", "code_cooccurrence_figure", "detection_figure",
           "matrix_row_figure", "x_semantic_figure", "joint_map_figure", "METRIC_LABELS",
           "embedding_grid_figure", "diagram_figure", "scatter3d_grid_figure"]

TEMPLATE = "plotly_white"


def _go():
    import plotly.graph_objects as go
    return go


def history_figure(history, metrics: Sequence[str] = ("loss",), split: str | Sequence[str] = ("train", "val"),
                   by: str = "epoch", title: str = "Training curves", log_y: bool = False, yaxis_title: str = "value"):
    """Lines of each metric over epochs (or steps) for each split; one colour per metric.
    ``log_y`` draws the y-axis on a log scale (terms of very different sizes, e.g. a task
    loss near 1 and a decorrelation term near 0.01, stay readable)."""
    go = _go()
    frame = history.frame if hasattr(history, "frame") else history
    splits = [split] if isinstance(split, str) else list(split)
    fig = go.Figure()
    for metric in metrics:
        for sp in splits:
            f = frame[(frame.metric == metric) & (frame.split == sp)]
            if f.empty:
                continue
            c = f.groupby(by)["value"].mean()
            fig.add_scatter(x=c.index, y=c.values, mode="lines", name=f"{metric} ({sp})",
                            line=dict(dash="solid" if sp == "train" else "dash"))
    if not fig.data:
        raise ValueError(f"none of metrics {list(metrics)} logged for splits {splits}")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=by, yaxis_title=yaxis_title + (" (log scale)" if log_y else ""),
                      height=380)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def embedding_figure(xy, color, title: str = "", color_name: str = "label", hover: Sequence | None = None,
                     categorical: bool | None = None, symbol=None):
    """2-D scatter of a projection, coloured by a label (categorical) or a value (continuous)."""
    import plotly.express as px

    xy = np.asarray(xy)
    color = np.asarray(color)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(color):
        raise ValueError(f"xy must be [N, 2] and color [N]; got {xy.shape} and {color.shape}")
    if categorical is None:
        categorical = not np.issubdtype(color.dtype, np.floating)
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], color_name: color.astype(str) if categorical else color})
    if symbol is not None:
        df["symbol"] = np.asarray(symbol).astype(str)
    if hover is not None:
        df["info"] = list(hover)
    fig = px.scatter(df, x="x", y="y", color=color_name, symbol="symbol" if symbol is not None else None,
                     hover_data=["info"] if hover is not None else None, template=TEMPLATE, title=title,
                     color_continuous_scale="Viridis",
                     category_orders={color_name: sorted(df[color_name].unique(), key=_natural)} if categorical else None)
    fig.update_traces(marker=dict(size=4, opacity=0.75))
    # one unit on x is one unit on y: a 2-D map is not stretched into a strip by a wide cell
    fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(height=460, width=560, xaxis_title="", yaxis_title="")
    return fig


def _natural(s):
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)


def heatmap_figure(matrix, x: Sequence | None = None, y: Sequence | None = None, title: str = "",
                   zmid: float | None = 0.0, colorscale: str = "RdBu_r", zmin=None, zmax=None, text_fmt: str | None = None):
    """A labelled heatmap (covariance matrices, metric grids). ``text_fmt`` writes values in cells."""
    go = _go()
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    kw = dict(z=m, x=list(map(str, x)) if x is not None else None, y=list(map(str, y)) if y is not None else None,
              colorscale=colorscale, zmid=zmid, zmin=zmin, zmax=zmax)
    if text_fmt:
        kw.update(text=[[format(v, text_fmt) for v in row] for row in m], texttemplate="%{text}")
    fig = go.Figure(go.Heatmap(**kw))
    fig.update_layout(template=TEMPLATE, title=title, height=420, yaxis=dict(autorange="reversed"))
    return fig


def bar_figure(df: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "", error: str | None = "auto",
               hlines: dict[str, float] | None = None):
    """Mean +- std bars over seeds: ``df`` has one row per (x, color, seed). ``hlines``:
    dashed reference lines {label: y} (e.g. a single modality trained alone)."""
    import plotly.express as px

    if df.empty:
        raise ValueError("bar_figure got an empty frame")
    keys = [x] + ([color] if color else [])
    agg = df.groupby(keys, sort=False)[y].agg(["mean", "std", "count"]).reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    fig = px.bar(agg, x=x, y="mean", color=color, barmode="group", error_y="std" if error else None,
                 template=TEMPLATE, title=title, hover_data=["count"])
    fig.update_layout(yaxis_title=y, height=400)
    for label, val in (hlines or {}).items():
        fig.add_hline(y=float(val), line_dash="dash", line_color="gray", annotation_text=str(label),
                      annotation_position="top left")
    return fig


def curve_figure(df: pd.DataFrame, x: str, y: str, color: str, title: str = "", band: bool = True,
                 log_y: bool = False):
    """Mean curve per ``color`` group over ``x`` with a +-std band across seeds (``log_y``:
    log-scaled y-axis)."""
    go = _go()
    if df.empty:
        raise ValueError("curve_figure got an empty frame")
    import plotly.express as px

    palette = px.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (name, g) in enumerate(df.groupby(color, sort=False)):
        a = g.groupby(x)[y].agg(["mean", "std"]).reset_index().fillna(0.0)
        col = palette[i % len(palette)]
        if band and (a["std"] > 0).any():
            lo = a["mean"] - a["std"]
            if log_y:                                  # a log axis cannot show a band below 0
                lo = np.maximum(lo, a["mean"] / 2)
            fig.add_scatter(x=list(a[x]) + list(a[x][::-1]), y=list(a["mean"] + a["std"]) + list(lo[::-1]),
                            fill="toself", line=dict(width=0), fillcolor=col, opacity=0.15, showlegend=False,
                            hoverinfo="skip")
        fig.add_scatter(x=a[x], y=a["mean"], mode="lines+markers", name=str(name), line=dict(color=col))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=x, yaxis_title=y + (" (log scale)" if log_y else ""),
                      height=400)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def summary_table(df: pd.DataFrame, by: Sequence[str] | str, values: Sequence[str] | str, digits: int = 3) -> pd.DataFrame:
    """mean +- std (n) per group, as strings ready to display."""
    by = [by] if isinstance(by, str) else list(by)
    values = [values] if isinstance(values, str) else list(values)
    g = df.groupby(by, sort=False)[values]
    mean, std, n = g.mean(), g.std().fillna(0.0), g.count()
    out = mean.copy().astype(object)
    for v in values:
        out[v] = [f"{a:.{digits}f} ± {s:.{digits}f} (n={k})" if k else "—" for a, s, k in zip(mean[v], std[v], n[v])]
    return out.reset_index()


# ------------------------------------------------ DSRSD-Net figures (notebooks 02 and 03)
def _wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of at most ``width`` characters (at spaces) joined by <br>,
    so a panel title never runs into its neighbour or off the figure."""
    words, lines, cur = str(text).split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return "<br>".join(lines)


def heatmap_grid_figure(matrices: dict, cols: int = 3, title: str = "", zmin: float = -1.0, zmax: float = 1.0,
                        colorscale: str = "RdBu_r", height_per_row: int = 300, max_width: int = 960):
    """Small multiples of equally-scaled heatmaps (e.g. shared-space correlation matrices
    before/after training or across lambda settings), one square panel per ``{title: matrix}``
    and ONE colour bar for all (they share ``zmin``/``zmax``). Panels shrink so that the
    figure is at most ``max_width`` pixels wide (no panel is cut off in a notebook), and
    long panel titles are wrapped to the panel's width."""
    from plotly.subplots import make_subplots

    go = _go()
    if not matrices:
        raise ValueError("heatmap_grid_figure needs at least one {title: matrix}")
    names = list(matrices)
    cols = max(1, min(int(cols), len(names)))
    rows = -(-len(names) // cols)
    panel = int(min(height_per_row, (max_width - 140) / cols))
    chars = max(12, panel // 8)
    n_lines = max(_wrap(n, chars).count("<br>") + 1 for n in names)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_wrap(n, chars) for n in names],
                        horizontal_spacing=0.03, vertical_spacing=min(0.3, (22 * n_lines + 20) / (panel * rows + 1)))
    for k, n in enumerate(names):
        m = np.asarray(matrices[n], dtype=float)
        if m.ndim != 2:
            raise ValueError(f"matrix {n!r} must be 2-D, got shape {m.shape}")
        fig.add_trace(go.Heatmap(z=m, zmin=zmin, zmax=zmax, zmid=0.0 if zmin < 0 < zmax else None,
                                 colorscale=colorscale, showscale=k == 0, coloraxis=None,
                                 colorbar=dict(len=min(1.0, 1.0 / rows + 0.1), thickness=14)),
                      row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(scaleanchor=f"x{k + 1 if k else ''}", constrain="domain", row=k // cols + 1, col=k % cols + 1)
        fig.update_xaxes(constrain="domain", row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_annotations(font_size=12)
    top = 60 + 16 * n_lines
    fig.update_layout(template=TEMPLATE, title=title, height=panel * rows + top + 30 * rows,
                      width=min(max_width, max(360, panel * cols + 140)), margin=dict(t=top, l=20, r=20, b=20))
    return fig


# plain-words titles of the diagnostics (notebooks 02/03); any other metric keeps its name
METRIC_LABELS = {"auc": "test AUC", "acc": "test accuracy", "offdiag": "off-diagonal mass (L_dec)",
                 "orth": "L_orth (shared vs private)", "disentanglement": "disentanglement (R² gap)",
                 "r2_shared": "R² shared stream -> shared factors",
                 "r2_shared_to_private": "R² shared stream -> private factors",
                 "r2_private": "R² private stream -> private factors"}


def lambda_grid_figure(df: pd.DataFrame, metrics: Sequence[str] = ("auc", "disentanglement"),
                       x: str = "lambda_orth", y: str = "lambda_dec", title: str = "", text_fmt: str = ".3f",
                       cols: int = 2, labels: dict | None = None):
    """Heatmaps of metrics over a (lambda_dec x lambda_orth) grid, averaged over seeds, in
    ``cols`` columns; every panel has its OWN colour scale, so each carries its own colour
    bar next to it, and the value is written in every cell. Panel titles: ``labels``
    (default `METRIC_LABELS`)."""
    from plotly.subplots import make_subplots

    go = _go()
    missing = [c for c in [x, y, *metrics] if c not in df.columns]
    if df.empty or missing:
        raise ValueError(f"lambda_grid_figure needs a non-empty frame with columns {[x, y, *metrics]}; "
                         f"missing {missing}")
    names = {**METRIC_LABELS, **(labels or {})}
    metrics = list(metrics)
    cols = max(1, min(int(cols), len(metrics)))
    rows = -(-len(metrics) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[names.get(m, m) for m in metrics],
                        horizontal_spacing=0.2, vertical_spacing=0.18 if rows > 1 else 0.1)
    for k, met in enumerate(metrics):
        r, c = k // cols + 1, k % cols + 1
        piv = df.groupby([y, x])[met].mean().unstack(x).sort_index().sort_index(axis=1)
        xs, ys = [f"{v:g}" for v in piv.columns], [f"{v:g}" for v in piv.index]
        z = piv.values
        xa = fig.get_subplot(r, c).xaxis.domain
        ya = fig.get_subplot(r, c).yaxis.domain
        fig.add_trace(go.Heatmap(z=z, x=xs, y=ys, colorscale="Viridis", text=[[format(v, text_fmt) for v in rr] for rr in z],
                                 texttemplate="%{text}", showscale=True,
                                 colorbar=dict(x=xa[1] + 0.01, xanchor="left", y=(ya[0] + ya[1]) / 2, yanchor="middle",
                                               len=(ya[1] - ya[0]) * 1.05, thickness=12)),
                      row=r, col=c)
        fig.update_xaxes(title_text=x, type="category", row=r, col=c)
        fig.update_yaxes(title_text=y, type="category", row=r, col=c)
    fig.update_layout(template=TEMPLATE, title=title, height=60 + 360 * rows, width=min(960, 80 + 440 * cols))
    return fig


def gate_noise_figure(summary: pd.DataFrame, title: str = "Gate weight vs per-sample noise"):
    """Mean gate weight of each modality against the noise level put on one modality
    (one panel per noisy modality): a reliability-aware gate moves weight away from it."""
    from plotly.subplots import make_subplots
    import plotly.express as px

    need = {"noisy_modality", "modality", "level_bin", "gate"}
    if summary.empty or not need <= set(summary.columns):
        raise ValueError(f"gate_noise_figure needs a non-empty frame with columns {sorted(need)} "
                         f"(see nbkit.experiments.nb03_missing_modalities.gate_noise_summary)")
    noisy = list(dict.fromkeys(summary.noisy_modality))
    mods = list(dict.fromkeys(summary.modality))
    palette = px.colors.qualitative.Plotly
    fig = make_subplots(rows=1, cols=len(noisy), subplot_titles=[f"noise on {m}" for m in noisy], shared_yaxes=True)
    for k, nm in enumerate(noisy):
        for i, m in enumerate(mods):
            g = summary[(summary.noisy_modality == nm) & (summary.modality == m)].sort_values("level_bin")
            fig.add_scatter(x=g.level_bin, y=g.gate, mode="lines+markers", name=f"gate of {m}",
                            line=dict(color=palette[i % len(palette)]), showlegend=k == 0, row=1, col=k + 1)
        fig.update_xaxes(title_text="noise level (x feature std)", row=1, col=k + 1)
    fig.update_yaxes(title_text="mean gate weight", range=[0, 1], row=1, col=1)
    fig.update_layout(template=TEMPLATE, title=title, height=380)
    return fig


# ------------------------------------------------ data tour figures (notebook 00)


def image_grid_figure(images, titles: Sequence | None = None, ncols: int = 10, image_shape: Sequence[int] | None = None,
                      title: str = "", colorscale="gray_r", gap: int = 2, tile_px: int = 70, zmin=None, zmax=None):
    """Tiles of small images ([N, H, W], or [N, H*W] with ``image_shape``) in one heatmap,
    each with its title above it; NaN gaps between tiles. Values outside ``zmin``/``zmax``
    (default: the data's 1st/99th percentiles) are clipped for display only."""
    go = _go()
    a = np.asarray(images, dtype=float)
    if image_shape is not None:
        if a.ndim != 2 or int(np.prod(image_shape)) != a.shape[1]:
            raise ValueError(f"images of shape {a.shape} cannot be reshaped to image_shape={tuple(image_shape)}")
        a = a.reshape(len(a), *image_shape)
    if a.ndim != 3 or len(a) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W] array (or [N, H*W] with image_shape), got {a.shape}")
    if titles is not None and len(titles) != len(a):
        raise ValueError(f"titles has {len(titles)} entries for {len(a)} images")
    n, h, w = a.shape
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    vgap = max(gap, int(round(0.25 * h))) if titles is not None else gap   # room for the titles
    canvas = np.full((nrows * (h + vgap) - vgap, ncols * (w + gap) - gap), np.nan)
    for k in range(n):
        r, c = divmod(k, ncols)
        canvas[r * (h + vgap): r * (h + vgap) + h, c * (w + gap): c * (w + gap) + w] = a[k]
    lo = np.nanpercentile(a, 1) if zmin is None else zmin
    hi = np.nanpercentile(a, 99) if zmax is None else zmax
    fig = go.Figure(go.Heatmap(z=canvas, colorscale=colorscale, zmin=lo, zmax=hi, showscale=False,
                               hoverongaps=False))
    for k in range(n if titles is not None else 0):
        r, c = divmod(k, ncols)
        fig.add_annotation(x=c * (w + gap) + (w - 1) / 2, y=r * (h + vgap) - 0.5, text=str(titles[k]),
                           showarrow=False, yanchor="bottom", font=dict(size=10))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(template=TEMPLATE, title=title, width=max(300, ncols * tile_px + 60),
                      height=nrows * int(tile_px * (h + vgap) / w) + 90, margin=dict(l=10, r=10, t=60, b=10))
    return fig


def spectrogram_grid_figure(frames, titles: Sequence | None = None, ncols: int = 10, title: str = "",
                            colorscale: str = "Viridis", tile_px: int = 70):
    """Tiles of log-mel spectrograms given as [N, time, mel] (the avdigits audio layout):
    time runs left to right and low frequencies sit at the bottom of each tile."""
    f = np.asarray(frames, dtype=float)
    if f.ndim != 3:
        raise ValueError(f"frames must be [N, time, mel], got shape {f.shape}")
    return image_grid_figure(f.transpose(0, 2, 1)[:, ::-1, :], titles=titles, ncols=ncols, title=title,
                             colorscale=colorscale, tile_px=tile_px)


def mask_figure(masks: dict, modalities: Sequence[str], n_show: int = 40, title: str = "Which modalities each sample has"):
    """Present masks side by side (columns: setting x modality, rows: the first ``n_show``
    samples); green = present, red = missing. ``masks``: {setting label: bool [N, M]}."""
    if not masks:
        raise ValueError("mask_figure needs at least one {label: present mask [N, M]}")
    mods = [str(m) for m in modalities]
    cols, labels = [], []
    for k, (name, m) in enumerate(masks.items()):
        m = np.asarray(m)
        if m.ndim != 2 or m.shape[1] != len(mods):
            raise ValueError(f"mask {name!r} must be [N, {len(mods)}] (one column per modality), got {m.shape}")
        if k:
            cols.append(np.full((min(n_show, len(m)), 1), np.nan))
            labels.append(" " * k)
        cols.append(m[:n_show].astype(float))
        labels += [f"{name} · {mo}" for mo in mods]
    rows = min(len(c) for c in cols)
    z = np.concatenate([c[:rows] for c in cols], 1)
    fig = heatmap_figure(z, x=labels, y=[str(i) for i in range(rows)], title=title, zmid=None, zmin=0, zmax=1,
                         colorscale=[[0, "#d62728"], [0.5, "#d62728"], [0.5, "#2ca02c"], [1, "#2ca02c"]])
    fig.update_traces(showscale=False, xgap=1, ygap=1, hoverongaps=False)
    fig.update_layout(yaxis_title="sample", height=min(900, 120 + 12 * rows))
    return fig


# ------------------------------------------------------------------ modality balance (05)
def signals_figure(frame: pd.DataFrame, panels: dict[str, Sequence[str]], x: str = "step", smooth: int = 1,
                   title: str = "", hlines: dict[str, float] | None = None, labels: dict[str, str] | None = None,
                   legends: str = "shared"):
    """Stacked panels of per-step signals from a wide frame (one column per signal), e.g.
    RedReg's monitor: ``panels = {"r_m vs R": ["r/audio", "r/image"], ...}``. ``smooth``
    > 1 draws a centred rolling mean (fractions of steps for 0/1 signals); ``hlines`` puts a
    dashed reference line into a panel (e.g. the trigger threshold R). ``labels`` renames
    series in the legend ({column: name}); ``legends="per_panel"`` gives every panel its own
    legend beside it instead of one shared list of every series."""
    from plotly.subplots import make_subplots

    if not panels:
        raise ValueError("panels must name at least one panel {title: [columns]}")
    missing = [c for cols in panels.values() for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the frame; it has {sorted(map(str, frame.columns))}")
    if x not in frame.columns:
        raise KeyError(f"x={x!r} is not a column of the frame")
    if int(smooth) < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    if legends not in ("shared", "per_panel"):
        raise ValueError(f"legends must be one of ['shared', 'per_panel'], got {legends!r}")
    labels = dict(labels or {})
    import plotly.express as px

    pal = px.colors.qualitative.Plotly
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=list(panels),
                        vertical_spacing=0.06)
    k = 0
    for i, (name, cols) in enumerate(panels.items(), start=1):
        for c in cols:
            y = frame[c].rolling(int(smooth), center=True, min_periods=1).mean() if smooth > 1 else frame[c]
            extra = {"legend": "legend" if i == 1 else f"legend{i}"} if legends == "per_panel" else {}
            fig.add_scatter(x=frame[x], y=y, mode="lines", name=labels.get(c, c), row=i, col=1,
                            line=dict(color=pal[k % len(pal)]), **extra)
            k += 1
        if hlines and name in hlines:
            fig.add_hline(y=float(hlines[name]), line_dash="dash", line_color="gray", row=i, col=1)
    fig.update_layout(template=TEMPLATE, title=title, height=200 + 170 * len(panels))
    if legends == "per_panel":
        for i in range(1, len(panels) + 1):
            dom = fig.layout["yaxis" if i == 1 else f"yaxis{i}"].domain
            fig.update_layout({("legend" if i == 1 else f"legend{i}"): dict(y=dom[1], yanchor="top", x=1.01,
                                                                             xanchor="left", font=dict(size=10))})
    fig.update_xaxes(title_text=x, row=len(panels), col=1)
    return fig


def audio_table(df: pd.DataFrame, path_col: str = "path"):
    """An HTML table with one embedded audio player per row (the WAV at ``df[path_col]``,
    base64-embedded so the executed notebook keeps the sound) next to the other columns."""
    import base64
    import html
    from pathlib import Path

    from IPython.display import HTML

    if df.empty or path_col not in df.columns:
        raise ValueError(f"audio_table needs a non-empty frame with a {path_col!r} column of WAV paths")
    cols = [c for c in df.columns if c != path_col]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "<th>listen</th>"
    body = []
    for _, r in df.iterrows():
        p = Path(r[path_col])
        if not p.is_file():
            raise FileNotFoundError(f"audio_table: WAV file {str(p)!r} does not exist")
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        cells = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols)
        body.append(f"<tr>{cells}<td><audio controls preload='none' src='data:audio/wav;base64,{b64}'></audio></td></tr>")
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


# ---------------------------------------------------------------- notebook 10 (OULAD)
def interval_figure(df: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "",
                    reference: float | None = None):
    """Mean ± std over seeds as a dot with an error bar per ``x`` (one row per x, color,
    seed in ``df``), on an axis fitted to the data (bars that start at 0 hide differences of
    a few hundredths); ``reference`` draws a dashed horizontal line (e.g. chance AUC 0.5)."""
    import plotly.express as px

    if df.empty:
        raise ValueError("interval_figure got an empty frame")
    missing = [c for c in [x, y] + ([color] if color else []) if c not in df.columns]
    if missing:
        raise ValueError(f"interval_figure: columns {missing} are not in the frame (it has {list(df.columns)})")
    keys = [x] + ([color] if color else [])
    agg = df.groupby(keys, sort=False)[y].agg(["mean", "std", "count"]).reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    fig = px.scatter(agg, x=x, y="mean", color=color, error_y="std", template=TEMPLATE, title=title,
                     hover_data=["count"])
    fig.update_traces(marker_size=11)
    lo, hi = float((agg["mean"] - agg["std"]).min()), float((agg["mean"] + agg["std"]).max())
    if reference is not None:
        fig.add_hline(y=float(reference), line_dash="dash", line_color="#8c959f")
        lo, hi = min(lo, float(reference)), max(hi, float(reference))
    pad = 0.1 * max(hi - lo, 1e-6)
    fig.update_layout(yaxis_title=y, yaxis_range=[lo - pad, hi + pad], height=420)
    return fig


# ------------------------------------------------------------------ SRCID (issue 9, notebook 04)
def mi_staircase_figure(frame: pd.DataFrame, smooth: int = 25, title: str = "CLUB on correlated Gaussians"):
    """CLUB's estimate per step (thin: raw, thick: rolling mean over ``smooth`` steps) against
    the true MI staircase and the bound with the true conditional (``exact_club``); ``frame``
    from `nbkit.experiments.nb04_srcid.club_gaussian_staircase`."""
    go = _go()
    need = {"step", "true_mi", "estimate"}
    if not need <= set(frame.columns) or frame.empty:
        raise ValueError(f"frame must be a non-empty staircase frame with columns {sorted(need)}")
    f = frame.sort_values("step")
    fig = go.Figure()
    fig.add_scatter(x=f.step, y=f.estimate, mode="lines", name="CLUB estimate (per batch)",
                    line=dict(width=1, color="#9ecae1"))
    fig.add_scatter(x=f.step, y=f.estimate.rolling(max(int(smooth), 1), min_periods=1).mean(), mode="lines",
                    name=f"CLUB estimate (mean of {int(smooth)})", line=dict(width=3, color="#08519c"))
    fig.add_scatter(x=f.step, y=f.true_mi, mode="lines", name="true MI", line=dict(width=2, color="black", dash="dash"))
    if "exact_club" in f:
        fig.add_scatter(x=f.step, y=f.exact_club, mode="lines", name="CLUB with the true q(y|x)",
                        line=dict(width=2, color="#d62728", dash="dot"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="estimator step", yaxis_title="nats", height=400)
    return fig


def codebook_usage_figure(frame: pd.DataFrame, kind: str = "perplexity", title: str = "Codebook usage over training"):
    """One line per (variant, codebook) of the codebook ``kind`` over training steps; ``frame``
    from `nbkit.experiments.nb04_srcid.usage_over_training`. Codebooks are never pooled."""
    import plotly.express as px

    need = {"variant", "codebook", "step", kind}
    if frame.empty or not need <= set(frame.columns):
        raise ValueError(f"frame must be a non-empty usage frame with columns {sorted(need)}")
    f = frame.assign(series=frame.variant + " · " + frame.codebook)
    fig = px.line(f, x="step", y=kind, color="series", template=TEMPLATE, title=title)
    fig.update_layout(height=420, yaxis_title=kind, legend_title="variant · codebook")
    return fig


def code_cooccurrence_figure(matrix, rows: Sequence, cols: Sequence, names: tuple[str, str] = ("a", "b"),
                             title: str = "Which code each modality picks for paired items"):
    """Heatmap of `nbkit.evaluate.code_cooccurrence` counts: rows = codes of modality
    ``names[0]``, columns = codes of ``names[1]``; mass on the diagonal = shared codes."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix must be [len(rows), len(cols)] = [{len(rows)}, {len(cols)}], got {m.shape}")
    fig = heatmap_figure(m, x=[f"{c}" for c in cols], y=[f"{r}" for r in rows], title=title, zmid=None,
                         colorscale="Blues", zmin=0)
    fig.update_layout(xaxis_title=f"code chosen by {names[1]}", yaxis_title=f"code chosen by {names[0]}",
                      height=480)
    return fig


# ------------------------------------------------ RSC-MD figures (notebook 06). Appended block.
def detection_figure(images, detections: Sequence | None = None, targets: Sequence | None = None,
                     titles: Sequence | None = None, class_names: Sequence[str] | None = None, ncols: int = 4,
                     stretch: bool = True, title: str = "", tile_px: int = 190):
    """Images ([N, C, H, W], C = 3 for RGB or 1 for thermal/gray) in a grid with boxes drawn
    on them: ``targets`` (one dict per image: boxes [k, 4] x1, y1, x2, y2 pixels, labels)
    as dashed white boxes, ``detections`` (dicts with boxes, labels and optional scores) as
    solid boxes coloured by class with "class score" above. ``stretch``: each image's
    values mapped to its own 1st-99th percentile for display (night RGB is otherwise almost
    black); False clips the raw values to [0, 1]."""
    import plotly.express as px
    from plotly.subplots import make_subplots

    go = _go()
    a = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=float)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or len(a) == 0:
        raise ValueError(f"images must be a non-empty [N, C, H, W] array with C = 1 or 3, got shape {a.shape}")
    n, _, h, w = a.shape
    for name, seq in (("detections", detections), ("targets", targets), ("titles", titles)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[str(t) for t in titles] if titles is not None else None,
                        horizontal_spacing=0.02, vertical_spacing=0.08 if titles is not None else 0.02)
    palette = px.colors.qualitative.Set1
    arr = (lambda v: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float))
    for k in range(n):
        r, c = divmod(k, ncols)
        img = np.repeat(a[k], 3, 0) if a.shape[1] == 1 else a[k]
        if stretch:
            lo, hi = np.percentile(img, 1), np.percentile(img, 99)
            img = (img - lo) / max(hi - lo, 1e-8)
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        fig.add_trace(go.Image(z=img, hoverinfo="skip"), row=r + 1, col=c + 1)
        xref = "x" if k == 0 else f"x{k + 1}"
        yref = "y" if k == 0 else f"y{k + 1}"
        # pixel i covers [i, i + 1) in box coordinates and is drawn centred on i: shift by 0.5
        for kind, items in (("target", targets), ("det", detections)):
            if items is None:
                continue
            d = items[k]
            boxes, labels = arr(d["boxes"]).reshape(-1, 4), arr(d["labels"]).reshape(-1).astype(int)
            scores = arr(d["scores"]).reshape(-1) if kind == "det" and "scores" in d else None
            for j, (b, lab) in enumerate(zip(boxes, labels)):
                x0, y0, x1, y1 = (b - 0.5).tolist()
                col = "white" if kind == "target" else palette[lab % len(palette)]
                fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, xref=xref, yref=yref,
                              line=dict(color=col, width=1.5, dash="dash" if kind == "target" else "solid"))
                if kind == "det":
                    name = class_names[lab] if class_names is not None and lab < len(class_names) else str(lab)
                    text = name + (f" {scores[j]:.2f}" if scores is not None else "")
                    fig.add_annotation(x=x0, y=y0, xref=xref, yref=yref, text=text, showarrow=False,
                                       xanchor="left", yanchor="bottom", font=dict(size=9, color=col),
                                       bgcolor="rgba(0,0,0,0.5)")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template=TEMPLATE, title=title, width=ncols * tile_px + 40,
                      height=nrows * tile_px + (110 if titles is not None else 70), margin=dict(l=10, r=10, t=80, b=10))
    return fig


# ------------------------------------------------------------------ CDDS (notebook 07)


def matrix_row_figure(matrices: dict, title: str = "", colorscale: str = "Viridis", zmin: dict | None = None,
                      zmax: dict | None = None, x_title: str = "", y_title: str = "", height: int = 380):
    """Heatmaps side by side, each on ITS OWN colour scale with its own colour bar (a KL
    matrix in nats next to a row-normalised matrix and a 0/1 mapping); ``zmin``/``zmax``:
    optional {panel: value}."""
    from plotly.subplots import make_subplots

    go = _go()
    if not matrices:
        raise ValueError("matrix_row_figure needs at least one {title: matrix}")
    names = list(matrices)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[str(n) for n in names], horizontal_spacing=0.09)
    for k, n in enumerate(names):
        m = np.asarray(matrices[n], dtype=float)
        if m.ndim != 2:
            raise ValueError(f"matrix {n!r} must be 2-D, got shape {m.shape}")
        dom = fig.layout[f"xaxis{k + 1 if k else ''}"].domain
        fig.add_trace(go.Heatmap(z=m, colorscale=colorscale, zmin=(zmin or {}).get(n), zmax=(zmax or {}).get(n),
                                 colorbar=dict(x=dom[1] + 0.005, len=0.8, thickness=10)), row=1, col=k + 1)
        fig.update_xaxes(title_text=x_title, row=1, col=k + 1)
        fig.update_yaxes(title_text=y_title if k == 0 else None, autorange="reversed", scaleanchor=f"x{k + 1 if k else ''}",
                         constrain="domain", row=1, col=k + 1)
    fig.update_layout(template=TEMPLATE, title=title, height=height, width=max(420, 330 * len(names)))
    return fig


def x_semantic_figure(frame: pd.DataFrame, title: str = "A sampled x-semantic component"):
    """Per dimension: a sample's own semantic component, the x-semantic mean built from its
    partner with its +-2 sd band, and a few sampled x-semantic draws (`nbkit.experiments.
    nb07_retrieval.x_semantic_example`: columns dim, kind, draw, value, lo, hi)."""
    go = _go()
    need = {"dim", "kind", "draw", "value", "lo", "hi"}
    if frame.empty or not need <= set(frame.columns):
        raise ValueError(f"x_semantic_figure needs a non-empty frame with columns {sorted(need)}")
    fig = go.Figure()
    band = frame[frame.lo.notna()]
    for kind, g in band.groupby("kind", sort=False):
        g = g.sort_values("dim")
        fig.add_scatter(x=list(g.dim) + list(g.dim[::-1]), y=list(g.hi) + list(g.lo[::-1]), fill="toself",
                        line=dict(width=0), fillcolor="rgba(99,110,250,0.15)", name=f"{kind} ± 2 sd", hoverinfo="skip")
    draws = frame[frame.kind == "x-semantic draw"]
    for k, (_, g) in enumerate(draws.groupby("draw")):
        fig.add_scatter(x=g.dim, y=g.value, mode="markers", marker=dict(size=5, color="rgba(99,110,250,0.6)"),
                        name="x-semantic draws", legendgroup="draws", showlegend=k == 0)
    colors = ["#EF553B", "#636EFA", "#00CC96"]
    for i, (kind, g) in enumerate(frame[frame.kind != "x-semantic draw"].groupby("kind", sort=False)):
        g = g.sort_values("dim")
        fig.add_scatter(x=g.dim, y=g.value, mode="lines+markers", name=kind, line=dict(color=colors[i % 3]))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="dimension", yaxis_title="value", height=380)
    return fig


def joint_map_figure(frame: pd.DataFrame, color: str = "modality", title: str = ""):
    """Both modalities in one 2-D map, one panel per model (`nb07_retrieval.joint_map`: columns
    panel, x, y, modality, pair, ...), coloured by ``color`` (e.g. "modality", "factor"),
    marker symbol by modality."""
    import plotly.express as px

    need = {"panel", "x", "y", "modality", "pair", color}
    if frame.empty or not need <= set(frame.columns):
        raise ValueError(f"joint_map_figure needs a non-empty frame with columns {sorted(need)}")
    fig = px.scatter(frame, x="x", y="y", color=color, symbol="modality", facet_col="panel",
                     hover_data=["pair"] + (["label"] if "label" in frame else []), template=TEMPLATE, title=title,
                     color_continuous_scale="Viridis")
    fig.update_traces(marker=dict(size=5, opacity=0.7))
    fig.update_xaxes(matches=None, showticklabels=False, title_text="")
    fig.update_yaxes(matches=None, showticklabels=False, title_text="")
    fig.update_layout(height=420)
    return fig

# ------------------------------------------------------------------------ nbkit sweep
def sweep_figure(frame: pd.DataFrame, names: Sequence[str], metric: str, title: str = ""):
    """The grid of a sweep (tidy: one row per trial, seed, metric): ``metric`` (mean ± std
    over seeds) against the first swept setting, one line per combination of the others;
    with exactly two settings also a heatmap of the mean beside it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(names)
    if not names or any(n not in frame.columns for n in names):
        raise ValueError(f"names {names} must be columns of the sweep frame {list(frame.columns)}")
    f = frame[frame.metric == metric]
    if f.empty:
        raise ValueError(f"metric {metric!r} is not in the sweep; it has {sorted(frame.metric.unique())}")
    agg = f.groupby(names, sort=False).value.agg(["mean", "std"]).reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    x, rest = names[0], names[1:]
    agg["_x"] = agg[x].astype(str)
    heat = len(names) == 2
    fig = make_subplots(rows=1, cols=2 if heat else 1, subplot_titles=(f"{metric} vs {x}", f"mean {metric}")
                        if heat else None, column_widths=[0.55, 0.45] if heat else None)
    groups = agg.groupby(rest, sort=False) if rest else [((), agg)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{n}={v}" for n, v in zip(rest, key)) or metric
        fig.add_trace(go.Scatter(x=g["_x"], y=g["mean"], error_y=dict(type="data", array=g["std"]),
                                 mode="lines+markers", name=label), row=1, col=1)
    if heat:
        piv = agg.pivot(index=names[1], columns=x, values="mean")
        fig.add_trace(go.Heatmap(z=piv.values, x=[str(c) for c in piv.columns], y=[str(i) for i in piv.index],
                                 colorscale="Viridis", colorbar=dict(title=metric, x=1.02), showscale=True,
                                 texttemplate="%{z:.3f}"), row=1, col=2)
        fig.update_xaxes(title_text=x, type="category", row=1, col=2)
        fig.update_yaxes(title_text=names[1], type="category", row=1, col=2)
    fig.update_xaxes(title_text=x, type="category", row=1, col=1)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(template=TEMPLATE, title=title, height=460)
    return fig


# ===================================================================================
# Notebooks 00-03, teaching (issue 13): side-by-side maps, a diagram, 3-D toy batches.


def _embedding_panels(panels: dict) -> list:
    """(title, xy [N, 2], color [N], colour name, categorical?) per panel, checked."""
    items = []
    for name, spec in panels.items():
        if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
            raise ValueError(f"panel {name!r} must be (xy, color) or (xy, color, color name), got {type(spec).__name__}")
        xy, color = np.asarray(spec[0], dtype=float), np.asarray(spec[1])
        cname = str(spec[2]) if len(spec) == 3 else "label"
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(color):
            raise ValueError(f"panel {name!r}: xy must be [N, 2] and color [N]; got {xy.shape} and {color.shape}")
        items.append((str(name), xy, color, cname, not np.issubdtype(color.dtype, np.floating)))
    return items


def _categorical_traces(fig, go, xy, color, cname, cats, palettes, shown: set, r: int, c: int) -> None:
    """One trace per category of one panel; a category's colour and legend entry are shared
    by every panel (``shown``: legend entries drawn so far)."""
    col_s = color.astype(str)
    pal = palettes[list(cats).index(cname) % len(palettes)]   # another colour name, other colours
    for v in cats[cname]:
        sel = col_s == v
        if not sel.any():
            continue
        key = (cname, v)
        fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=f"{cname}={v}",
                                 legendgroup=f"{cname}={v}", showlegend=key not in shown,
                                 marker=dict(size=4, opacity=0.75, color=pal[cats[cname].index(v) % len(pal)])),
                      row=r, col=c)
        shown.add(key)


def _continuous_trace(fig, go, xy, color, cname, r: int, c: int) -> None:
    """One panel coloured by a number, with its colour bar beside the panel."""
    xa = fig.get_subplot(r, c).xaxis.domain
    ya = fig.get_subplot(r, c).yaxis.domain
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=cname, showlegend=False,
                             marker=dict(size=4, opacity=0.8, color=color.astype(float), colorscale="Viridis",
                                         colorbar=dict(title=dict(text=cname, side="right"), x=xa[1] + 0.005,
                                                       xanchor="left", y=(ya[0] + ya[1]) / 2,
                                                       len=(ya[1] - ya[0]), thickness=10))),
                  row=r, col=c)


def embedding_grid_figure(panels: dict, cols: int = 2, title: str = "", panel_px: int = 340,
                          max_width: int = 980):
    """2-D maps side by side: ``panels = {panel title: (xy [N, 2], color [N], color name)}``
    (the name is optional, default "label"). Each panel is square (one unit on x is one
    unit on y). Categorical colours share one legend across panels ("name=value", the same
    colour for the same value everywhere); a continuous colour gets a colour bar next to
    its own panel. Panels shrink so the figure is at most ``max_width`` pixels wide."""
    from plotly.subplots import make_subplots
    import plotly.express as px

    go = _go()
    if not panels:
        raise ValueError("embedding_grid_figure needs at least one {title: (xy, color[, name])}")
    items = _embedding_panels(panels)
    cols = max(1, min(int(cols), len(items)))
    rows = -(-len(items) // cols)
    px_ = int(min(panel_px, (max_width - 200) / cols))
    chars = max(14, px_ // 7)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_wrap(n, chars) for n, *_ in items],
                        horizontal_spacing=0.08, vertical_spacing=0.12 if rows > 1 else 0.05)
    palettes = [px.colors.qualitative.Plotly + px.colors.qualitative.Dark24, px.colors.qualitative.Dark2,
                px.colors.qualitative.Set1]
    cats = {}                                          # colour name -> ordered categories
    for _, _, color, cname, is_cat in items:
        if is_cat:
            seen = cats.setdefault(cname, [])
            for v in sorted({str(c) for c in color}, key=_natural):
                if v not in seen:
                    seen.append(v)
    shown = set()
    for k, (name, xy, color, cname, is_cat) in enumerate(items):
        r, c = k // cols + 1, k % cols + 1
        if is_cat:
            _categorical_traces(fig, go, xy, color, cname, cats, palettes, shown, r, c)
        else:
            _continuous_trace(fig, go, xy, color, cname, r, c)
        anchor = f"x{k + 1 if k else ''}"
        fig.update_yaxes(scaleanchor=anchor, scaleratio=1, constrain="domain", showticklabels=False, row=r, col=c)
        fig.update_xaxes(constrain="domain", showticklabels=False, row=r, col=c)
    fig.update_annotations(font_size=12)
    n_legend = sum(len(v) for v in cats.values())
    legend_rows = -(-n_legend // max(1, (cols * px_) // 90)) if n_legend else 0
    fig.update_layout(template=TEMPLATE, title=title, height=rows * px_ + 110 + 24 * legend_rows,
                      width=min(max_width, cols * px_ + 200),
                      legend=dict(itemsizing="constant", orientation="h", y=-0.02, yanchor="top", x=0),
                      margin=dict(t=90, l=20, r=20, b=20 + 24 * legend_rows))
    return fig


def diagram_figure(nodes: dict, edges: Sequence, title: str = "", width: int = 820, height: int = 320):
    """A box-and-arrow picture of a mechanism (what flows where), drawn with plotly so it
    lives in the notebook like every other figure. ``nodes = {name: (x, y)}`` (any units;
    the label is the name, "<br>" breaks lines); ``edges = [(from, to), (from, to, label),
    ...]``: an arrow from box to box with an optional label at its middle."""
    go = _go()
    if not nodes:
        raise ValueError("diagram_figure needs at least one node {name: (x, y)}")
    pos = {}
    for n, p in nodes.items():
        p = tuple(float(v) for v in p)
        if len(p) != 2 or not all(np.isfinite(p)):
            raise ValueError(f"node {n!r} must have a finite position (x, y), got {nodes[n]!r}")
        pos[n] = p
    fig = go.Figure()
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    x_range = [min(xs) - 0.12 * span_x, max(xs) + 0.12 * span_x]
    y_range = [min(ys) - 0.25 * span_y, max(ys) + 0.25 * span_y]
    top = 50 if title else 10
    px_x = (width - 20) / (x_range[1] - x_range[0])           # pixels per unit, for the arrows' standoff
    px_y = (height - top - 10) / (y_range[1] - y_range[0])

    def half_box(name):                                       # half width / height of a label's box (px)
        lines = str(name).split("<br>")
        return 3.6 * max(len(t) for t in lines) + 9, 8.5 * len(lines) + 9

    def standoff(name, dx, dy):                               # from the box centre to its border
        hw, hh = half_box(name)
        norm = (dx * dx + dy * dy) ** 0.5 or 1.0
        ux, uy = abs(dx) / norm, abs(dy) / norm
        return min(hw / ux if ux else 1e9, hh / uy if uy else 1e9) + 3

    for e in edges:
        if len(e) not in (2, 3) or e[0] not in pos or e[1] not in pos:
            raise ValueError(f"edge {e!r} must be (from, to[, label]) between known nodes {list(pos)}")
        (x0, y0), (x1, y1) = pos[e[0]], pos[e[1]]
        dx, dy = (x1 - x0) * px_x, (y1 - y0) * px_y
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#555",
                           standoff=standoff(e[1], dx, dy), startstandoff=standoff(e[0], dx, dy))
        if len(e) == 3 and e[2]:
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=str(e[2]), showarrow=False,
                               font=dict(size=11, color="#a33"), bgcolor="rgba(255,255,255,0.85)")
    for n, (x, y) in pos.items():
        fig.add_annotation(x=x, y=y, text=str(n), showarrow=False, font=dict(size=12), bgcolor="#eef3fb",
                           bordercolor="#4c72b0", borderwidth=1.5, borderpad=6)
    fig.update_xaxes(visible=False, range=x_range)
    fig.update_yaxes(visible=False, range=y_range)
    fig.update_layout(template=TEMPLATE, title=title, width=width, height=height, showlegend=False,
                      margin=dict(t=top, l=10, r=10, b=10))
    return fig


def scatter3d_grid_figure(clouds: dict, color=None, title: str = "", cols: int | None = None,
                          panel_px: int = 380, axis_names: Sequence[str] = ("dim 0", "dim 1", "dim 2")):
    """3-D point clouds side by side (``clouds = {panel title: [N, 3]}``), e.g. a toy batch
    before and after decorrelation; ``color``: one value per point (the same for every
    panel) or None."""
    from plotly.subplots import make_subplots

    go = _go()
    if not clouds:
        raise ValueError("scatter3d_grid_figure needs at least one {title: [N, 3] points}")
    names = list(clouds)
    cols = len(names) if cols is None else max(1, min(int(cols), len(names)))
    rows = -(-len(names) // cols)
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols] * rows,
                        subplot_titles=[str(n) for n in names], horizontal_spacing=0.02)
    for k, n in enumerate(names):
        p = np.asarray(clouds[n], dtype=float)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"cloud {n!r} must be [N, 3], got shape {p.shape}")
        c = None if color is None else np.asarray(color)
        if c is not None and len(c) != len(p):
            raise ValueError(f"color has {len(c)} values for {len(p)} points of cloud {n!r}")
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", showlegend=False,
                                   marker=dict(size=3, opacity=0.8, color=c, colorscale="Viridis")),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_scenes(xaxis_title=axis_names[0], yaxis_title=axis_names[1], zaxis_title=axis_names[2],
                      aspectmode="cube")
    fig.update_layout(template=TEMPLATE, title=title, height=rows * panel_px + 80, width=min(980, cols * panel_px + 40),
                      margin=dict(t=70, l=10, r=10, b=10))
    return fig
