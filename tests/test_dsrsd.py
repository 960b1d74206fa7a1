"""DSRSD-Net and the fusion baselines without decomposition (GatedFusion, CoAttention)."""
import pytest
import torch

from nbkit.data import Batch, MultimodalDataset, drop_modalities, make_synthetic
from nbkit.losses import info_nce
from nbkit.models import DSRSD, CoAttention, DSRSDConfig, GatedFusion
from nbkit.train import Trainer

TERMS = {"task", "con", "align", "dec", "orth"}


@pytest.fixture(scope="module")
def ds2():
    return make_synthetic(n=256, n_modalities=2, dims=[12, 20], seed=0)


@pytest.fixture(scope="module")
def ds3():
    return make_synthetic(n=128, n_modalities=3, dims=8, seed=1)


def _with_missing(ds, n=32, seed=0):
    """A batch where some samples lack some modalities (never all)."""
    return drop_modalities(ds, 0.5, seed=seed)[:n]


@pytest.mark.parametrize("fixture,M", [("ds2", 2), ("ds3", 3)])
def test_shapes_for_two_and_three_modalities(request, fixture, M):
    ds = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    model = DSRSD.for_dataset(ds, d=16, hidden=32)
    b = ds[:10]
    out = model(b)
    assert out.logits.shape == (10, ds.n_classes)
    assert out.gate.shape == (10, M)
    assert out.fused.shape == (10, 32)                              # [s; p] = 2d
    for m in ds.modalities:
        assert out.shared[m].shape == out.private[m].shape == (10, 16)
        assert out.features[m].shape == (10, 16)
    terms = model.loss_terms(b, out)
    assert set(terms) == TERMS
    assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())


def test_vector_plus_sequence_modalities():
    g = torch.Generator().manual_seed(0)
    ds = MultimodalDataset({"image": torch.randn(20, 30, generator=g), "audio": torch.randn(20, 7, 5, generator=g)},
                           torch.arange(20) % 3)
    out = DSRSD.for_dataset(ds, d=8, hidden=16)(ds[:6])
    assert out.logits.shape == (6, 3) and out.shared["audio"].shape == (6, 8)


def test_gate_rows_sum_to_one_and_zero_for_missing(ds3):
    b = _with_missing(ds3)
    assert (~b.present).any()
    out = DSRSD.for_dataset(ds3, d=16, hidden=32)(b)
    assert torch.allclose(out.gate.sum(1), torch.ones(len(b)), atol=1e-6)
    assert (out.gate[~b.present] == 0).all()
    assert (out.gate[b.present] > 0).all()
    for i, m in enumerate(ds3.modalities):                          # streams zeroed where missing
        assert (out.shared[m][~b.present[:, i]] == 0).all()
        assert (out.private[m][~b.present[:, i]] == 0).all()


def test_missing_modality_output_independent_of_its_garbage(ds2):
    torch.manual_seed(0)
    model = DSRSD.for_dataset(ds2, d=16, hidden=32).eval()
    b = ds2[:8]
    present = b.present.clone()
    present[:4, 0] = False                                          # first 4 samples lack m1
    outs = []
    for fill in (0.0, 1e6, float("nan")):
        x = dict(b.x)
        x["m1"] = x["m1"].clone()
        x["m1"][:4] = fill if fill == fill else torch.full_like(x["m1"][:4], fill)
        if fill == 0.0:
            x["m1"][:4] = torch.randn(4, x["m1"].shape[1]) * 100
        outs.append(model(Batch(x, present, b.y)))
    for o in outs[1:]:
        assert torch.equal(o.logits, outs[0].logits)
        assert torch.equal(o.gate, outs[0].gate)
    assert torch.isfinite(outs[2].logits).all()
    terms = model.loss_terms(Batch(x, present, b.y), outs[2])
    assert all(torch.isfinite(v) for v in terms.values())


def test_fully_missing_sample_and_fully_missing_batch_give_no_nan(ds2):
    model = DSRSD.for_dataset(ds2, d=16, hidden=32)
    b = ds2[:6]
    present = b.present.clone()
    present[0] = False                                              # one sample with nothing
    out = model(Batch(b.x, present, b.y))
    assert (out.gate[0] == 0).all() and (out.fused[0] == 0).all()
    assert torch.allclose(out.gate[1:].sum(1), torch.ones(5))
    none = torch.zeros_like(present)
    out = model(Batch(b.x, none, b.y))
    terms = model.loss_terms(Batch(b.x, none, b.y), out)
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pairwise_terms_use_only_samples_with_both_modalities(ds2):
    torch.manual_seed(0)
    model = DSRSD.for_dataset(ds2, d=16, hidden=32)
    b = _with_missing(ds2, n=64, seed=3)
    both = b.present.all(1)
    assert 2 <= both.sum() < len(b)
    out = model(b)
    expected = info_nce(out.shared["m1"][both], out.shared["m2"][both], model.config.tau)
    assert model.loss_terms(b, out)["con"].item() == pytest.approx(expected.item(), rel=1e-5)
    # fewer than two complete pairs: no contrast, term is exactly 0 (and finite)
    present = b.present.clone()
    present[:, 1] = False
    present[0, 1] = True
    out = model(Batch(b.x, present, b.y))
    terms = model.loss_terms(Batch(b.x, present, b.y), out)
    assert terms["con"].item() == 0.0 and terms["align"].item() == 0.0


def test_residual_switch_really_removes_the_residual(ds2):
    b = ds2[:32]
    torch.manual_seed(0)
    res = DSRSD.for_dataset(ds2, d=16, hidden=32)
    torch.manual_seed(0)
    plain = DSRSD.for_dataset(ds2, d=16, hidden=32, residual=False)
    assert any(n.startswith("R_sh.") for n, _ in res.named_parameters())
    assert not any(n.startswith("R_sh.") for n, _ in plain.named_parameters())
    assert any(n.startswith("shared_mlp.") for n, _ in plain.named_parameters())
    o_res, o_plain = res(b), plain(b)
    # residual: s starts at z~ (near-zero correction); plain MLP: s is far from z~
    z = o_res.extras["base"]["m1"]
    assert (o_res.shared["m1"] - z).abs().max() < 0.05
    assert (o_plain.shared["m1"] - o_plain.extras["base"]["m1"]).abs().mean() > 0.3


def test_gate_switch_gives_uniform_weights_over_present(ds3):
    model = DSRSD.for_dataset(ds3, d=16, hidden=32, gate=False)
    assert not any(n.startswith("gate.") for n, _ in model.named_parameters())
    b = _with_missing(ds3)
    out = model(b)
    pres = b.present.float()
    assert torch.allclose(out.gate, pres / pres.sum(1, keepdim=True))


def test_private_difference_mode_has_no_private_mlp(ds2):
    model = DSRSD.for_dataset(ds2, d=16, hidden=32, private_mode="difference")
    assert not any(n.startswith("R_pr.") for n, _ in model.named_parameters())
    out = model(ds2[:8])
    z = out.extras["base"]["m2"]
    assert torch.allclose(out.private["m2"], z - out.shared["m2"], atol=1e-6)


def test_zero_lambda_removes_the_term_from_the_trained_loss(ds2):
    b = ds2[:32]
    for name in ("dec", "orth"):
        torch.manual_seed(0)
        model = DSRSD.for_dataset(ds2, d=16, hidden=32, **{f"lambda_{name}": 0.0})
        terms = model.loss_terms(b, model(b))
        assert terms[name].item() > 0                                # still logged, unweighted
        loss = Trainer(model, progress=False).weighted_loss(terms)
        w = model.loss_weights()
        expected = sum(w[k] * v for k, v in terms.items() if k != name)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        assert w[name] == 0.0


def test_loss_terms_finite_and_training_reduces_task_loss(ds2):
    torch.manual_seed(0)
    model = DSRSD.for_dataset(ds2, d=16, hidden=32)
    b = _with_missing(ds2, n=96)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    w = model.loss_weights()
    first = None
    for _ in range(25):
        out = model(b)
        terms = model.loss_terms(b, out)
        assert all(torch.isfinite(v) for v in terms.values())
        first = terms["task"].item() if first is None else first
        loss = sum(w[k] * v for k, v in terms.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert terms["task"].item() < 0.5 * first


def test_trainer_fits_dsrsd_on_synthetic_above_chance():
    ds = make_synthetic(n=400, dims=8, seed=2, snr=8.0)
    tr, va = ds.split((0.7, 0.3), seed=0)
    torch.manual_seed(0)
    model = DSRSD.for_dataset(tr, d=16, hidden=32)
    trainer = Trainer(model, epochs=5, batch_size=64, lr=3e-3, progress=False, seed=0)
    trainer.fit(tr, va)
    assert trainer.evaluate(va)["acc"] > 0.5                          # chance is ~0.25
    assert {"loss/dec", "loss/orth", "loss/con", "loss/align"} <= set(trainer.history.metrics("train"))


def test_clear_errors(ds2):
    model = DSRSD.for_dataset(ds2, d=8, hidden=16)
    b = ds2[:4]
    with pytest.raises(ValueError, match=r"batch.x\['m1'\] has per-sample shape \(5,\)"):
        model(Batch({"m1": torch.randn(4, 5), "m2": b.x["m2"]}, b.present, b.y))
    with pytest.raises(KeyError, match="the batch lacks \\['m2'\\]"):
        model(b.select(["m1"]))
    with pytest.raises(ValueError, match="lambda_dec must be a finite number >= 0, got -0.1"):
        DSRSD.for_dataset(ds2, lambda_dec=-0.1)
    with pytest.raises(ValueError, match="lambda_orth must be a finite number >= 0, got -1"):
        DSRSDConfig(lambda_orth=-1)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        DSRSD({"m1": (4,)}, 3)
    with pytest.raises(ValueError, match="private_mode must be one of"):
        DSRSD.for_dataset(ds2, private_mode="pca")
    with pytest.raises(ValueError, match="tau must be a finite number > 0, got 0.0"):
        DSRSD.for_dataset(ds2, tau=0.0)
    with pytest.raises(TypeError, match="unknown config fields \\['lambda_cca'\\]"):
        DSRSD.for_dataset(ds2, lambda_cca=1.0)


# ---------------------------------------------------------------- baselines
@pytest.mark.parametrize("cls", [GatedFusion, CoAttention])
def test_baselines_with_missing_modalities(cls, ds3):
    torch.manual_seed(0)
    model = cls.for_dataset(ds3, d=16, hidden=32)
    b = drop_modalities(ds3, 0.6, seed=1, keep_one=False)[:48]
    assert (~b.present.any(1)).any() and (b.present.sum(1) == 1).any()   # fully missing + lone ones
    out = model(b)
    assert out.logits.shape == (48, ds3.n_classes) and torch.isfinite(out.logits).all()
    model.loss_terms(b, out)["task"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # garbage in a missing modality does not change anything
    x = {m: t.clone() for m, t in b.x.items()}
    for i, m in enumerate(ds3.modalities):
        x[m][~b.present[:, i]] = float("nan")
    out2 = model(Batch(x, b.present, b.y))
    assert torch.equal(out.logits, out2.logits)


def test_gated_fusion_gate_masked_and_coattention_never_attends_to_missing(ds3):
    b = drop_modalities(ds3, 0.5, seed=2)[:40]
    out = GatedFusion.for_dataset(ds3, d=16, hidden=32)(b)
    assert (out.gate[~b.present] == 0).all()
    assert torch.allclose(out.gate.sum(1), torch.ones(40), atol=1e-6)
    co = CoAttention.for_dataset(ds3, d=16, hidden=32)(b)
    attn = co.extras["attention"]                                    # [B, M(query), M(key)]
    assert (attn[~b.present[:, None, :].expand_as(attn)] == 0).all()
    assert (torch.diagonal(attn, dim1=1, dim2=2) == 0).all()        # cross-modal only
    with pytest.raises(ValueError, match="heads must be an integer >= 1 that divides d=16, got heads=3"):
        CoAttention.for_dataset(ds3, d=16, heads=3)


def test_baselines_learn_on_synthetic():
    ds = make_synthetic(n=200, dims=8, seed=4, snr=8.0)
    b = ds[:96]
    for cls in (GatedFusion, CoAttention):
        torch.manual_seed(0)
        model = cls.for_dataset(ds, d=16, hidden=32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        first = None
        for _ in range(25):
            loss = model.loss_terms(b, model(b))["task"]
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.5 * first, cls.__name__


# ---------------------------------------------------------------- notebook-01 protocols
def test_stream_probes_and_separation_on_known_factors(ds2):
    from nbkit.experiments import nb01_residual as ex

    model = DSRSD.for_dataset(ds2, d=8, hidden=16)
    pr = ex.stream_probes(model, ds2, seed=0)
    assert set(pr.stream) == {"input", "shared", "private"}
    assert set(pr.target) == {"shared", "private/m1", "private/m2"} and set(pr.metric) == {"R2"}
    s = pr.set_index(["representation", "target"]).score
    # the raw input of m1 carries m1's private factors, not m2's (catches mixed-up targets)
    assert s["input/m1", "private/m1"] > s["input/m1", "private/m2"] + 0.3
    grid = ex.probe_matrix(pr)
    assert grid.shape == (6, 3)
    sep = ex.separation(pr)
    row = sep[sep.modality == "m1"].iloc[0]
    expected = (s["shared/m1", "shared"] - s["private/m1", "shared"]
                + s["private/m1", "private/m1"] - s["shared/m1", "private/m1"])
    assert row.separation == pytest.approx(expected)
    cls = ex.stream_probes(model, ds2, targets=["class"], include_inputs=False)
    assert set(cls.metric) == {"accuracy"} and len(cls) == 4
    with pytest.raises(KeyError, match="targets \\['voice'\\] are not among ds.factors"):
        ex.stream_probes(model, ds2, targets=["voice"])


def test_stream_probes_skip_missing_samples_and_embeddings(ds2):
    from nbkit.experiments import nb01_residual as ex

    model = DSRSD.for_dataset(ds2, d=8, hidden=16)
    dropped = drop_modalities(ds2, 0.3, seed=0)
    pr = ex.stream_probes(model, dropped, targets={"label": dropped.y}, include_inputs=False)
    assert len(pr) == 4 and pr.score.between(0, 1).all()
    emb = ex.stream_embeddings(model, dropped, "m2", method="pca", n=30, seed=1)
    assert emb["shared"].shape == emb["private"].shape == (30, 2)
    assert dropped.present[torch.as_tensor(emb["index"]), 1].all()     # only samples that have m2
    assert (emb["y"] == dropped.y[torch.as_tensor(emb["index"])].numpy()).all()
    with pytest.raises(KeyError, match="modality 'm3' is not among"):
        ex.stream_embeddings(model, dropped, "m3")


def test_residual_vs_plain_and_summary_table():
    from nbkit.experiments import nb01_residual as ex

    ds = make_synthetic(n=160, dims=8, seed=5)
    tr, va, te = ds.split((0.5, 0.2, 0.3), seed=0)
    metrics, probes, models = ex.residual_vs_plain(tr, va, te, seeds=[0], config=dict(d=8, hidden=16),
                                                   train_config=dict(ex.TRAIN, epochs=1), progress=False,
                                                   return_models=True)
    assert list(metrics.variant) == ["residual", "plain MLP"]
    assert {"acc", "auc", "separation", "shared_on_private"} <= set(metrics.columns)
    assert models[("plain MLP", 0)][0].config.residual is False
    sep = ex.separation(probes)
    assert set(sep.variant) == {"residual", "plain MLP"} and len(sep) == 4
    table = ex.summary_01(metrics, sep, {"acc": 0.5}, None)
    assert {"data", "model", "quantity", "mean", "std", "n_seeds"} == set(table.columns)
    acc = table[(table.model == "plain MLP") & (table.quantity == "test accuracy")]["mean"].item()
    assert acc == pytest.approx(metrics[metrics.variant == "plain MLP"].acc.item())


def test_throughput_and_benchmark_script(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dsrsd.py"
    spec = importlib.util.spec_from_file_location("bench_dsrsd", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    throughput = bench.throughput
    ds = make_synthetic(n=64, dims=8, seed=0)
    rates = throughput(DSRSD.for_dataset(ds, d=8, hidden=16), ds, batch_size=16, steps=2, warmup=1, repeats=2)
    assert len(rates) == 2 and all(r > 0 for r in rates)
    with pytest.raises(ValueError, match="fewer than batch_size=128"):
        throughput(DSRSD.for_dataset(ds), ds)
    assert bench.main(["--n", "64", "--dims", "8", "--d", "8", "--hidden", "16", "--batch-size", "16",
                       "--steps", "2", "--warmup", "1", "--repeats", "1", "--threads", "0"]) == 0
    out = capsys.readouterr().out
    for name in ("DSRSD", "EarlyFusion", "LateFusion"):
        assert name in out
    assert "samples/s" in out and "1.00x" in out
    with pytest.raises(SystemExit):
        bench.main(["--modalities", "1"])


# ------------------------------------------------ notebooks 01/02 teaching (issue 13)
def test_equations_1_to_3_written_out_match_the_model(ds2):
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = DSRSD.for_dataset(ds2, d=16, hidden=32)
    b = ds2[:8]
    out = model(b)
    h = model.encode(b)["m2"]
    lin, ln = model.base["m2"]
    z = F.layer_norm(h @ lin.weight.T + lin.bias, (16,), ln.weight, ln.bias)
    s = z + F.gelu(z @ model.R_sh[0].weight.T + model.R_sh[0].bias) @ model.R_sh[2].weight.T + model.R_sh[2].bias
    p = F.gelu(z @ model.R_pr["m2"][0].weight.T + model.R_pr["m2"][0].bias) @ model.R_pr["m2"][2].weight.T \
        + model.R_pr["m2"][2].bias
    assert torch.allclose(z, out.extras["base"]["m2"], atol=1e-6)
    assert torch.allclose(s, out.shared["m2"], atol=1e-6) and torch.allclose(p, out.private["m2"], atol=1e-6)


def test_residual_size_starts_near_zero_for_the_residual_head_and_near_one_for_the_plain(ds2):
    from nbkit.experiments import nb01_residual as ex

    torch.manual_seed(0)
    res = DSRSD.for_dataset(ds2, d=16, hidden=32)
    plain = DSRSD.for_dataset(ds2, d=16, hidden=32, residual=False)
    size = ex.residual_size(res, ds2)
    with torch.no_grad():
        z = res.eval()(ds2[:len(ds2)]).extras["base"]["m1"]
        by_hand = float((res.R_sh(z).norm(dim=1) / z.norm(dim=1)).mean())
    assert size["m1"] == pytest.approx(by_hand, rel=1e-5) and size["m1"] < 0.05       # ||R_sh(z~)|| / ||z~||, tiny at init
    assert 0.8 < ex.residual_size(plain, ds2)["m1"] < 1.5                           # MLP(z~) is another vector
    dropped = drop_modalities(ds2, 0.5, seed=0)
    assert set(ex.residual_size(res, dropped)) == {"m1", "m2"}                      # only present samples count


def test_residual_monitor_measures_without_changing_training(ds2):
    from nbkit.experiments import fit
    from nbkit.experiments import nb01_residual as ex

    tr, va = ds2.subset(torch.arange(180)), ds2.subset(torch.arange(180, 256))
    tc = dict(epochs=3, batch_size=32, progress=False)
    plain_run, _ = fit(DSRSD, tr, va, seed=1, config=dict(d=16, hidden=32), train_config=tc)
    mon = ex.ResidualMonitor(va)
    watched, trainer = fit(DSRSD, tr, va, seed=1, config=dict(d=16, hidden=32), train_config=tc, regulator=mon)
    for (k, a), b in zip(plain_run.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), k                                                  # bit-identical training
    assert [r["epoch"] for r in mon.rows if r["modality"] == "m1"] == [0, 1, 2, 3]
    assert "reg/residual/m1" in trainer.history.metrics("train")
    curves = ex.residual_curves({("residual", 1): (watched, trainer)})
    assert list(curves.columns) == ["variant", "seed", "epoch", "modality", "ratio", "best_epoch"]
    assert curves.best_epoch.iloc[0] == trainer.best_epoch + 1
    assert "before training" in ex.read_residual(curves)
    with pytest.raises(ValueError, match="no ResidualMonitor"):
        ex.residual_curves({("x", 0): (watched, fit(DSRSD, tr, None, config=dict(d=16, hidden=32),
                                                    train_config=dict(tc, epochs=1))[1])})
    with pytest.raises(TypeError, match="data must be a non-empty MultimodalDataset"):
        ex.ResidualMonitor(None)


def test_reconstruction_variant_adds_one_term_and_nothing_else(ds2):
    import torch.nn.functional as F

    from nbkit.experiments import fit
    from nbkit.experiments import nb01_residual as ex

    torch.manual_seed(0)
    model = ex.DSRSDRec.for_dataset(ds2, d=16, hidden=32, lambda_rec=1.0)
    b = drop_modalities(ds2, 0.5, seed=2)[:40]
    out = model(b)
    terms = model.loss_terms(b, out)
    assert set(terms) == TERMS | {"rec"}
    by_hand = sum(F.mse_loss(model.decoder[m](out.private[m][b.present[:, i]]), b.x[m][b.present[:, i]])
                  for i, m in enumerate(ds2.modalities)) / 2
    assert terms["rec"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert model.loss_weights()["rec"] == 1.0
    # lambda_rec = 0: the decoder is built (after every DSRSD part) but never trained into the rest
    tc = dict(epochs=2, batch_size=32, progress=False)
    a, _ = fit(DSRSD, ds2, None, seed=3, config=dict(d=16, hidden=32), train_config=tc)
    r, _ = fit(ex.DSRSDRec, ds2, None, seed=3, config=dict(d=16, hidden=32, lambda_rec=0.0), train_config=tc)
    assert torch.allclose(a.eval()(ds2[:20]).logits, r.eval()(ds2[:20]).logits, atol=1e-6)
    with pytest.raises(ValueError, match="lambda_rec must be a finite number >= 0, got nan"):
        ex.DSRSDRecConfig(lambda_rec=float("nan"))
    with pytest.raises(TypeError, match="model_cls must be DSRSD or a subclass"):
        ex.residual_vs_plain(ds2, ds2, ds2, model_cls=GatedFusion)


def test_readings_of_notebook_01():
    import pandas as pd

    from nbkit.experiments import nb01_residual as ex
    from nbkit.train import History

    h = History()
    for e, (t, d) in enumerate([(1.0, 0.1), (0.5, 0.3), (0.2, 0.2)]):
        h.log(e, e, "train", {"loss/task": t, "loss/dec": d})
    text = ex.read_terms(h, terms=("task", "dec"))
    assert "L_task falls from 1 to 0.2" in text and "L_dec rises from 0.1 to 0.2 (highest in epoch 2)" in text
    maps = pd.DataFrame([{"map": "s", "kind": "purity", "score": 0.80, "chance": 0.3},
                         {"map": "p", "kind": "purity", "score": 0.78, "chance": 0.3}])
    assert "about as cleanly" in ex.read_maps(maps, {"shared": 0.9, "private": 0.9}, "m1")
    maps.loc[1, "score"] = 0.31
    assert "less cleanly" in ex.read_maps(maps, {"shared": 0.9, "private": 0.4}, "m1")
    grid = pd.DataFrame({"class": [0.9, 0.9], "voice": [0.5, 0.1], "gender": [0.9, 0.5]},
                        index=["shared/audio", "private/audio"])
    assert "keeps much of the voice" in ex.read_avdigits(grid, {"voice": 0.05, "gender": 0.5})


def test_orthogonality_of_a_stream_with_itself_and_offdiag_mass(ds2):
    from nbkit.experiments import nb02_decorrelation as gx
    from nbkit.losses import covariance, decorrelation, orthogonality

    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=g) @ torch.randn(5, 5, generator=g)
    d = z.shape[1]
    # ||C||_F^2 = d + d(d-1) L_dec, so L_orth(s, s) = (1 + (d-1) L_dec) / d (notebook 02, exercise 3)
    assert orthogonality(z, z).item() == pytest.approx((1 + (d - 1) * decorrelation(z).item()) / d, rel=1e-3)
    assert gx.offdiag_mass(covariance(z).numpy()) == pytest.approx(decorrelation(z).item(), rel=1e-6)
    dup = torch.stack([z[:, 0], z[:, 0], torch.randn(200, generator=g)], 1)
    assert decorrelation(dup).item() == pytest.approx(1 / 3, abs=0.02)            # one duplicated pair of 3 dims
    with pytest.raises(ValueError, match="square"):
        gx.offdiag_mass([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def test_shared_maps_and_grid_readings():
    import pandas as pd

    from nbkit.experiments import nb02_decorrelation as gx

    train, val, test = gx.make_data(n=300, dims=8, seed=0)
    panels = gx.shared_maps(train, test, weights=(0.0, 1.0), config=dict(d=8, hidden=16),
                            train_config=dict(gx.TRAIN, epochs=1), n=20, method="pca")
    assert len(panels) == 4
    xy, lab, name = panels["λ_dec = λ_orth = 1, colour = modality"]
    assert xy.shape == (40, 2) and name == "modality" and sorted(set(lab)) == ["m1", "m2"]
    rows = [{"lambda_dec": a, "lambda_orth": b, "seed": 0, "auc": 0.9, "offdiag": 0.2 - 0.1 * a, "orth": 0.5 - 0.4 * b,
             "disentanglement": 0.1, "r2_shared_to_private": 0.3 + 0.1 * b} for a in (0.0, 1.0) for b in (0.0, 1.0)]
    grid = pd.DataFrame(rows)
    assert "0.200 → 0.100" in gx.read_grid(grid) and "0.500 → 0.100" in gx.read_grid(grid)
    assert "rises from 0.300 to 0.400" in gx.read_leak(grid)
    with pytest.raises(ValueError, match="weights"):
        gx.shared_maps(train, test, weights=[])
