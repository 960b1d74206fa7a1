"""ipywidgets panels.

`lambda_panel` : two log-scale sliders (lambda_dec, lambda_orth, both including 0) that
RETRAIN a small DSRSD-Net from scratch and redraw its shared-space correlation heatmap and
metrics. Our choice of "small" (so an update stays well under 2 s on a 2-core CPU; see
benchmarks/bench_lambda_panel.py): ``n_train=400`` training samples, `PANEL_TRAIN` (6 epochs,
batch 64, one CPU thread) and `PANEL_MODEL` (d=32), scored on ``n_eval=400`` validation samples. Retraining from scratch
(not warm-starting) keeps the picture honest: what you see is caused by the two weights alone.

Headless (papermill, tests) the panel runs its update once with the defaults at build time,
so ``panel.figure`` (a plotly figure) and ``panel.metrics_text`` exist without a browser;
the notebook shows ``panel.snapshot()`` after the live panel so the executed notebook keeps
the figure. DOM hooks for browser tests: sliders carry CSS classes ``nbkit-lambda-dec`` /
``nbkit-lambda-orth`` (descriptions "lambda_dec" / "lambda_orth"), the figure's Output
``nbkit-panel-figure``, the metrics HTML ``nbkit-panel-metrics``, the whole box ``nbkit-panel``.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

__all__ = ["PANEL_LAMBDAS", "PANEL_MODEL", "PANEL_TRAIN", "LambdaPanel", "lambda_panel"]

# slider positions: 0 plus a log grid (ours)
PANEL_LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
# ours: the small model and short schedule that keep an update well under 2 s on a 2-core CPU
PANEL_MODEL = dict(d=32, hidden=64, lambda_dec=1e-2, lambda_orth=1e-2)
PANEL_TRAIN = dict(epochs=6, batch_size=64, lr=1e-3, monitor="auc", progress=False)


def _label(v: float) -> str:
    return "0" if v == 0 else f"{v:g}"


def _plotly_output(fig) -> dict:
    """A display_data output carrying ``fig`` in plotly's own mimetype (rendered by the
    jupyterlab-plotly extension that ships with plotly), plus a text fallback."""
    import json

    import plotly.io as pio

    spec = json.loads(pio.to_json(fig, validate=False))
    spec["config"] = {"displaylogo": False, "responsive": True}
    title = (fig.layout.title.text or "figure") if fig.layout.title else "figure"
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.plotly.v1+json": spec, "text/plain": f"<plotly figure: {title}>"}}


class LambdaPanel:
    """The lambda panel; build it with `lambda_panel`. ``update()`` retrains and redraws;
    ``latencies`` holds the wall time (s) of every update."""

    def __init__(self, train, val, config=None, train_config=None, values: Sequence[float] = PANEL_LAMBDAS,
                 n_train: int = 400, n_eval: int = 400, seed: int = 0):
        import ipywidgets as widgets

        from ._checks import check_int
        from .data.batch import MultimodalDataset
        from .experiments import as_config, as_train_config
        from .models.dsrsd import DSRSD

        for name, ds in (("train", train), ("val", val)):
            if not isinstance(ds, MultimodalDataset):
                raise TypeError(f"{name} must be a MultimodalDataset, got {type(ds).__name__}")
        values = sorted(float(v) for v in values)
        if len(values) < 2 or values[0] < 0 or not all(np.isfinite(values)):
            raise ValueError(f"values must hold >= 2 finite weights >= 0, got {values}")
        self.config = as_config(DSRSD, PANEL_MODEL if config is None else config)
        self.train_config = as_train_config(PANEL_TRAIN if train_config is None else train_config)
        lambda_dec, lambda_orth = self.config.lambda_dec, self.config.lambda_orth
        for name, v in (("lambda_dec", lambda_dec), ("lambda_orth", lambda_orth)):
            if float(v) not in values:
                raise ValueError(f"config.{name} must be one of the slider values {values}, got {v}")
        bs = self.train_config.batch_size
        if check_int("n_train", n_train, 1) < 2 * bs:
            raise ValueError(f"n_train must be >= 2 x batch_size ({2 * bs}), got {n_train}")
        if check_int("n_eval", n_eval, 1) < 10:
            raise ValueError(f"n_eval must be an integer >= 10, got {n_eval}")
        self.seed = check_int("seed", seed)
        g = torch.Generator().manual_seed(self.seed)
        self.train = train.subset(torch.randperm(len(train), generator=g)[: int(n_train)].sort().values)
        self.val = val.subset(torch.arange(min(int(n_eval), len(val))))
        self.latencies: list[float] = []
        self.history: list[dict] = []
        self.figure = None
        self.model = None

        opts = [(_label(v), v) for v in values]
        self.dec_slider = widgets.SelectionSlider(options=opts, value=float(lambda_dec), description="lambda_dec",
                                                  continuous_update=False, layout=widgets.Layout(width="420px"))
        self.orth_slider = widgets.SelectionSlider(options=opts, value=float(lambda_orth), description="lambda_orth",
                                                   continuous_update=False, layout=widgets.Layout(width="420px"))
        self.dec_slider.add_class("nbkit-lambda-dec")
        self.orth_slider.add_class("nbkit-lambda-orth")
        self.metrics_html = widgets.HTML(value="")
        self.metrics_html.add_class("nbkit-panel-metrics")
        self.fig_out = widgets.Output(layout=widgets.Layout(min_height="440px"))
        self.fig_out.add_class("nbkit-panel-figure")
        self.widget = widgets.VBox([widgets.HBox([self.dec_slider, self.orth_slider]), self.metrics_html, self.fig_out])
        self.widget.add_class("nbkit-panel")
        self.dec_slider.observe(self._on_change, names="value")
        self.orth_slider.observe(self._on_change, names="value")
        self.update()                      # headless-safe: the defaults are drawn once at build time

    # ----------------------------------------------------------------------- update
    @property
    def lambdas(self) -> tuple[float, float]:
        return float(self.dec_slider.value), float(self.orth_slider.value)

    def _on_change(self, change) -> None:
        self.update()

    def set(self, lambda_dec: float | None = None, lambda_orth: float | None = None) -> dict:
        """Move the sliders programmatically (one retrain per call) and return the metrics."""
        self.dec_slider.unobserve(self._on_change, names="value")
        self.orth_slider.unobserve(self._on_change, names="value")
        try:
            if lambda_dec is not None:
                self.dec_slider.value = float(lambda_dec)
            if lambda_orth is not None:
                self.orth_slider.value = float(lambda_orth)
        finally:
            self.dec_slider.observe(self._on_change, names="value")
            self.orth_slider.observe(self._on_change, names="value")
        return self.update()

    def update(self) -> dict:
        """Retrain a small DSRSD at the sliders' weights, redraw heatmap and metrics."""
        t0 = time.perf_counter()
        met = self._retrain_and_draw()
        dt = time.perf_counter() - t0
        ld, lo = self.lambdas
        self.latencies.append(dt)
        met.update(lambda_dec=ld, lambda_orth=lo, latency_s=dt, update=len(self.history) + 1)
        self.history.append(met)
        self.metrics_html.value = (
            f"<b>update {met['update']}</b> &nbsp; lambda_dec={_label(ld)}, lambda_orth={_label(lo)} &nbsp;|&nbsp; "
            f"val AUC {met['auc']:.3f}, acc {met['acc']:.3f} &nbsp;|&nbsp; off-diagonal mass {met['offdiag']:.4f}"
            f" &nbsp;|&nbsp; L_orth {met['orth']:.4f} &nbsp;|&nbsp; retrain + redraw {dt:.2f} s"
        )
        return met

    def _retrain_and_draw(self) -> dict:
        from .evaluate import classification_metrics, collect, shared_correlation, shared_matrix
        from .experiments import as_config, fit
        from .losses import decorrelation, orthogonality
        from .models.dsrsd import DSRSD
        from .viz import heatmap_figure

        ld, lo = self.lambdas
        self.model, _ = fit(DSRSD, self.train, None, seed=self.seed, train_config=self.train_config,
                            config=as_config(DSRSD, self.config, lambda_dec=ld, lambda_orth=lo))
        res = collect(self.model, self.val)
        met = classification_metrics(res["logits"], res["y"])
        C = shared_correlation(res)
        met["offdiag"] = float(decorrelation(shared_matrix(res)))
        pres = res["present"]
        met["orth"] = float(sum(orthogonality(res["shared"][m][pres[:, i]], res["private"][m][pres[:, i]])
                                for i, m in enumerate(res["shared"])))
        fig = heatmap_figure(C, zmin=-1, zmax=1, title=(f"shared-space correlation  (lambda_dec={_label(ld)}, "
                                                        f"lambda_orth={_label(lo)})"))
        fig.update_layout(height=440, width=520, xaxis_showticklabels=False, yaxis_showticklabels=False)
        self.figure = fig
        # one assignment of the Output widget's state (no output capture, no clear_output
        # round trip): robust under papermill/nbclient, and the same message in a live kernel
        self.fig_out.outputs = (_plotly_output(fig),)
        return met

    @property
    def metrics_text(self) -> str:
        return self.metrics_html.value

    def snapshot(self):
        """The current figure (a static plotly figure: what the executed notebook keeps)."""
        return self.figure

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def lambda_panel(train, val, **kwargs) -> LambdaPanel:
    """Build the lambda panel (see `LambdaPanel` and the module docstring); display it by
    putting it last in a cell."""
    return LambdaPanel(train, val, **kwargs)
