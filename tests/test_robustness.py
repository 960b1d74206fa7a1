"""Robustness protocol (specs/evaluation.md): curves over 11 levels, relative robustness
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
