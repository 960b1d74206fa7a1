"""Data-tour figures (nbkit.viz) and protocols (nbkit.experiments.nb00_data_tour)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nbkit import viz
from nbkit.data import drop_modalities, make_synthetic
from nbkit.experiments import nb00_data_tour as datatour


def test_image_grid_tiles_images_with_titles():
    imgs = np.arange(5 * 4 * 3, dtype=float).reshape(5, 12)
    fig = viz.image_grid_figure(imgs, titles=list("abcde"), ncols=3, image_shape=(4, 3), zmin=0, zmax=59)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 4 + 2, 3 * 3 + 2 * 2)                    # 2 rows x 3 cols of 4x3 tiles, gaps of 2 (1 px of title room < gap)
    assert np.array_equal(z[:4, 5:8], imgs[1].reshape(4, 3))       # second tile in place
    assert np.array_equal(z[6:10, 0:3], imgs[3].reshape(4, 3))     # fourth tile starts row two
    assert np.isnan(z[:, 3:5]).all() and np.isnan(z[6:, 10:]).all()  # gaps and the empty sixth tile
    assert [a.text for a in fig.layout.annotations] == list("abcde")
    big = viz.image_grid_figure(np.zeros((4, 28, 28)), titles=list("abcd"), ncols=2)
    assert np.asarray(big.data[0].z).shape == (2 * 28 + 7, 2 * 28 + 2)  # a quarter tile of room for titles
    with pytest.raises(ValueError, match="image_shape"):
        viz.image_grid_figure(imgs, image_shape=(5, 5))
    with pytest.raises(ValueError, match="titles"):
        viz.image_grid_figure(imgs.reshape(5, 4, 3), titles=["x"])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        viz.image_grid_figure(np.zeros((0, 2, 2)))


def test_spectrogram_grid_puts_time_on_x_and_low_bands_at_the_bottom():
    f = np.zeros((2, 6, 4))           # [N, time, mel]
    f[0, 1, 0] = 1.0                  # first clip: frame 1, lowest band
    fig = viz.spectrogram_grid_figure(f, titles=["a", "b"], ncols=2)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 6 * 2 + 2)
    assert z[3, 1] == 1.0 and np.nansum(z) == 1.0                  # bottom row, second column
    with pytest.raises(ValueError, match="time, mel"):
        viz.spectrogram_grid_figure(np.zeros((3, 4)))


def test_mask_figure_shows_present_masks_side_by_side():
    ds = make_synthetic(n=60, seed=0)
    masks = {f"p={p}": drop_modalities(ds, p, seed=1).present.numpy() for p in (0.0, 0.5)}
    fig = viz.mask_figure(masks, ds.modalities, n_show=20)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (20, 2 + 1 + 2)
    assert (z[:, :2] == 1).all() and np.isnan(z[:, 2]).all()
    assert np.array_equal(z[:, 3:], masks["p=0.5"][:20].astype(float))
    assert list(fig.data[0].x)[3] == "p=0.5 · m1"
    with pytest.raises(ValueError, match="one column per modality"):
        viz.mask_figure({"bad": np.ones((5, 3), bool)}, ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        viz.mask_figure({}, ["a"])


def test_unimodal_accuracy_sees_the_stronger_modality():
    ds = make_synthetic(n=600, snr=(8.0, 0.05), names=("strong", "weak"), seed=0)
    df = datatour.unimodal_accuracy({"syn": ds}, seeds=[0], train_config={"epochs": 8}, progress=False)
    assert list(df.columns[:3]) == ["dataset", "modality", "seed"] and len(df) == 2
    acc = df.set_index("modality").acc
    assert acc["strong"] > acc["weak"] + 0.1
    assert acc["strong"] > df.chance.iloc[0] + 0.2
    dom = datatour.dominance(df).iloc[0]
    assert dom.stronger == "strong" and dom.weaker == "weak" and abs(dom.gap - (acc["strong"] - acc["weak"])) < 1e-12
    with pytest.raises(ValueError, match="dominance"):
        datatour.dominance(df.drop(columns="acc"))
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        datatour.unimodal_accuracy({"syn": ds}, train_config={"epochs": 0})
    with pytest.raises(ValueError, match="seeds"):
        datatour.unimodal_accuracy({"syn": ds}, seeds=[])


def test_factor_dependence_label_reads_from_shared_only():
    ds = make_synthetic(n=800, seed=0)
    t = datatour.factor_dependence(ds).set_index("representation").score
    assert t["shared"] > 0.8
    assert t["private/m1"] < 0.5 and t["private/m2"] < 0.5
    bad = ds._like(ds.x, ds.present, factors={})
    with pytest.raises(KeyError, match="shared"):
        datatour.factor_dependence(bad)


def test_raw_projection_and_missing_summary():
    ds = make_synthetic(n=120, dims=(8, 20), seed=0)
    p = datatour.raw_projection(ds, method="pca", n=50, seed=0)
    assert p["m1"].shape == (50, 2) and p["m2"].shape == (50, 2) and len(np.unique(p["index"])) == 50
    with pytest.raises(ValueError, match="n must"):
        datatour.raw_projection(ds, n=2)
    present = np.array([[1, 1], [1, 0], [0, 1], [1, 1]], bool)
    s = datatour.missing_summary({"x": present}, ["a", "b"]).iloc[0]
    assert s["missing a"] == 0.25 and s["missing b"] == 0.25 and s["all present"] == 0.5 and s["none present"] == 0.0


def test_audio_table_embeds_each_wav_with_its_attributes(tmp_path):
    import base64

    import pandas as pd

    from nbkit.data.avdigits import examples_frame

    ex = examples_frame()
    assert len(ex) == 20 and list(ex.columns) == ["index", "digit", "word", "voice", "gender", "speed", "pitch", "path"]
    html = viz.audio_table(ex.head(2)).data
    assert html.count("<audio") == 2 and "en-" in html
    assert base64.b64encode(open(ex.path[0], "rb").read()).decode() in html
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        viz.audio_table(pd.DataFrame({"path": [str(tmp_path / "nope.wav")]}))
    with pytest.raises(ValueError, match="path"):
        viz.audio_table(pd.DataFrame({"x": [1]}))


# ------------------------------------------------- notebooks 00-03 teaching (issue 13)
def test_neighbour_agreement_known_answers():
    from nbkit.evaluate import neighbour_agreement

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100]])
    lab = np.repeat([0, 1, 2], 30)
    xy = centres[lab] + rng.normal(size=(90, 2))
    a = neighbour_agreement(xy, lab, k=5)
    assert a["kind"] == "purity" and a["score"] == 1.0                  # far-apart clusters: every neighbour agrees
    assert a["chance"] == pytest.approx(3 * (1 / 3) ** 2)               # sum of squared class frequencies
    shuffled = neighbour_agreement(xy, rng.permutation(lab), k=5)
    assert abs(shuffled["score"] - shuffled["chance"]) < 0.1            # a map that ignores the label
    # hand count on 4 points on a line, k=1: each point's nearest neighbour
    line = np.array([[0.0, 0], [1, 0], [10, 0], [11, 0]])
    assert neighbour_agreement(line, ["a", "a", "b", "a"], k=1)["score"] == pytest.approx(0.5)
    cont = neighbour_agreement(xy, xy[:, 0])                            # a value that the map orders perfectly
    assert cont["kind"] == "correlation" and cont["score"] > 0.99 and cont["chance"] == 0.0
    with pytest.raises(ValueError, match="k must be smaller"):
        neighbour_agreement(line, [0, 0, 1, 1], k=4)
    with pytest.raises(ValueError, match=r"xy must be \[N, d\]"):
        neighbour_agreement(line, [0, 1])
    with pytest.raises(ValueError, match="not constant"):
        neighbour_agreement(line, np.ones(4), k=1)


def test_embedding_figures_are_square_and_grids_share_legends():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(40, 2))
    single = viz.embedding_figure(xy, np.arange(40) % 3)
    assert single.layout.yaxis.scaleanchor == "x"
    panels = {"a by digit": (xy, np.arange(40) % 3, "digit"), "b by digit": (xy * 2, np.arange(40) % 3, "digit"),
              "c by value": (xy, xy[:, 0], "value")}
    fig = viz.embedding_grid_figure(panels, cols=3)
    cat = [t for t in fig.data if t.legendgroup]
    assert len(cat) == 6 and sum(bool(t.showlegend) for t in cat) == 3  # one legend entry per digit, not per panel
    assert {t.marker.color for t in cat if t.name == "digit=1"} .__len__() == 1   # the same colour in every panel
    cont = [t for t in fig.data if not t.legendgroup]
    assert len(cont) == 1 and cont[0].marker.colorbar.title.text == "value"
    assert fig.layout.yaxis2.scaleanchor == "x2" and fig.layout.width <= 980
    with pytest.raises(ValueError, match="panel 'x'"):
        viz.embedding_grid_figure({"x": (xy, np.arange(39))})
    with pytest.raises(ValueError, match="at least one"):
        viz.embedding_grid_figure({})


def test_diagram_and_scatter3d_figures():
    fig = viz.diagram_figure({"a": (0, 0), "b<br>two lines": (1, 0), "c": (1, 1)},
                             [("a", "b<br>two lines", "label"), ("b<br>two lines", "c")], title="t")
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    boxes = [a for a in fig.layout.annotations if not a.showarrow and a.bordercolor]
    assert len(arrows) == 2 and len(boxes) == 3
    assert any(a.text == "label" for a in fig.layout.annotations)
    assert all(a.standoff > 0 and a.startstandoff > 0 for a in arrows)   # arrows stop at the boxes' borders
    with pytest.raises(ValueError, match="between known nodes"):
        viz.diagram_figure({"a": (0, 0)}, [("a", "z")])
    with pytest.raises(ValueError, match="finite position"):
        viz.diagram_figure({"a": (0, float("nan"))}, [])
    pts = np.random.default_rng(0).normal(size=(20, 3))
    f3 = viz.scatter3d_grid_figure({"x": pts, "y": pts * 2}, color=pts[:, 0])
    assert [t.type for t in f3.data] == ["scatter3d", "scatter3d"] and np.allclose(f3.data[1].x, pts[:, 0] * 2)
    assert f3.layout.scene2 is not None
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        viz.scatter3d_grid_figure({"x": pts[:, :2]})
    with pytest.raises(ValueError, match="color has 3 values"):
        viz.scatter3d_grid_figure({"x": pts}, color=[1, 2, 3])


def test_heatmap_grid_fits_the_page_and_wraps_titles():
    mats = {f"after training (lambda_dec={a}, lambda_orth={b})": np.eye(4) for a, b in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 2)]}
    fig = viz.heatmap_grid_figure(mats, cols=5, height_per_row=260)
    assert fig.layout.width <= 960                                       # five panels no longer run off the page
    assert all("<br>" in a.text for a in fig.layout.annotations)          # long titles wrapped to the panel
    assert sum(bool(t.showscale) for t in fig.data) == 1                  # one colour bar: one scale for all


def test_lambda_grid_panels_each_have_their_own_colour_bar():
    import pandas as pd

    rows = [{"lambda_dec": a, "lambda_orth": b, "seed": s, "auc": 0.9 + 0.01 * a + s * 0.001, "offdiag": 0.1 - 0.05 * a}
            for a in (0.0, 1.0) for b in (0.0, 1.0) for s in (0, 1)]
    fig = viz.lambda_grid_figure(pd.DataFrame(rows), metrics=("auc", "offdiag"), cols=2)
    assert all(t.showscale for t in fig.data)
    xs = [t.colorbar.x for t in fig.data]
    assert xs[0] < xs[1]                                                  # each bar next to its own panel
    z = np.asarray(fig.data[0].z)                                         # rows lambda_dec 0, 1; mean over seeds
    assert z[1, 0] == pytest.approx(0.9 + 0.01 + 0.0005)
    assert [a.text for a in fig.layout.annotations] == [viz.METRIC_LABELS["auc"], viz.METRIC_LABELS["offdiag"]]


def test_history_and_curve_figures_on_a_log_axis():
    import pandas as pd

    from nbkit.train import History

    h = History()
    for e, (a, b) in enumerate([(1.0, 0.01), (0.5, 0.02)]):
        h.log(e, e, "train", {"loss/task": a, "loss/dec": b})
    fig = viz.history_figure(h, metrics=["loss/task", "loss/dec"], split="train", log_y=True, title="terms")
    assert fig.layout.yaxis.type == "log" and fig.layout.title.text == "terms"
    df = pd.DataFrame({"epoch": [0, 0, 1, 1], "ratio": [0.01, 0.5, 0.2, 0.3], "v": ["a"] * 4})
    c = viz.curve_figure(df, x="epoch", y="ratio", color="v", log_y=True)
    band = c.data[0]
    assert c.layout.yaxis.type == "log" and min(band.y) > 0               # the std band never dips below 0 on a log axis


def test_keep_one_rates_match_drop_modalities():
    ds = make_synthetic(n=20000, n_modalities=3, dims=2, seed=0)
    for p in (0.3, 0.9):
        present = drop_modalities(ds, p, seed=1).present.float()
        th = datatour.keep_one_rates(p, 3)
        assert (1 - present.mean(0)).numpy() == pytest.approx([th["missing"]] * 3, abs=0.012)
        assert present.all(1).float().mean().item() == pytest.approx(th["all present"], abs=0.012)
        assert (present.sum(1) == 1).float().mean().item() == pytest.approx(th["one present"], abs=0.012)
    two = datatour.keep_one_rates(0.6)
    assert two["missing"] == pytest.approx(0.6 - 0.18) and two["all present"] == pytest.approx(0.16)
    assert datatour.keep_one_rates(1.0)["missing"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="p must be"):
        datatour.keep_one_rates(1.5)


def test_data_tour_readings_quote_the_numbers():
    import pandas as pd

    acc = pd.DataFrame([dict(dataset=d, modality=m, seed=s, acc=a, chance=0.1)
                        for d, m, a in [("clean", "image", 0.8), ("clean", "audio", 0.9), ("noisy", "image", 0.5),
                                        ("noisy", "audio", 0.9), ("seq", "audio", 0.85)] for s in (0, 1)])
    text = datatour.read_dominance(acc, clean="clean", noisy="noisy", sequence="seq")
    assert "audio alone reaches 0.900" in text and "gap widens (+0.100 -> +0.400)" in text and "0.850, lower" in text
    with pytest.raises(KeyError, match="dataset 'nope'"):
        datatour.read_dominance(acc, clean="nope")
    summ = datatour.missing_summary({"p=0.5": np.array([[1, 1], [1, 0], [0, 1], [1, 1]], bool)}, ["a", "b"])
    assert "25.0% miss a" in datatour.read_missing(summ, [0.5], ["a", "b"]) and "37.5%" in datatour.read_missing(summ, [0.5], ["a", "b"])
    table, text = datatour.describe_maps({"m": (np.array([[0, 0], [0, 1], [9, 9], [9, 8]]), [0, 0, 1, 1], "c")}, k=1)
    assert table.score.item() == 1.0 and "share its c in 100% of cases (chance 50%): strongly" in text
