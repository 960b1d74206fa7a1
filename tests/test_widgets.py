"""The lambda panel builds headless, retrains on a slider change, and redraws."""
import numpy as np
import pytest

from nbkit.experiments.nb02_decorrelation import make_data
from nbkit.widgets import PANEL_LAMBDAS, PANEL_MODEL, PANEL_TRAIN, lambda_panel


@pytest.fixture(scope="module")
def data():
    train, val, _ = make_data(n=700, dims=16, seed=1)
    return train, val


@pytest.fixture(scope="module")
def panel(data):
    train, val = data
    return lambda_panel(train, val, config=dict(PANEL_MODEL, d=16, hidden=32), train_config=dict(PANEL_TRAIN, epochs=3),
                        n_train=256, n_eval=200)


def test_panel_builds_headless_with_a_figure_and_metrics(panel):
    # the update ran once at build time with the defaults
    assert len(panel.history) == 1 and len(panel.latencies) == 1
    assert panel.lambdas == (1e-2, 1e-2)
    assert "update 1" in panel.metrics_text and "off-diagonal" in panel.metrics_text
    z = np.asarray(panel.figure.data[0].z)
    assert z.shape == (16, 16)                                 # d x d correlation of the shared space
    assert np.allclose(np.diag(z), 1.0, atol=1e-3) and np.allclose(z, z.T, atol=1e-5)
    assert panel.snapshot() is panel.figure


def test_dom_hooks_for_browser_tests(panel):
    assert panel.dec_slider.description == "lambda_dec" and "nbkit-lambda-dec" in panel.dec_slider._dom_classes
    assert panel.orth_slider.description == "lambda_orth" and "nbkit-lambda-orth" in panel.orth_slider._dom_classes
    assert "nbkit-panel-figure" in panel.fig_out._dom_classes
    assert "nbkit-panel-metrics" in panel.metrics_html._dom_classes
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()
    # log-scale positions that include 0
    labels = [lbl for lbl, _ in panel.dec_slider.options]
    assert labels[0] == "0" and [v for _, v in panel.dec_slider.options] == sorted(PANEL_LAMBDAS)


def test_slider_change_retrains_and_redraws(panel):
    text0, z0 = panel.metrics_text, np.asarray(panel.figure.data[0].z).copy()
    model0 = panel.model
    panel.dec_slider.value = 1.0                               # as a user would: fires the observer
    assert len(panel.history) == 2 and panel.model is not model0
    assert panel.metrics_text != text0 and "lambda_dec=1" in panel.metrics_text
    z1 = np.asarray(panel.figure.data[0].z)
    assert not np.allclose(z0, z1)
    # a strong decorrelation weight lowers the off-diagonal mass of the shared space
    assert panel.history[-1]["offdiag"] < panel.history[0]["offdiag"]
    # orthogonality weight: shared/private correlation falls
    m = panel.set(lambda_dec=0.0, lambda_orth=1.0)
    assert len(panel.history) == 3 and m["lambda_orth"] == 1.0
    assert m["orth"] < panel.history[0]["orth"]
    # same weights, same seed: same numbers (retrained from scratch, deterministic on CPU)
    again = panel.set(lambda_dec=1e-2, lambda_orth=1e-2)
    assert again["auc"] == pytest.approx(panel.history[0]["auc"]) and again["offdiag"] == pytest.approx(panel.history[0]["offdiag"])


def test_bad_arguments_are_named(data):
    train, val = data
    with pytest.raises(ValueError, match="config.lambda_dec must be one of the slider values"):
        lambda_panel(train, val, config=dict(PANEL_MODEL, lambda_dec=0.5))
    with pytest.raises(ValueError, match="n_train"):
        lambda_panel(train, val, n_train=10)
    with pytest.raises(TypeError, match="val must be a MultimodalDataset"):
        lambda_panel(train, val[:10])


def test_figure_container_holds_the_current_plotly_figure(panel):
    outs = panel.fig_out.outputs
    assert len(outs) == 1 and outs[0]["output_type"] == "display_data"
    spec = outs[0]["data"]["application/vnd.plotly.v1+json"]
    assert spec["data"][0]["type"] == "heatmap"
    assert spec["layout"]["title"]["text"] == panel.figure.layout.title.text
    ld, lo = panel.lambdas
    panel.set(lambda_dec=0.0 if ld else 1e-3)
    spec2 = panel.fig_out.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert spec2["layout"]["title"]["text"] != spec["layout"]["title"]["text"]
    assert spec2["data"][0]["z"] != spec["data"][0]["z"]
