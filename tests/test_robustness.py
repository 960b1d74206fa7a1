"""Robustness protocol (MultiBench style, docs/methods/dsrsd.md): curves over 11 levels, relative robustness
(area under the curve) and effective robustness (deviation from shifted late fusion)."""
import numpy as np
import pandas as pd
import pytest
import torch

from nbkit.data import drop_modalities, make_synthetic
from nbkit.evaluate import (ROBUSTNESS_LEVELS, classification_metrics, collect, effective_robustness,
                            relative_robustness, robustness_curve)
from nbkit.models import LateFusion, Unimodal
from nbkit.train import Trainer

P = np.asarray(ROBUSTNESS_LEVELS)
torch.set_num_threads(1)  # tiny models: a second thread only spins on a shared 2-core machine


def test_levels_are_the_eleven_multibench_levels():
    assert len(ROBUSTNESS_LEVELS) == 11
    assert np.allclose(P, np.linspace(0, 1, 11))


@pytest.mark.parametrize("curve, area", [
    (np.full(11, 0.8), 0.8),                    # flat: area = the clean value
    (1 - P, 0.5),                               # linear fall to 0: a triangle
    (P ** 2, 1 / 3 + 0.1 ** 2 / 6),             # trapezoid rule on x^2 over 10 steps: exact error h^2/6
    (np.where(P <= 0.5, 1.0, 0.0), 0.55),       # step: 0.5 + half of the 0.5->0.6 trapezoid
])
def test_relative_robustness_known_areas(curve, area):
    assert relative_robustness(curve) == pytest.approx(area, abs=1e-12)


def test_relative_robustness_uses_given_levels():
    assert relative_robustness([1.0, 1.0, 0.0], levels=[0.0, 0.5, 1.0]) == pytest.approx(0.75)
    assert relative_robustness([1.0, 0.0], levels=[0.0, 2.0]) == pytest.approx(1.0)


def test_effective_robustness_known_values():
    lf = 0.9 - 0.3 * P                                   # late fusion loses 0.3 over the range
    assert effective_robustness(lf, lf) == pytest.approx(0.0)
    # the same shape at a higher clean score: the shift removes the offset entirely
    assert effective_robustness(lf + 0.05, lf) == pytest.approx(0.0, abs=1e-12)
    # loses only half as fast: deviation 0.15 * p, summed over the levels (MultiBench) ...
    f = 0.95 - 0.15 * P
    assert effective_robustness(f, lf) == pytest.approx(0.15 * P.sum())
    assert effective_robustness(f, lf, reduce="mean") == pytest.approx(0.15 * P.mean())
    # ... and a model that falls faster than late fusion has negative effective robustness
    assert effective_robustness(0.95 - 0.5 * P, lf) < 0


def test_bad_curves_are_named():
    with pytest.raises(ValueError, match="levels"):
        relative_robustness(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        relative_robustness([1.0] * 10 + [float("nan")])
    with pytest.raises(ValueError, match="reference"):
        effective_robustness(np.ones(11), np.ones(10))
    with pytest.raises(ValueError, match="reduce"):
        effective_robustness(np.ones(11), np.ones(11), reduce="max")
    with pytest.raises(ValueError, match="strictly increasing"):
        relative_robustness([1, 1, 1], levels=[0, 0.5, 0.5])


@pytest.fixture(scope="module")
def data():
    ds = make_synthetic(n=900, dims=16, snr=[4.0, 1.0], seed=3)
    return ds.split((0.7, 0.3), seed=0)


def _train(cls, train, **kw):
    torch.manual_seed(0)
    model = cls.for_dataset(train, d=32, hidden=64, **kw)
    Trainer(model, epochs=6, batch_size=64, progress=False, seed=0).fit(train)
    return model


def test_model_curve_matches_clean_metric_and_degrades(data):
    train, test = data
    model = _train(LateFusion, train)
    curve = robustness_curve(model, test, metric="auc")
    assert list(curve.level) == list(ROBUSTNESS_LEVELS) and set(curve.metric) == {"auc"}
    clean = classification_metrics(collect(model, test)["logits"], test.y)
    assert curve.value.iloc[0] == pytest.approx(clean["auc"])
    assert curve.acc.iloc[0] == pytest.approx(clean["acc"])
    # losing modalities must cost: the fully-missing end is clearly worse than clean
    assert curve.value.iloc[-1] < curve.value.iloc[0] - 0.02
    # the same seed gives the same curve
    pd.testing.assert_frame_equal(curve, robustness_curve(model, test, metric="auc"))
    # relative robustness lies between the worst and best point of the curve
    rr = relative_robustness(curve.value)
    assert curve.value.min() <= rr <= curve.value.max()


def test_curve_respects_targeted_modalities(data):
    train, test = data
    model = _train(Unimodal, train, modality="m1")
    # dropping only the modality the model ignores changes nothing
    other = robustness_curve(model, test, modalities=["m2"])
    assert np.allclose(other.value, other.value.iloc[0])
    # dropping its own modality with p=1 leaves it uniform logits: AUC exactly 0.5
    own = robustness_curve(model, test, modalities=["m1"], levels=[0.0, 0.5, 1.0])
    assert own.value.iloc[-1] == pytest.approx(0.5)
    assert own.value.iloc[0] > 0.7


def test_noise_curve_and_argument_errors(data):
    train, test = data
    model = _train(LateFusion, train)
    noise = robustness_curve(model, test, kind="noise", metric="acc", levels=[0.0, 1.0, 4.0])
    assert noise.value.iloc[-1] < noise.value.iloc[0]
    with pytest.raises(ValueError, match="kind"):
        robustness_curve(model, test, kind="blur")
    with pytest.raises(ValueError, match="metric"):
        robustness_curve(model, test, metric="f1")
    with pytest.raises(ValueError, match="levels"):
        robustness_curve(model, test, levels=[0.0, 1.5])
    with pytest.raises(TypeError, match="ds must be"):
        robustness_curve(model, test[:10])


# ------------------------------------------------ DSRSD experiment protocols and figures
from nbkit.evaluate import shared_correlation
from nbkit.experiments import fit
from nbkit.experiments import nb02_decorrelation as gx
from nbkit.experiments import nb03_missing_modalities as rx
from nbkit.models import DSRSD
from nbkit.regulate import ModalityDropout
from nbkit import viz


@pytest.fixture(scope="module")
def small():
    return gx.make_data(n=600, dims=16, seed=2)


def test_robustness_summary_on_hand_made_curves():
    lv = list(ROBUSTNESS_LEVELS)
    rows = []
    for seed in (0, 1):
        rows += [{"method": "MM-late", "seed": seed, "level": p, "value": 0.9 - 0.2 * p} for p in lv]
        rows += [{"method": "A", "seed": seed, "level": p, "value": 0.95 - 0.1 * p} for p in lv]
    s = rx.robustness_summary(pd.DataFrame(rows))
    a = s[s.method == "A"].iloc[0]
    assert a["clean"] == pytest.approx(95.0) and a["drop at p=0.5"] == pytest.approx(5.0)
    assert a["relative robustness"] == pytest.approx(100 * (0.95 - 0.05))
    assert a["effective robustness"] == pytest.approx(100 * 0.1 * P.sum())
    lf = s[s.method == "MM-late"].iloc[0]
    assert lf["drop at p=0.5"] == pytest.approx(10.0) and lf["effective robustness"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="reference"):
        rx.robustness_summary(pd.DataFrame(rows), reference="LF")
    with pytest.raises(ValueError, match="level 0.55"):
        rx.robustness_summary(pd.DataFrame(rows), at=0.55)


def test_stream_diagnostics_and_lambda_grid(small):
    train, val, test = small
    grid = gx.lambda_grid(train, None, test, dec_values=[0.0, 1.0], orth_values=[0.0, 1.0], progress=False,
                          config=dict(d=16, hidden=32), train_config=dict(gx.TRAIN, epochs=4))
    assert len(grid) == 4 and {"auc", "offdiag", "orth", "disentanglement", "r2_shared"} <= set(grid.columns)
    g = grid.set_index(["lambda_dec", "lambda_orth"])
    # the weights do what they say: L_dec lowers off-diagonal mass, L_orth lowers shared/private overlap
    assert g.loc[(1.0, 0.0), "offdiag"] < g.loc[(0.0, 0.0), "offdiag"]
    assert g.loc[(0.0, 1.0), "orth"] < g.loc[(0.0, 0.0), "orth"]
    fig = viz.lambda_grid_figure(grid, metrics=("auc", "offdiag"))
    assert len(fig.data) == 2 and np.asarray(fig.data[1].z).shape == (2, 2)
    with pytest.raises(ValueError, match="missing"):
        viz.lambda_grid_figure(grid, metrics=("f1",))
    with pytest.raises(ValueError, match="dec_values"):
        gx.lambda_grid(train, None, test, dec_values=[-1.0])


def test_shared_correlation_and_heatmap_grid(small):
    train, val, test = small
    m, _ = fit(DSRSD, train, None, config=dict(d=16, hidden=32), train_config=dict(gx.TRAIN, epochs=2))
    C = shared_correlation(m, test)
    assert C.shape == (16, 16) and np.allclose(np.diag(C), 1.0, atol=1e-3)
    fig = viz.heatmap_grid_figure({"a": C, "b": -C}, cols=2)
    assert len(fig.data) == 2 and fig.data[0].zmin == -1
    with pytest.raises(ValueError, match="at least one"):
        viz.heatmap_grid_figure({})
    late = _train(LateFusion, train)
    with pytest.raises(ValueError, match="no shared"):
        shared_correlation(late, test)


def test_gate_vs_noise_and_figure(small):
    train, val, test = small
    m, _ = fit(DSRSD, train, None, config=dict(d=16, hidden=32), train_config=dict(gx.TRAIN, epochs=2))
    df = rx.gate_vs_noise(m, test, max_level=2.0)
    assert len(df) == 2 * 2 * len(test)                        # noisy modality x modality x sample
    # gate weights of a sample sum to 1 over the modalities
    per = df.assign(i=np.tile(np.arange(len(test)), 4)).groupby(["noisy_modality", "i"]).gate.sum()
    assert np.allclose(per.values, 1.0, atol=1e-5)
    assert df.level.between(0, 2.0).all()
    summ = rx.gate_noise_summary(df, bins=4)
    assert set(summ.noisy_modality) == {"m1", "m2"} and summ.level_bin.nunique() == 4
    assert len(rx.gate_noise_correlation(df)) == 2
    fig = viz.gate_noise_figure(summ)
    assert len(fig.data) == 4
    with pytest.raises(ValueError, match="gate_noise_figure"):
        viz.gate_noise_figure(summ.drop(columns="gate"))
    with pytest.raises(ValueError, match="returns no gate"):
        rx.gate_vs_noise(_train(Unimodal, train, modality="m1"), test)


def test_missing_modality_study_small(small):
    train, val, test = small
    st = rx.missing_modality_study(train, val, test, seeds=[0], variants=["full", "w/o gate"],
                                   baselines=["MM-late"], levels=[0.0, 0.5, 1.0], progress=False,
                                   config=dict(d=16, hidden=32), train_config=dict(rx.TRAIN, epochs=2))
    assert set(st.curves.method) == {"DSRSD (full)", "DSRSD (w/o gate)", "MM-late"}
    assert len(st.curves) == 3 * 3 and len(st.metrics) == 3
    s = rx.robustness_summary(st.curves)
    tab = rx.ablation_table(st.metrics, s)
    assert "drop at p=0.5" in tab.columns and tab.auc.str.contains("±").all()
    # the w/o gate variant really has uniform weights over present modalities
    g = collect(st.models[("DSRSD (w/o gate)", 0)], test)["gate"]
    assert torch.allclose(g, torch.full_like(g, 0.5))
    with pytest.raises(ValueError, match="unknown variants"):
        rx.missing_modality_study(train, val, test, variants=["w/o magic"])


def test_cpu_threads_restores_the_callers_thread_count():
    from nbkit.train import cpu_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads(1):
            with cpu_threads(1):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_modality_dropout_regulator(small):
    train, _, _ = small
    batch = train[:400]
    reg = ModalityDropout(0.5, seed=0)
    out = reg.prepare_batch(batch, epoch=0)
    miss = 1 - out.present.float().mean(0)
    # each modality lost with p=0.5, minus the samples that keep one (p^2 = .25 of them restore one)
    assert ((miss > 0.25) & (miss < 0.5)).all()
    assert out.present.any(1).all()                            # keep_one: no empty sample
    assert torch.equal(out.x["m1"][~out.present[:, 0]], torch.zeros_like(out.x["m1"][~out.present[:, 0]]))
    # a fresh draw each step, the same sequence for the same seed
    again = reg.prepare_batch(batch, epoch=0)
    assert not torch.equal(again.present, out.present)
    assert torch.equal(ModalityDropout(0.5, seed=0).prepare_batch(batch, 0).present, out.present)
    assert ModalityDropout(0.0).prepare_batch(batch, 0) is batch
    with pytest.raises(ValueError, match=r"p must be a finite number >= 0 and <= 1, got 1.5"):
        ModalityDropout(1.5)


# ------------------------------------------------ notebook 03 teaching helpers (issue 13)
def test_single_modality_scores_and_zero_filling_for_late_fusion(data):
    train, test = data
    model = _train(LateFusion, train)
    res = collect(model, test)
    one = rx.single_modality_scores(model, test)
    for m in test.modalities:                   # MM-late with one modality IS that modality's head
        assert one[m] == pytest.approx(classification_metrics(res["unimodal_logits"][m], test.y)["auc"], abs=1e-9)
    z = rx.zero_filled(test, "m2")
    assert torch.equal(z.present, test.present) and not z.x["m2"].any() and torch.equal(z.x["m1"], test.x["m1"])
    # zero-filled m2 gives every sample the same m2 head output: averaging with a constant vector
    # keeps each class's ranking of samples, so the AUC equals the masked one (exercise 3's answer)
    masked = drop_modalities(test, 1.0, modalities=["m2"], keep_one=False)
    a_mask = classification_metrics(collect(model, masked)["logits"], test.y)["auc"]
    a_zero = classification_metrics(collect(model, z)["logits"], test.y)["auc"]
    assert a_zero == pytest.approx(a_mask, abs=1e-12)
    with pytest.raises(KeyError, match="modality 'm3'"):
        rx.zero_filled(test, "m3")
    with pytest.raises(ValueError, match="metric"):
        rx.single_modality_scores(model, test, metric="f1")


def test_mixture_check_is_exact_for_a_mixture_and_close_on_a_model(data):
    lv = list(ROBUSTNESS_LEVELS)
    rows = [{"method": "A", "seed": s, "level": p, "acc": (1 - p) ** 2 * 0.9 + (1 - (1 - p) ** 2) * 0.7}
            for s in (0, 1) for p in lv]
    mix = rx.mixture_check(pd.DataFrame(rows))
    assert np.allclose(mix.difference, 0.0) and len(mix) == len(lv)
    train, test = data
    curve = robustness_curve(_train(LateFusion, train), test, metric="acc").assign(method="MM-late", seed=0)
    assert rx.mixture_check(curve).difference.abs().max() < 0.05      # sampling noise of one drop pattern only
    with pytest.raises(ValueError, match="columns"):
        rx.mixture_check(curve.drop(columns="acc"))


def _hand_frames(gate_extra, residual_extra):
    metrics, summary = [], []
    methods = {"DSRSD (full)": 2.0, "DSRSD (w/o L_dec)": 2.0, "DSRSD (w/o L_orth)": 2.0, "DSRSD (w/o gate)": None,
               "DSRSD (w/o residual)": None, "MM-late": 2.5, "early fusion": 4.0, "gated fusion": 3.0}
    for s in range(3):
        for m, d in methods.items():
            d = 2.0 + gate_extra[s] if m == "DSRSD (w/o gate)" else 2.0 + residual_extra[s] if d is None else d + 0.1 * s
            metrics.append({"method": m, "seed": s, "auc": 0.95 + 0.001 * s, "acc": 0.8, "offdiag": 0.1, "orth": 0.4})
            summary.append({"method": m, "seed": s, "drop at p=0.5": d, "clean": 95.0, "at p=0.5": 95.0 - d})
    return pd.DataFrame(metrics), pd.DataFrame(summary)


def test_claim_rows_test_each_part_paired_by_seed():
    metrics, summary = _hand_frames(gate_extra=[1.0, 1.1, 0.9], residual_extra=[0.5, -0.5, 0.1])
    rows = rx.claim_rows(metrics, summary, dataset="hand-made frames", record=False)
    gate = rows[rows.claim.str.startswith("ours: removing the gate")].iloc[0]
    res = rows[rows.claim.str.startswith("ours: removing the residual")].iloc[0]
    assert gate.ours_mean == pytest.approx(1.0 - 0.1, abs=1e-9) and gate.verdict == "supported"   # w/o gate minus full
    assert res.ours_mean == pytest.approx((0.5 - 0.5 + 0.1) / 3 - 0.1, abs=1e-9) and res.verdict == "not supported"
    text = rx.reading(rows, metrics, summary)
    assert "**supported**" in text and "the gate matters" in text and "residual" in text
    # without those variants no row is made (nothing to pair)
    keep = ~summary.method.isin(["DSRSD (w/o gate)", "DSRSD (w/o residual)"])
    rows2 = rx.claim_rows(metrics[keep], summary[keep], dataset="hand-made frames", record=False)
    assert not rows2.claim.str.contains("removing the").any()


def test_read_gate_says_which_way_each_gate_moves():
    lv = np.linspace(0, 3, 60)
    rows = []
    for nm, own in (("m1", 0.6 + 0.05 * lv), ("m2", 0.4 - 0.05 * lv)):      # m1's gate rises with its noise
        other = 1 - own
        for m, g in (("m1", own if nm == "m1" else other), ("m2", own if nm == "m2" else other)):
            rows.append(pd.DataFrame({"noisy_modality": nm, "level": lv, "modality": m, "gate": g, "correct": 1.0}))
    text = rx.read_gate(pd.concat(rows, ignore_index=True), bins=3)
    line1, line2 = text.split("\n")
    assert "gate of m1 rises" in line1 and "opposite" in line1 and "+1.00" in line1
    assert "gate of m2 falls" in line2 and "as a reliability-aware gate should" in line2
