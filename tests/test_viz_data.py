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
