"""Figures, each a function of tidy data (frames, arrays): plotly for interactive figures.

Every figure a notebook shows comes from here, and tests call each function.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["history_figure", "embedding_figure", "heatmap_figure", "bar_figure", "curve_figure",
           "summary_table"]

TEMPLATE = "plotly_white"


def _go():
    import plotly.graph_objects as go
    return go


def history_figure(history, metrics: Sequence[str] = ("loss",), split: str | Sequence[str] = ("train", "val"),
                   by: str = "epoch", title: str = "Training curves"):
    """Lines of each metric over epochs (or steps) for each split; one colour per metric."""
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
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=by, height=380)
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
    fig.update_layout(height=420, xaxis_title="", yaxis_title="")
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


def bar_figure(df: pd.DataFrame, x: str, y: str, color: str | None = None, title: str = "", error: str | None = "auto"):
    """Mean +- std bars over seeds: ``df`` has one row per (x, color, seed)."""
    import plotly.express as px

    if df.empty:
        raise ValueError("bar_figure got an empty frame")
    keys = [x] + ([color] if color else [])
    agg = df.groupby(keys, sort=False)[y].agg(["mean", "std", "count"]).reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    fig = px.bar(agg, x=x, y="mean", color=color, barmode="group", error_y="std" if error else None,
                 template=TEMPLATE, title=title, hover_data=["count"])
    fig.update_layout(yaxis_title=y, height=400)
    return fig


def curve_figure(df: pd.DataFrame, x: str, y: str, color: str, title: str = "", band: bool = True):
    """Mean curve per ``color`` group over ``x`` with a +-std band across seeds."""
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
            fig.add_scatter(x=list(a[x]) + list(a[x][::-1]), y=list(a["mean"] + a["std"]) + list((a["mean"] - a["std"])[::-1]),
                            fill="toself", line=dict(width=0), fillcolor=col, opacity=0.15, showlegend=False,
                            hoverinfo="skip")
        fig.add_scatter(x=a[x], y=a["mean"], mode="lines+markers", name=str(name), line=dict(color=col))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=x, yaxis_title=y, height=400)
    return fig


def summary_table(df: pd.DataFrame, by: Sequence[str] | str, values: Sequence[str] | str, digits: int = 3) -> pd.DataFrame:
    """mean +- std (n) per group, as strings ready to display."""
    by = [by] if isinstance(by, str) else list(by)
    values = [values] if isinstance(values, str) else list(values)
    g = df.groupby(by, sort=False)[values]
    mean, std, n = g.mean(), g.std().fillna(0.0), g.count()
    out = mean.copy().astype(object)
    for v in values:
        out[v] = [f"{a:.{digits}f} ± {s:.{digits}f} (n={k})" for a, s, k in zip(mean[v], std[v], n[v])]
    return out.reset_index()
