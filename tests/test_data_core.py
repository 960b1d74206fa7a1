import numpy as np
import pytest
import torch

from nbkit.data import Batch, MultimodalDataset, add_noise, drop_modalities, make_synthetic


def small(n=40):
    g = torch.Generator().manual_seed(0)
    return MultimodalDataset({"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 2, 5, generator=g)},
                             torch.arange(n) % 4, factors={"f": torch.arange(n).float()})


# ---------------------------------------------------------------- Batch / dataset
def test_batch_validates_shapes():
    with pytest.raises(ValueError, match=r"x\['b'\] has 3 rows"):
        Batch({"a": torch.zeros(4, 2), "b": torch.zeros(3, 2)}, torch.ones(4, 2, dtype=torch.bool), torch.zeros(4))
    with pytest.raises(ValueError, match="present must be a bool tensor"):
        Batch({"a": torch.zeros(4, 2)}, torch.ones(4, 2, dtype=torch.bool), torch.zeros(4))
    with pytest.raises(ValueError, match="non-empty dict"):
        Batch({}, torch.ones(4, 0, dtype=torch.bool), torch.zeros(4))


def test_batch_mask_and_unknown_modality():
    b = small()[:5]
    assert b.mask("b").all() and b.modalities == ("a", "b")
    with pytest.raises(KeyError, match="unknown modality 'c'"):
        b.mask("c")


def test_dataset_bad_input_is_named():
    with pytest.raises(ValueError, match=r"x\['a'\] must be finite, got 1 NaN"):
        MultimodalDataset({"a": torch.tensor([[0.0], [float("nan")]])}, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"got 0 NaN and 1 inf"):
        MultimodalDataset({"a": torch.tensor([[0.0], [float("inf")]])}, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"x\['a'\] has 3 samples but y has 2"):
        MultimodalDataset({"a": torch.zeros(3, 2)}, torch.zeros(2).long())
    with pytest.raises(ValueError, match=r"x\['a'\] must have shape \[N, D\]"):
        MultimodalDataset({"a": torch.zeros(3)}, torch.zeros(3).long())
    with pytest.raises(ValueError, match="is empty"):
        MultimodalDataset({"a": torch.zeros(3, 0)}, torch.zeros(3).long())
    with pytest.raises(ValueError, match="non-empty dict"):
        MultimodalDataset({}, torch.zeros(3).long())
    with pytest.raises(KeyError, match="unknown or empty modalities"):
        small().select(["zz"])


def test_batches_cover_every_sample_once():
    ds = small(37)
    seen = torch.cat([b.factors["f"] for b in ds.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == list(range(37))
    assert sum(len(b) for b in ds.batches(8, drop_last=True)) == 32
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        next(ds.batches(0))


def test_split_is_deterministic_disjoint_and_stratified():
    ds = make_synthetic(n=1000, seed=3)
    a = ds.split(seed=7)
    b = ds.split(seed=7)
    c = ds.split(seed=8)
    ids = [set(p.factors["shared"][:, 0].tolist()) for p in a]
    assert sum(len(p) for p in a) == 1000
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert all(torch.equal(p.y, q.y) and torch.equal(p.x["m1"], q.x["m1"]) for p, q in zip(a, b))
    assert not torch.equal(a[0].x["m1"], c[0].x["m1"])
    full = torch.bincount(ds.y, minlength=4).float() / len(ds)
    for part in a:
        frac = torch.bincount(part.y, minlength=4).float() / len(part)
        assert torch.allclose(frac, full, atol=0.02)
    with pytest.raises(ValueError, match="fractions"):
        ds.split((0.5, 0.6))


# ---------------------------------------------------------------- synthetic
def test_synthetic_structure_label_depends_on_shared_only():
    from sklearn.linear_model import LogisticRegression

    ds = make_synthetic(n=3000, n_modalities=3, k_shared=3, k_private=5, seed=0)
    assert ds.modalities == ("m1", "m2", "m3")
    assert set(ds.factors) == {"shared", "private/m1", "private/m2", "private/m3"}
    zs, zp = ds.factors["shared"].numpy(), ds.factors["private/m1"].numpy()
    y = ds.y.numpy()
    acc_s = LogisticRegression(max_iter=500).fit(zs[:2000], y[:2000]).score(zs[2000:], y[2000:])
    acc_p = LogisticRegression(max_iter=500).fit(zp[:2000], y[:2000]).score(zp[2000:], y[2000:])
    assert acc_s > 0.9                     # y is a function of the shared factors
    assert acc_p < 1 / 4 + 0.15 + 0.1      # private factors carry no label information


def test_synthetic_snr_controls_which_modality_dominates():
    from sklearn.linear_model import LogisticRegression

    ds = make_synthetic(n=3000, snr=[8.0, 0.2], seed=1)
    y = ds.y.numpy()
    accs = {m: LogisticRegression(max_iter=300).fit(ds.x[m][:2000].numpy(), y[:2000]).score(ds.x[m][2000:].numpy(), y[2000:])
            for m in ds.modalities}
    assert accs["m1"] > accs["m2"] + 0.15


def test_synthetic_seed_sequence_and_errors():
    a, b = make_synthetic(n=50, seed=5), make_synthetic(n=50, seed=5)
    assert torch.equal(a.x["m1"], b.x["m1"]) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x["m1"], make_synthetic(n=50, seed=6).x["m1"])
    s = make_synthetic(n=20, seq_len=7, dims=[5, 9], seed=0)
    assert s.x["m1"].shape == (20, 7, 5) and s.x["m2"].shape == (20, 7, 9)
    assert not torch.allclose(s.x["m1"][:, 0], s.x["m1"][:, 3])   # time steps differ
    with pytest.raises(ValueError, match="n_modalities must be an integer >= 2, got 1"):
        make_synthetic(n_modalities=1)
    with pytest.raises(ValueError, match=r"snr\[1\] must be a number \(inf allowed\) > 0"):
        make_synthetic(snr=[1.0, -1.0])
    with pytest.raises(ValueError, match="dims must be"):
        make_synthetic(dims=[3, 4, 5])


# ---------------------------------------------------------------- corruption
def test_drop_modalities_rate_zeros_and_keep_one():
    ds = make_synthetic(n=4000, seed=0)
    d = drop_modalities(ds, 0.3, seed=1, keep_one=False)
    rate = 1 - d.present.float().mean(0)
    assert torch.allclose(rate, torch.tensor([0.3, 0.3]), atol=0.03)
    for i, m in enumerate(d.modalities):
        gone = ~d.present[:, i]
        assert (d.x[m][gone] == 0).all() and torch.equal(d.x[m][~gone], ds.x[m][~gone])
    k = drop_modalities(ds, 1.0, seed=1, keep_one=True)
    assert k.present.sum(1).eq(1).all()                  # everyone keeps exactly one
    assert ds.present.all()                               # input untouched
    only = drop_modalities(ds, {"m2": 1.0}, seed=0)
    assert only.present[:, 0].all() and not only.present[:, 1].any()
    assert torch.equal(drop_modalities(ds, 0.5, seed=4).present, drop_modalities(ds, 0.5, seed=4).present)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_drop_modalities_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be a finite number >= 0 and <= 1"):
        drop_modalities(small(), p)


def test_drop_modalities_unknown_modality():
    with pytest.raises(KeyError, match="unknown modalities"):
        drop_modalities(small(), {"zz": 0.5})
    with pytest.raises(KeyError, match="non-empty subset"):
        drop_modalities(small(), 0.5, modalities=["zz"])


def test_add_noise_level_scales_with_feature_std_and_per_sample():
    ds = make_synthetic(n=3000, seed=0)
    noisy = add_noise(ds, {"m1": 0.5}, seed=2)
    diff = noisy.x["m1"] - ds.x["m1"]
    ratio = diff.std(0) / ds.x["m1"].std(0)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5), atol=0.05)
    assert torch.equal(noisy.x["m2"], ds.x["m2"])
    lv = torch.zeros(3000)
    lv[:1500] = 1.0
    ps = add_noise(ds, lv, seed=0, modalities="m2")
    assert torch.equal(ps.x["m2"][1500:], ds.x["m2"][1500:]) and not torch.equal(ps.x["m2"][:1500], ds.x["m2"][:1500])
    with pytest.raises(ValueError, match="level must be a finite number >= 0"):
        add_noise(ds, -1.0)
    missing = drop_modalities(ds, {"m1": 1.0}, seed=0)
    assert (add_noise(missing, 1.0).x["m1"] == 0).all()     # missing stays missing


def test_corruption_works_on_batches():
    b = make_synthetic(n=64, seed=0)[:32]
    d = drop_modalities(b, {"m1": 1.0})
    assert isinstance(d, Batch) and not d.mask("m1").any()


# ---------------------------------------------------------------- indexing and conversions (issue 14)
def test_subset_accepts_positions_masks_and_negative_indices_and_select_a_name():
    ds = small(10)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[2, 5]] = True
    assert ds.subset(mask).factors["f"].tolist() == [2.0, 5.0]
    assert ds.subset(np.array([-1, 0])).factors["f"].tolist() == [9.0, 0.0]
    assert ds.subset(range(3)).factors["f"].tolist() == [0.0, 1.0, 2.0]
    assert ds.select("b").modalities == ("b",)
    with pytest.raises(IndexError, match=r"idx must hold positions in \[-10, 9\], got values from 0 to 10"):
        ds.subset([0, 10])


def test_label_checks_respect_class_names_and_conversions_keep_values():
    ds = MultimodalDataset({"a": np.arange(12.0).reshape(4, 3)}, np.array([0, 2, 1, 2], dtype=np.int16),
                           class_names=["x", "y", "z"])
    assert ds.x["a"].dtype == torch.float32 and ds.x["a"][1].tolist() == [3.0, 4.0, 5.0]
    assert ds.y.dtype == torch.int64 and ds.n_classes == 3 and ds.y.tolist() == [0, 2, 1, 2]
    with pytest.raises(ValueError, match=r"y must hold class labels in 0..1 \(one per class name\), got labels from 0 to 2"):
        MultimodalDataset({"a": torch.zeros(4, 3)}, torch.tensor([0, 2, 1, 2]), class_names=["x", "y"])
    # rows with no modality may exist after corruption (keep_one=False) but never at construction
    d = drop_modalities(make_synthetic(n=50, seed=0), 1.0, keep_one=False)
    assert not d.present.any()
