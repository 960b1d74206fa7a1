"""Gradient regulators: properties that catch wrong implementations."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from nbkit.data import Batch, make_synthetic
from nbkit.models import EarlyFusion, Output
from nbkit.regulate import (AGM, MMPareto, OGMGE, PMR, GradMonitor, GradScale, InfoReg, RedReg,
                            Regulator, agm_coefficients, make_regulator, min_norm_weights,
                            ogm_coefficients, project_out)
from nbkit.train import Trainer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny models: faster, and kinder to a shared machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    ds = make_synthetic(n=160, dims=[8, 6], snr=[8.0, 0.3], names=["a", "v"], n_classes=3, seed=0)
    return ds


def _model(ds, seed=0, **kw):
    torch.manual_seed(seed)
    return EarlyFusion.for_dataset(ds, aux_heads=True, d=8, hidden=16, **kw)


def _train(ds, reg, epochs=2, seed=0, optimizer="sgd"):
    m = _model(ds, seed)
    tr = Trainer(m, regulator=reg, epochs=epochs, batch_size=32, optimizer=optimizer, lr=0.05, seed=seed,
                 progress=False)
    tr.fit(ds)
    return m, tr


def _grads_after(ds, reg, perturb=0.0, seed=0, setup=None):
    """One forward/backward through the regulator's hooks; returns (model, raw grads, final grads)."""
    m = _model(ds, seed)
    tr = Trainer(m, epochs=1, batch_size=32, progress=False)
    reg.attach(m, tr)
    reg.on_epoch_start(0, 3)
    if setup is not None:
        setup(reg)
    if perturb:
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            for p in m.encoders.parameters():
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    batch = reg.prepare_batch(ds[:64], 0)
    out = m(batch)
    terms = m.loss_terms(batch, out)
    terms.update(reg.extra_terms(batch, out))
    tr.regulator = reg
    loss = tr.weighted_loss(terms)
    m.zero_grad()
    # raw gradient of the same loss, for reference
    raw = torch.autograd.grad(loss, list(m.parameters()), retain_graph=True)
    handled = reg.backward(loss, terms, batch, out)
    if not handled:
        loss.backward()
    diag = reg.after_backward(batch, out, terms)
    return m, raw, [p.grad.clone() for p in m.parameters()], diag


# ------------------------------------------------------------------ projection (RedReg)
def test_project_out_is_orthogonal_and_safe_on_zero_gradient():
    g = torch.Generator().manual_seed(0)
    d, gr = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    p = project_out(d, gr)
    assert abs(float((p * gr).sum())) < 1e-5 * float(d.norm() * gr.norm())
    # the parallel part is what was removed
    par = d - p
    assert torch.allclose(par / par.norm(), gr / gr.norm() * torch.sign((par * gr).sum()), atol=1e-5)
    z = torch.zeros_like(gr)
    assert torch.equal(project_out(d, z), d) and torch.isfinite(project_out(d, z)).all()
    assert torch.equal(project_out(d, None), d)


def test_redreg_pullback_is_orthogonal_to_gradient_and_scaled_by_beta(data):
    reg = RedReg(monitor=False, gate=False, dropout=False)
    m, raw, new, diag = _grads_after(data, reg, perturb=0.05)
    dom = reg.modalities[int(diag["dominant"])]
    assert diag["fired"] == 1.0 and diag["beta"] >= 1.0
    assert abs(diag["cos_after"]) < 1e-5 and abs(diag["cos_before"]) > 1e-3
    ids = {id(p) for p in m.encoders[dom].parameters()}
    for p, g0, g1, p0 in zip(m.parameters(), raw, new, [None] * len(raw)):
        added = g1 - g0
        if id(p) in ids:
            assert abs(float((added * g0).sum())) <= 1e-4 * (float(added.norm() * g0.norm()) + 1e-12)
        else:
            assert torch.allclose(g1, g0, atol=1e-7), "only the dominant encoder is pulled back"
    # projection="none": the plain InfoReg-style pull-back beta * (theta - theta_0)
    reg2 = RedReg(monitor=False, gate=False, dropout=False, projection="none")
    m2, raw2, new2, diag2 = _grads_after(data, reg2, perturb=0.05)
    dom2 = reg2.modalities[int(diag2["dominant"])]
    for (name, p), g0, g1 in zip(m2.named_parameters(), raw2, new2):
        if name.startswith(f"encoders.{dom2}."):
            p0 = reg2.theta0[dom2][[q is p for q in reg2.params[dom2]].index(True)]
            assert torch.allclose(g1 - g0, diag2["beta"] * (p.detach() - p0), atol=1e-6)


def test_redreg_paper_projection_keeps_the_fused_gradient_direction(data):
    reg = RedReg(monitor=False, gate=False, dropout=False, projection="paper")
    m, raw, new, diag = _grads_after(data, reg, perturb=0.05)
    dom = reg.modalities[int(diag["dominant"])]
    assert diag["fired"] == 1.0
    # the removed part is orthogonal to the fused-loss gradient of the dominant encoder
    ps = list(m.encoders[dom].parameters())
    for p, gm in zip(ps, reg._g_mm):
        i = [q is p for q in m.parameters()].index(True)
        removed = raw[i] - new[i]
        assert abs(float((removed * gm).sum())) <= 1e-4 * (float(removed.norm() * gm.norm()) + 1e-12)


def test_redreg_logs_every_monitor_signal_into_history(data):
    m, tr = _train(data, RedReg(), epochs=2)
    metrics = set(tr.history.metrics("train"))
    for k in ["conf/a", "conf/v", "S/a", "red/v", "red_norm/a", "r/v", "gate", "beta", "trigger", "fired",
              "drift/a", "drift/v", "cos_before", "cos_after", "gnorm/a", "gnorm/v", "rho", "tau"]:
        assert f"reg/{k}" in metrics, k
    f = tr.history.frame
    fired = f[f.metric == "reg/fired"].value
    beta = f[f.metric == "reg/beta"].value.to_numpy()
    trig = f[f.metric == "reg/trigger"].value.to_numpy()
    assert ((beta > 0) == (trig > 0)).all()
    assert set(np.unique(fired)) <= {0.0, 1.0}
    # the code's EMA normalisation: red~ starts at 1/(1-0.9) = 10 on each epoch's first step
    red0 = f[(f.metric == "reg/red_norm/a")].groupby("epoch").value.first()
    assert np.allclose(red0, 10.0, rtol=1e-3)


def test_redreg_growth_rate_matches_the_code():
    reg = RedReg(window=3)
    reg.hist = {"a": [1.0, 1.0, 1.0]}
    assert reg.growth("a") == 1.0          # not enough history: 1
    reg.hist = {"a": [1.0, 1.0, 1.0, 1.0, 2.0]}
    # s1 = mean(1,1,2) = 4/3, s2 = mean(1,1,1) = 1 -> (4/3 - 1) / 1
    assert reg.growth("a") == pytest.approx(1 / 3)


# ------------------------------------------------------------------ OGM-GE
def test_ogm_coefficients_on_known_scores():
    c = ogm_coefficients({"a": 30.0, "v": 10.0}, alpha=0.5)
    assert c["a"] == pytest.approx(1 - math.tanh(0.5 * 3.0)) and c["v"] == 1.0
    c = ogm_coefficients({"a": 10.0, "v": 40.0}, alpha=0.3)
    assert c["v"] == pytest.approx(1 - math.tanh(0.3 * 4.0)) and c["a"] == 1.0
    # an exact tie: the reference code's else branch scales the first modality
    assert ogm_coefficients({"a": 5.0, "v": 5.0}, alpha=0.8) == pytest.approx({"a": 1 - math.tanh(0.8), "v": 1.0})
    assert ogm_coefficients({"a": 5.0, "v": 5.0}, alpha=0.8, tie="none") == {"a": 1.0, "v": 1.0}
    assert ogm_coefficients({"a": 3.0, "v": 1.0}, alpha=0.0)["a"] == 1.0
    # three modalities (ours): ratio to the mean of the others
    c = ogm_coefficients({"a": 4.0, "v": 1.0, "t": 3.0}, alpha=0.5)
    assert c["a"] == pytest.approx(1 - math.tanh(0.5 * 2.0)) and c["v"] == 1.0
    assert c["t"] == pytest.approx(1 - math.tanh(0.5 * 3.0 / 2.5))
    with pytest.raises(ValueError, match="tie"):
        ogm_coefficients({"a": 1.0, "v": 2.0}, 0.5, tie="both")
    with pytest.raises(ValueError, match=r"scores\['a'\]"):
        ogm_coefficients({"a": float("nan"), "v": 2.0}, 0.5)


def test_ogm_scales_the_dominant_encoders_weights_by_its_coefficient(data):
    reg = OGMGE(alpha=0.5, ge=False, source="heads")
    m, raw, new, diag = _grads_after(data, reg)
    for (name, p), g0, g1 in zip(m.named_parameters(), raw, new):
        mod = name.split(".")[1] if name.startswith("encoders.") else None
        if mod is None or p.ndim < 2:          # heads and biases are left alone (both public codes)
            assert torch.equal(g0, g1)
        else:
            assert torch.allclose(g1, g0 * diag[f"coeff/{mod}"], atol=1e-7)
    assert min(diag["coeff/a"], diag["coeff/v"]) < 1.0 == max(diag["coeff/a"], diag["coeff/v"])


def test_ogm_split_head_logits_sum_to_the_fused_logits(data):
    reg = OGMGE(source="split")
    m = _model(data)
    reg.attach(m, None)
    b = data[:10]
    out = m(b)
    lg = reg.unimodal_logits(out, b)
    assert torch.allclose(lg["a"] + lg["v"], out.logits, atol=1e-6)


# ------------------------------------------------------------------ MMPareto
def test_min_norm_weights_closed_form():
    assert min_norm_weights(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx((0.5, 0.5))
    w1, w2 = min_norm_weights(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert (w1, w2) == pytest.approx((0.2, 0.8))           # <g2-g1, g2>/||g1-g2||^2 = 1/5
    # brute force on random vectors
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    c, _ = min_norm_weights(a, b)
    grid = np.linspace(0, 1, 2001)
    norms = [float((t * a + (1 - t) * b).norm()) for t in grid]
    assert c == pytest.approx(grid[int(np.argmin(norms))], abs=1e-3)
    # one vector inside the other's direction: the shorter wins (clipped to [0, 1])
    assert min_norm_weights(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])) == (1.0, 0.0)
    assert min_norm_weights(torch.ones(3), torch.ones(3)) == (0.5, 0.5)


def test_mmpareto_aligned_gradients_are_the_summed_gradient_times_gamma(data):
    reg = MMPareto(gamma=1.5)
    m, raw, new, diag = _grads_after(data, reg)
    for (name, p), g0, g1 in zip(m.named_parameters(), raw, new):
        if not name.startswith("encoders."):
            assert torch.allclose(g0, g1, atol=1e-7)
            continue
        mod = name.split(".")[1]
        if diag[f"cos/{mod}"] > 0:           # 0.5/0.5: 2*(0.5 g_mm + 0.5 g_uni) = the summed gradient
            assert torch.allclose(g1, 1.5 * g0, atol=1e-6)


# ------------------------------------------------------------------ AGM / PMR / InfoReg
def test_agm_coefficients_small_cases():
    assert agm_coefficients({"a": 1.0, "v": 1.0}, {"a": 1.0, "v": 1.0}, alpha=0.1) == pytest.approx({"a": 1, "v": 1})
    # a is further ahead (lower loss) than it usually is -> suppressed; v boosted
    c = agm_coefficients({"a": 0.5, "v": 1.5}, {"a": 1.0, "v": 1.0}, alpha=0.1)
    assert c["a"] == pytest.approx(math.exp(0.1 * (1 - math.e)))
    assert c["v"] == pytest.approx(math.exp(0.1 * (1 - math.exp(-1))))
    assert c["a"] < 1 < c["v"]
    assert agm_coefficients({"a": 0.5, "v": 1.5}, {"a": 1.0, "v": 1.0}, alpha=0.0) == {"a": 1.0, "v": 1.0}
    c = agm_coefficients({"a": 20.0, "v": 0.0}, {"a": 0.0, "v": 0.0}, alpha=1.0)
    assert c["a"] == pytest.approx(math.exp(1 - math.exp(-20)))
    # the cap: 10 (original code) by default, 7 as BalanceBenchmark on request
    c = agm_coefficients({"a": 0.0, "v": 30.0}, {"a": 25.0, "v": 0.0}, alpha=0.1)
    assert c["v"] == pytest.approx(math.exp(1.0))
    assert agm_coefficients({"a": 0.0, "v": 30.0}, {"a": 25.0, "v": 0.0}, alpha=0.1, cap=7)["v"] == \
        pytest.approx(math.exp(0.7))


def test_agm_responses_use_zero_inputs_and_add_up(data):
    reg = AGM(response="shapley")
    m = _model(data)
    reg.attach(m, None)
    b = data[:12]
    phi = reg.shapley_logits(b)
    with torch.no_grad():
        full = m(b).logits
        empty = m(b.with_x({k: torch.zeros_like(t) for k, t in b.x.items()})).logits   # zero INPUTS, still present
    assert torch.allclose(phi["a"] + phi["v"], full - empty, atol=1e-5)      # efficiency of Shapley values
    reg0 = AGM()                                                               # the original: f(empty) = 0
    reg0.attach(m, None)
    phi0 = reg0.shapley_logits(b)
    assert torch.allclose(phi0["a"] + phi0["v"], full, atol=1e-5)
    assert torch.allclose(phi0["a"] - phi["a"], 0.5 * empty, atol=1e-5)


def test_agm_hooks_change_the_whole_model_not_a_multiple_of_the_encoder_gradient(data):
    """The original's hooks route the scaled gradient through the padded passes: with a
    coefficient != 1 the encoder gradient is NOT coeff x the plain one, and the fused head's
    gradient changes too; apply="encoders" is the plain multiple."""
    def history(reg):                        # a history that makes the coefficients differ from 1
        reg.running, reg.iteration = {"a": 2.0, "v": 0.1}, 5

    reg = AGM(alpha=1.0, clip=None)
    m2, raw, new, diag = _grads_after(data, reg, setup=history)
    assert abs(diag["coeff/a"] - 1) > 0.05
    head = [i for i, (n, _) in enumerate(m2.named_parameters()) if n == "head.weight"][0]
    assert not torch.allclose(raw[head], new[head])
    enc = [i for i, (n, p) in enumerate(m2.named_parameters()) if n.startswith("encoders.a.") and p.ndim >= 2][0]
    assert not torch.allclose(new[enc], raw[enc] * diag["coeff/a"], atol=1e-6)
    reg2 = AGM(alpha=1.0, clip=None, apply="encoders")
    m3, raw3, new3, diag3 = _grads_after(data, reg2, setup=history)
    assert torch.allclose(new3[enc], raw3[enc] * diag3["coeff/a"], atol=1e-7)
    assert torch.equal(new3[head], raw3[head])
    with pytest.raises(ValueError, match="apply"):
        AGM(apply="everywhere")
    with pytest.raises(ValueError, match="response"):
        AGM(response="banzhaf")


def test_pmr_adds_prototype_loss_for_the_weaker_modality_only():
    reg = PMR(alpha=0.6)
    m = EarlyFusion({"a": (2,), "v": (2,)}, 2, aux_heads=True, d=2, hidden=4)
    reg.attach(m, None)
    reg.proto = {"a": torch.tensor([[0.0, 0.0], [4.0, 0.0]]), "v": torch.tensor([[0.0, 0.0], [0.5, 0.0]])}
    y = torch.tensor([0, 1])
    feats = {"a": torch.tensor([[0.0, 0.0], [4.0, 0.0]], requires_grad=True),
             "v": torch.tensor([[0.1, 0.0], [0.3, 0.0]], requires_grad=True)}
    b = Batch({"a": torch.zeros(2, 2), "v": torch.zeros(2, 2)}, torch.ones(2, 2, dtype=torch.bool), y)
    out = Output(logits=torch.zeros(2, 2), features=feats)
    terms = reg.extra_terms(b, out)
    la = -torch.cdist(feats["a"], reg.proto["a"])
    lv = -torch.cdist(feats["v"], reg.proto["v"])
    sa = F.softmax(la, 1)[[0, 1], y].sum()
    sv = F.softmax(lv, 1)[[0, 1], y].sum()
    assert sa > sv
    # the public rule: the weaker modality's term with weight alpha, whatever the ratio
    assert terms["pmr"].item() == pytest.approx(F.cross_entropy(lv, y).item(), rel=1e-5)
    terms["pmr"].backward()
    assert feats["a"].grad is None or torch.all(feats["a"].grad == 0)   # the stronger one is left alone
    assert reg.weights == {"pmr": 0.6}
    # the clipped rule (ours, old): weight clip(s_a / s_v - 1, 0, 1)
    reg2 = PMR(alpha=0.6, rule="clipped")
    reg2.attach(m, None)
    reg2.proto = reg.proto
    t2 = reg2.extra_terms(b, Output(logits=torch.zeros(2, 2), features={k: v.detach() for k, v in feats.items()}))
    coef_v = min(max(float(sa.detach() / sv.detach()) - 1, 0.0), 1.0)
    assert t2["pmr"].item() == pytest.approx(coef_v * F.cross_entropy(lv, y).item(), rel=1e-5)
    with pytest.raises(ValueError, match="rule"):
        PMR(rule="soft")


def test_inforeg_window_and_pullback(data):
    reg = InfoReg(window=10)
    assert reg.threshold == 0.05
    reg.traces = {"a": [0.0] * 10 + [1.0]}
    assert reg.growth("a") == pytest.approx(1.0)          # (0.1 - 0) / 0.1
    reg.traces = {"a": [0.0] * 10 + [1.0] * 11}
    assert reg.growth("a") == pytest.approx(0.0)          # flat Fisher trace: window closed
    reg.traces = {"a": [0.0] * 10}
    assert reg.growth("a") == 1.0                         # epoch 0: k = 1 (reference code)
    reg.traces = {"a": [0.0] * 12}
    assert reg.growth("a") == math.inf                    # all-zero traces after epoch 0: open (ours)
    # inside the window: g_d += beta * (theta - theta_0) on the dominant encoder only
    reg = InfoReg()
    m, raw, new, diag = _grads_after(data, reg, perturb=0.05)
    dom = reg.modalities[int(diag["dominant"])]
    assert diag["window"] == 1.0 and diag["beta"] > 0
    for (name, p), g0, g1 in zip(m.named_parameters(), raw, new):
        if name.startswith(f"encoders.{dom}."):
            p0 = reg.theta0[dom][[q is p for q in reg.params[dom]].index(True)]
            assert torch.allclose(g1 - g0, diag["beta"] * (p.detach() - p0), atol=1e-6)
        else:
            assert torch.allclose(g1, g0, atol=1e-7)


# ------------------------------------------------------------------ inactive = plain training
@pytest.mark.parametrize("make", [
    lambda: Regulator(),
    lambda: GradMonitor(),
    lambda: RedReg(R=math.inf, dropout=False),            # the trigger never fires
    lambda: OGMGE(alpha=0.0, ge=False),
    lambda: AGM(alpha=0.0, clip=None),
    lambda: PMR(alpha=0.0),
    lambda: InfoReg(beta_scale=0.0, split_losses=False),
    lambda: GradScale({"a": 1.0}),
])
def test_inactive_regulator_leaves_training_bit_identical(data, make):
    m0, _ = _train(data, None)
    m1, tr = _train(data, make())
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values()):
        assert torch.equal(a, b), k


def test_redreg_that_fires_changes_training(data):
    m0, _ = _train(data, None)
    m1, _ = _train(data, RedReg(dropout=False, gate=False))
    assert any(not torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))


# ------------------------------------------------------------------ bad input
def test_bad_input_is_answered_clearly(data):
    with pytest.raises(ValueError, match="alpha"):
        OGMGE(alpha=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        AGM(alpha=-1)
    with pytest.raises(ValueError, match="alpha"):
        PMR(alpha=-1)
    with pytest.raises(ValueError, match="clip"):
        AGM(clip=0)
    with pytest.raises(ValueError, match="threshold"):
        InfoReg(threshold=float("nan"))
    with pytest.raises(ValueError, match="beta_scale"):
        _train(data, InfoReg(beta_scale=(0.95, 0.1, 0.2)))
    with pytest.raises(KeyError, match="beta_scale"):
        _train(data, InfoReg(beta_scale={"a": 1.0, "x": 0.1}))
    with pytest.raises(KeyError, match="unknown modality 'x' for trace_of"):
        _train(data, InfoReg(trace_of="x"))
    with pytest.raises(ValueError, match="trace_of"):
        _train(data, InfoReg(trace_of=5))
    with pytest.raises(ValueError, match="model.head"):
        from nbkit.models import LateFusion
        Trainer(LateFusion.for_dataset(data, d=8, hidden=16), regulator=AGM(), epochs=1, batch_size=32,
                progress=False).fit(data)
    with pytest.raises(ValueError, match="gamma"):
        RedReg(gamma=-0.5)
    with pytest.raises(ValueError, match="projection"):
        RedReg(projection="sideways")
    with pytest.raises(ValueError, match="source"):
        OGMGE(source="magic")
    with pytest.raises(TypeError, match="R must be a number \\(inf allowed\\), got 'high'"):
        RedReg(R="high")
    with pytest.raises(KeyError, match="unknown modality 'audio'"):
        _train(data, RedReg(modalities=["audio", "v"]))
    with pytest.raises(KeyError, match="unknown modality 'x'"):
        _train(data, GradScale({"x": 0.5}))
    with pytest.raises(KeyError, match="unknown regulator"):
        make_regulator("balance-o-matic")
    with pytest.raises(ValueError, match="scales"):
        GradScale({})
    # a model without per-modality heads cannot feed MMPareto
    m = EarlyFusion.for_dataset(data, aux_heads=False, d=8, hidden=16)
    with pytest.raises(ValueError, match="unimodal_logits"):
        Trainer(m, regulator=MMPareto(), epochs=1, batch_size=32, progress=False).fit(data)


def test_make_regulator_names():
    assert type(make_regulator("none")) is Regulator and type(make_regulator(None)) is Regulator
    # one registry: the notebook's names and their lower-case/underscore spellings build the same class
    assert isinstance(make_regulator("OGM-GE"), OGMGE) and isinstance(make_regulator("ogm_ge"), OGMGE)
    assert isinstance(make_regulator("MMPareto"), MMPareto) and isinstance(make_regulator("mm-pareto"), MMPareto)
    assert isinstance(make_regulator("redreg", R=0.3), RedReg) and make_regulator("redreg", R=0.3).R == 0.3


# ------------------------------------------------------------------ experiments + viz
def test_adam_blunts_gradient_scaling_sgd_does_not(data):
    from nbkit.experiments.nb05_balance import optimizer_scaling_demo

    tr, va, te = data.split((0.6, 0.2, 0.2))
    df = optimizer_scaling_demo((tr, va, te), "a", scales=(1.0, 0.1), steps=3)
    rel = df.set_index(["optimizer", "scale k"])["relative to k=1"]
    assert rel[("sgd", 0.1)] == pytest.approx(0.1, abs=0.03)
    assert rel[("adam", 0.1)] > 0.8


def test_balance_protocol_and_signals_figure(data):
    from nbkit.experiments import nb05_balance as B
    from nbkit.viz import signals_figure

    split = data.split((0.6, 0.2, 0.2))
    res, hists = B.compare(["joint", "RedReg"], split, seeds=[0], progress=False,
                           train_config=dict(B.TRAIN, epochs=2, batch_size=16))
    assert set(res.method) == {"joint", "RedReg"}
    assert {"acc", "acc/a", "acc/v", "probe/a", "probe/v", "ms_step"} <= set(res.columns)
    ff = B.fire_fractions(hists)
    assert 0 <= ff["fired (beta*gate>0)"].iloc[0] <= ff["trigger"].iloc[0] <= 1
    assert B.weak_modality(hists[("joint", 0)]) in ("a", "v")
    imb = B.imbalance_frames(hists[("joint", 0)])
    assert set(imb["grad_norm"].metric) == {"grad norm a", "grad norm v"}
    w = B.monitor_frame(hists[("RedReg", 0)])
    fig = signals_figure(w, {"r": ["r/a", "r/v"], "fired": ["fired"]}, smooth=3, hlines={"r": 0.15})
    assert len(fig.data) == 3
    with pytest.raises(KeyError, match="not in the frame"):
        signals_figure(w, {"x": ["nope"]})
    sw = B.trigger_sweep(hists[("RedReg", 0)], Rs=[-1e9, 1e9], gammas=[0.0, 0.6])
    assert sw.set_index(["gamma", "R"]).fraction.loc[(0.0, -1e9)] == 1.0
    assert sw.set_index(["gamma", "R"]).fraction.loc[(0.6, 1e9)] == 0.0
    # the normalised redundancy starts at 10 each epoch: a trigger at R = 5 is on at least then
    sw5 = B.trigger_sweep(hists[("RedReg", 0)], Rs=[5.0], gammas=[0.0])
    assert 0 < sw5.fraction.iloc[0] < 1
    with pytest.raises(ValueError, match="gammas"):
        B.trigger_sweep(hists[("RedReg", 0)], Rs=[0.1], gammas=[-1])
    tab = B.accuracy_table(res)
    assert "±" in tab["acc"].iloc[0]
    with pytest.raises(ValueError, match="source"):
        B.make_setting("nowhere")


def test_reference_protocols_train_the_loss_each_public_code_trains(data):
    """OGM-GE, AGM, PMR train without auxiliary heads; InfoReg adds the split-head terms;
    the aux protocol gives every method RedReg's heads."""
    from nbkit.experiments import nb05_balance as B

    split = data.split((0.6, 0.2, 0.2))
    tc = dict(B.TRAIN, epochs=1, batch_size=16)
    rows = {}
    for m in ["OGM-GE", "InfoReg", "RedReg", "joint (fused CE only)"]:
        row, tr = B.run_method(m, split, 0, train_config=tc, probe=False)
        rows[m] = (row, tr)
    assert rows["OGM-GE"][1].model.config.aux_heads is False and "acc/a" not in rows["OGM-GE"][0]
    assert rows["RedReg"][1].model.config.aux_heads is True and "acc/a" in rows["RedReg"][0]
    assert "loss/split_uni" in set(rows["InfoReg"][1].history.metrics("train"))
    assert rows["joint (fused CE only)"][1].model.config.aux_heads is False
    assert {"split/a", "split/v"} <= set(rows["OGM-GE"][0]) and rows["OGM-GE"][0]["protocol"] == "reference"
    row, tr = B.run_method("InfoReg", split, 0, train_config=tc, probe=False, protocol="aux")
    assert tr.model.config.aux_heads is True and "loss/split_uni" not in set(tr.history.metrics("train"))
    assert B.protocol_of("OGM-GE", None) == {"model": {}, "regulator": {}}
    with pytest.raises(ValueError, match="protocol"):
        B.protocol_of("OGM-GE", "mine")
    # split accuracy by hand: the fused head's block of each modality, bias / M
    model = rows["OGM-GE"][1].model
    test = split[2]
    acc = B.split_accuracy(model, test)
    with torch.no_grad():
        model.eval()
        out = model(test[:len(test)])
        W, b = model.head.weight, model.head.bias
        d = out.features["a"].shape[1]
        la = out.features["a"] @ W[:, :d].t() + b / 2
    assert acc["split/a"] == pytest.approx(float((la.argmax(1) == test.y).float().mean()))
    # a table per protocol, and claims refuse mixed protocols
    both = pd.concat([pd.DataFrame([rows["OGM-GE"][0] | {"seed": 0}]), pd.DataFrame([row | {"seed": 0}])])
    tab = B.protocol_table(both)
    assert list(tab.columns) == ["aux", "reference"] and set(tab.index) == {"OGM-GE", "InfoReg"}
    with pytest.raises(ValueError, match="protocols"):
        B.claim_rows(both, "a", dataset="x", record=False)


def test_notebook_05_helpers_and_figures(data):
    from nbkit.experiments import nb05_balance as B
    from nbkit.viz import bar_figure, curve_figure, signals_figure

    assert B.roles("v", ["a", "v"]) == {"a": "a (fast-fitting)", "v": "v (slow-fitting)"}
    with pytest.raises(KeyError, match="weak modality"):
        B.roles("x", ["a", "v"])
    cc = B.coefficient_curves([1.0, 1.05, 2.0])
    pub = cc[cc.rule.str.startswith("PMR public")].set_index("ratio").value
    clip = cc[cc.rule.str.startswith("PMR clipped")].set_index("ratio").value
    ogm = cc[cc.rule.str.startswith("OGM-GE")].set_index("ratio").value
    assert pub[1.05] == pytest.approx(0.6) and clip[1.05] == pytest.approx(0.03) and pub[1.0] == 0.0
    assert ogm[2.0] == pytest.approx(1 - math.tanh(0.8 * 2.0))
    with pytest.raises(ValueError, match="ratios"):
        B.coefficient_curves([0.0, 1.0])
    split = data.split((0.6, 0.2, 0.2))
    res, hists = B.compare(["joint", "RedReg"], split, seeds=[0, 1], progress=False, probe=False,
                           train_config=dict(B.TRAIN, epochs=2, batch_size=16))
    conf = B.training_confidence(hists, "joint", B.roles("v", ["a", "v"]))
    assert set(conf.modality) == {"a (fast-fitting)", "v (slow-fitting)"} and set(conf.seed) == {0, 1}
    assert conf.confidence.between(0, 1).all()
    f = hists[("joint", 0)].frame
    first = f[(f.metric == "reg/conf/a") & (f.epoch == 0)].value.mean()
    assert conf[(conf.seed == 0) & (conf.epoch == 0) & (conf.modality == "a (fast-fitting)")].confidence.iloc[0] == \
        pytest.approx(first)
    assert len(curve_figure(conf, x="epoch", y="confidence", color="modality").data) >= 2
    w = B.monitor_frame(hists[("RedReg", 0)])
    fig = signals_figure(w, {"c": ["conf/a", "conf/v"], "r": ["r/a"]}, labels={"conf/a": "c_a"}, legends="per_panel")
    assert [t.name for t in fig.data] == ["c_a", "conf/v", "r/a"]
    assert [t.legend for t in fig.data] == ["legend", "legend", "legend2"]
    assert fig.layout.legend2.y is not None and fig.layout.legend2.y < fig.layout.legend.y
    with pytest.raises(ValueError, match="legends"):
        signals_figure(w, {"c": ["conf/a"]}, legends="everywhere")
    bf = bar_figure(res, x="method", y="acc", hlines={"a alone": 0.5})
    assert any(getattr(s, "y0", None) == 0.5 for s in bf.layout.shapes)


def test_key_lesson_protocol_gain_and_summary_are_computed_from_the_frames():
    from nbkit.experiments import nb05_balance as B

    res = pd.DataFrame({"method": ["joint", "joint", "X", "X"], "seed": [0, 1, 0, 1], "acc": [0.7, 0.8, 0.9, 0.95],
                        "protocol": "reference"})
    alone = pd.DataFrame({"modality": ["a", "a", "v", "v"], "seed": [0, 1, 0, 1], "acc_alone": [0.5, 0.5, 0.9, 0.9]})
    text = B.key_lesson(res, alone)
    assert text.startswith("Only X reaches v trained alone (0.900)") and "+0.025" in text
    text = B.key_lesson(res[res.method == "joint"], alone)
    assert text.startswith("No method's fused accuracy reaches v trained alone (0.900)") and "-0.150" in text
    aux = res.assign(protocol="aux", acc=res.acc + np.array([0.1, -0.02, 0.0, 0.04]))
    gain = B.protocol_gain(pd.concat([res, aux]))
    assert gain.loc["joint", "mean"] == pytest.approx(0.04) and gain.loc["joint", "min"] == pytest.approx(-0.02)
    assert gain.loc["X", "max"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="aux"):
        B.protocol_gain(res)
    claims = pd.DataFrame({"verdict": ["supported", "inconclusive", "inconclusive"]})
    md = B.summary_markdown(res, alone, claims, {}, gain=gain, setting="tiny", steps=14)
    assert "1 supported, 0 not supported, 2 inconclusive of 3" in md and "tiny" in md
    assert "by -0.020 to +0.040" not in md and "by +0.020 to +0.040" in md      # means per method: 0.04, 0.02
    assert "first 10 steps" in md
    with pytest.raises(ValueError, match="rows"):
        B.key_lesson(res.iloc[:0], alone)
