"""A careless user's walk through the public API: every bad value is rejected where it enters,
with an error of the right type whose message names the argument (issue 14). Then the safe
conversions a user expects, and a divergence soak: DSRSD at huge loss weights ends finite or
with the clear divergence error, never as a silent NaN model."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from nbkit import evaluate as E
from nbkit import losses as L
from nbkit import regulate as R
from nbkit.data import Batch, MultimodalDataset, add_noise, drop_modalities, load_avdigits, make_synthetic
from nbkit.models import DSRSD, CoAttention, EarlyFusion, GatedFusion, LateFusion, Unimodal
from nbkit.models.base import ModelConfig
from nbkit.models.dsrsd import DSRSDConfig
from nbkit.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint, save_checkpoint

NAN, INF = float("nan"), float("inf")
DIMS = {"m1": (32,), "m2": (32,)}
Y8 = torch.arange(8) % 2


def xs(**over):
    g = torch.Generator().manual_seed(0)
    x = {"a": torch.randn(8, 3, generator=g), "b": torch.randn(8, 4, generator=g)}
    x.update(over)
    return x


def ds64():
    return make_synthetic(n=64, seed=0)


def with_nan(t):
    t = t.clone()
    t[0, 0] = NAN
    return t


A = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
B = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
P8 = torch.ones(8, 2, dtype=torch.bool)

# (id, call, expected exception type, regex the message must contain: names the argument)
CASES = [
    # ---- datasets
    ("dataset x not a dict", lambda: MultimodalDataset([torch.zeros(8, 3)], Y8), ValueError, r"^x must be a non-empty dict"),
    ("dataset x value a string", lambda: MultimodalDataset({"a": "abc"}, Y8), TypeError, r"x\['a'\] must be a tensor"),
    ("dataset uint8 features", lambda: MultimodalDataset({"a": torch.zeros(8, 3, dtype=torch.uint8)}, Y8), TypeError,
     r"x\['a'\] must hold floating-point features.*uint8.*/ 255"),
    ("dataset int64 features", lambda: MultimodalDataset({"a": torch.zeros(8, 3, dtype=torch.long)}, Y8), TypeError,
     r"x\['a'\] must hold floating-point features"),
    ("dataset bool features", lambda: MultimodalDataset({"a": torch.ones(8, 3, dtype=torch.bool)}, Y8), TypeError,
     r"x\['a'\] must hold floating-point"),
    ("dataset complex features", lambda: MultimodalDataset({"a": torch.ones(8, 3, dtype=torch.complex64)}, Y8), TypeError,
     r"x\['a'\] must hold floating-point"),
    ("dataset NaN features", lambda: MultimodalDataset(xs(a=with_nan(torch.zeros(8, 3))), Y8), ValueError,
     r"x\['a'\] must be finite, got 1 NaN"),
    ("dataset empty modality name", lambda: MultimodalDataset({"": torch.zeros(8, 3)}, Y8), ValueError, r"modality names"),
    ("dataset y 2-D", lambda: MultimodalDataset(xs(), torch.zeros(8, 1).long()), ValueError, r"^y must have shape \[N\]"),
    ("dataset y -1", lambda: MultimodalDataset(xs(), torch.tensor([0, 1, -1, 0, 1, 0, 1, 0])), ValueError,
     r"^y must hold class labels in >= 0, got labels from -1"),
    ("dataset y -100", lambda: MultimodalDataset(xs(), torch.tensor([0, 1, -100, 0, 1, 0, 1, 0])), ValueError,
     r"^y must hold class labels.*-100 is not a 'missing' code"),
    ("dataset y outside class_names", lambda: MultimodalDataset(xs(), torch.tensor([0, 1, 5, 0, 1, 0, 1, 0]), class_names=["a", "b"]),
     ValueError, r"^y must hold class labels in 0..1 \(one per class name\), got labels from 0 to 5"),
    ("dataset float y with class_names", lambda: MultimodalDataset(xs(), Y8.float(), class_names=["a", "b"]), TypeError,
     r"^y must hold integer class labels when class_names"),
    ("dataset class_names a string", lambda: MultimodalDataset(xs(), Y8, class_names="ab"), TypeError, r"^class_names must be a list"),
    ("dataset class_names duplicated", lambda: MultimodalDataset(xs(), Y8, class_names=["a", "a"]), ValueError,
     r"^class_names must be >= 2 distinct names"),
    ("dataset present 0.3", lambda: MultimodalDataset(xs(), Y8, present=torch.full((8, 2), 0.3)), ValueError,
     r"^present must be a bool mask \(or 0/1 values\)"),
    ("dataset present 2", lambda: MultimodalDataset(xs(), Y8, present=torch.full((8, 2), 2)), ValueError, r"^present must be a bool mask"),
    ("dataset present shape", lambda: MultimodalDataset(xs(), Y8, present=torch.ones(8, 3, dtype=torch.bool)), ValueError,
     r"^present must have shape \[8, 2\]"),
    ("dataset row without modality", lambda: MultimodalDataset(xs(), Y8, present=torch.tensor([[True, True]] * 7 + [[False, False]])),
     ValueError, r"^present marks 1 samples with no modality at all \(rows \[7\]\)"),
    ("dataset factors not a dict", lambda: MultimodalDataset(xs(), Y8, factors=[torch.zeros(8)]), TypeError, r"^factors must be a dict"),
    ("dataset factors rows", lambda: MultimodalDataset(xs(), Y8, factors={"f": torch.zeros(7)}), ValueError, r"^factors\['f'\] has 7 rows"),
    ("dataset info not a dict", lambda: MultimodalDataset(xs(), Y8, info=5), TypeError, r"^info must be a dict"),
    ("dataset name None", lambda: MultimodalDataset(xs(), Y8, name=None), TypeError, r"^name must be a string"),
    ("batches 2.5", lambda: next(ds64().batches(2.5)), TypeError, r"^batch_size must be an integer >= 1, got 2.5"),
    ("n_batches 0", lambda: ds64().n_batches(0), ValueError, r"^batch_size must be an integer >= 1, got 0"),
    ("split fractions string", lambda: ds64().split((0.5, "a")), TypeError, r"^fractions\[1\] must be"),
    ("split fractions NaN", lambda: ds64().split((0.5, NAN)), ValueError, r"^fractions\[1\] must be"),
    ("split seed 1.5", lambda: ds64().split(seed=1.5), TypeError, r"^seed must be an integer"),
    ("subset out of range", lambda: ds64().subset([0, 1000]), IndexError, r"^idx must hold positions in \[-64, 63\]"),
    ("subset float index", lambda: ds64().subset(torch.tensor([0.0, 1.0])), TypeError, r"^idx must hold integer positions"),
    ("subset mask length", lambda: ds64().subset(torch.ones(3, dtype=torch.bool)), ValueError, r"^idx as a bool mask must have shape \[64\]"),
    # ---- Batch
    ("Batch y a list", lambda: Batch(xs(), P8, [0] * 8), TypeError, r"^Batch.y must be a torch.Tensor"),
    ("Batch y 2-D", lambda: Batch(xs(), P8, torch.zeros(8, 2).long()), ValueError, r"^Batch.y must have shape \[B\]"),
    ("Batch present float", lambda: Batch(xs(), P8.float(), Y8), ValueError, r"^Batch.present must be a bool tensor"),
    ("Batch int features", lambda: Batch(xs(a=torch.zeros(8, 3, dtype=torch.long)), P8, Y8), TypeError,
     r"^Batch.x\['a'\] must hold floating-point"),
    ("Batch factors rows", lambda: Batch(xs(), P8, Y8, factors={"f": torch.zeros(3)}), ValueError, r"^Batch.factors\['f'\] must be a tensor with 8 rows"),
    # ---- synthetic
    ("synthetic n 2.5", lambda: make_synthetic(n=2.5), TypeError, r"^n must be an integer >= 2"),
    ("synthetic dims 2.5", lambda: make_synthetic(n=50, dims=2.5), TypeError, r"^dims must be an integer >= 1"),
    ("synthetic dims str", lambda: make_synthetic(n=50, dims="32"), TypeError, r"^dims must be an int or 2 ints"),
    ("synthetic k_private 1.5", lambda: make_synthetic(n=50, k_private=1.5), TypeError, r"^k_private must be an integer"),
    ("synthetic snr NaN", lambda: make_synthetic(n=50, snr=NAN), ValueError, r"^snr must be a number \(inf allowed\) > 0, got nan"),
    ("synthetic snr list NaN", lambda: make_synthetic(n=50, snr=[1.0, NAN]), ValueError, r"^snr\[1\] must be"),
    ("synthetic private_scale inf", lambda: make_synthetic(n=50, private_scale=INF), ValueError, r"^private_scale must be a finite number >= 0"),
    ("synthetic private_scale -1", lambda: make_synthetic(n=50, private_scale=-1.0), ValueError, r"^private_scale must be"),
    ("synthetic names str", lambda: make_synthetic(n=50, names="ab"), TypeError, r"^names must be a list"),
    ("synthetic seed str", lambda: make_synthetic(n=50, seed="a"), TypeError, r"^seed must be an integer"),
    # ---- corruption
    ("drop seed 1.5", lambda: drop_modalities(ds64(), 0.5, seed=1.5), TypeError, r"^seed must be an integer"),
    ("drop data a list", lambda: drop_modalities([1, 2], 0.5), TypeError, r"^data must be a MultimodalDataset or Batch"),
    ("drop keep_one str", lambda: drop_modalities(ds64(), 0.5, keep_one="no"), ValueError, r"^keep_one must be one of \[True, False\]"),
    ("noise level NaN tensor", lambda: add_noise(ds64(), torch.full((64,), NAN)), ValueError, r"^level as a per-sample tensor must be finite"),
    ("noise level inf", lambda: add_noise(ds64(), INF), ValueError, r"^level must be a finite number >= 0"),
    # ---- model configs and construction
    ("model d 2.5", lambda: EarlyFusion(DIMS, 4, d=2.5), TypeError, r"^d must be an integer >= 1, got 2.5"),
    ("model hidden 0", lambda: LateFusion(DIMS, 4, hidden=0), ValueError, r"^hidden must be an integer >= 1, got 0"),
    ("model dropout 1.5", lambda: EarlyFusion(DIMS, 4, dropout=1.5), ValueError, r"^dropout must be a finite number >= 0 and < 1, got 1.5"),
    ("model dropout NaN", lambda: CoAttention(DIMS, 4, dropout=NAN), ValueError, r"^dropout must be"),
    ("model dropout 1", lambda: GatedFusion(DIMS, 4, dropout=1.0), ValueError, r"^dropout must be .* < 1"),
    ("lambda_dec NaN", lambda: DSRSD(DIMS, 4, lambda_dec=NAN), ValueError, r"^lambda_dec must be a finite number >= 0, got nan"),
    ("lambda_con inf", lambda: DSRSD(DIMS, 4, lambda_con=INF), ValueError, r"^lambda_con must be a finite number >= 0, got inf"),
    ("lambda_align True", lambda: DSRSD(DIMS, 4, lambda_align=True), TypeError, r"^lambda_align must be a finite number"),
    ("lambda_orth str", lambda: DSRSDConfig(lambda_orth="0.1"), TypeError, r"^lambda_orth must be"),
    ("lambda_uni NaN", lambda: EarlyFusion(DIMS, 4, aux_heads=True, lambda_uni=NAN), ValueError, r"^lambda_uni must be"),
    ("tau inf", lambda: DSRSD(DIMS, 4, tau=INF), ValueError, r"^tau must be a finite number > 0, got inf"),
    ("tau str", lambda: DSRSD(DIMS, 4, tau="0.1"), TypeError, r"^tau must be"),
    ("residual str", lambda: DSRSD(DIMS, 4, residual="no"), ValueError, r"^residual must be one of \[True, False\]"),
    ("gate str", lambda: DSRSD(DIMS, 4, gate="yes"), ValueError, r"^gate must be one of"),
    ("aux_heads str", lambda: EarlyFusion(DIMS, 4, aux_heads="no"), ValueError, r"^aux_heads must be one of"),
    ("heads 2.5", lambda: CoAttention(DIMS, 4, heads=2.5), TypeError, r"^heads must be an integer >= 1"),
    ("heads 3 with d 64", lambda: CoAttention(DIMS, 4, heads=3), ValueError, r"^heads must be an integer >= 1 that divides d=64"),
    ("dims value an int", lambda: EarlyFusion({"m1": 32, "m2": 32}, 4), ValueError, r"^dims\['m1'\] must be a per-sample shape"),
    ("dims value (0,)", lambda: EarlyFusion({"m1": (0,), "m2": (32,)}, 4), ValueError, r"^dims\['m1'\]\[0\] must be an integer >= 1"),
    ("dims 3-D shape", lambda: EarlyFusion({"m1": (2, 3, 4), "m2": (32,)}, 4), ValueError, r"^dims\['m1'\] must be a per-sample shape \(D,\) or \(T, D\)"),
    ("dims a list", lambda: EarlyFusion([(32,), (32,)], 4), ValueError, r"^dims must name at least one modality"),
    ("n_classes 2.5", lambda: EarlyFusion(DIMS, 2.5), TypeError, r"^n_classes must be an integer >= 2, got 2.5"),
    ("n_classes 1", lambda: EarlyFusion(DIMS, 1), ValueError, r"^n_classes must be an integer >= 2"),
    ("config of another model", lambda: EarlyFusion(DIMS, 4, DSRSDConfig()), TypeError, r"^config must be a EarlyFusionConfig"),
    ("config a parent ModelConfig", lambda: DSRSD(DIMS, 4, ModelConfig()), TypeError, r"^config must be a DSRSDConfig"),
    ("config dict unknown field", lambda: EarlyFusion(DIMS, 4, {"lambda_nope": 1.0}), TypeError, r"unknown config fields \['lambda_nope'\]"),
    ("DSRSD one modality", lambda: DSRSD({"m1": (32,)}, 4), ValueError, r"^dims must name at least 2 modalities for DSRSD"),
    ("Unimodal modality int", lambda: Unimodal(DIMS, 4, modality=1), TypeError, r"^modality must be the name"),
    # ---- forward and loss terms
    ("forward NaN present entry", lambda: EarlyFusion(DIMS, 4)(ds64()[:8].with_x({**ds64()[:8].x, "m1": with_nan(ds64().x["m1"][:8])})),
     ValueError, r"^batch.x\['m1'\] \(present entries\) must be finite, got 1 NaN"),
    ("forward a dataset", lambda: EarlyFusion(DIMS, 4)(ds64()), TypeError, r"^batch must be an nbkit Batch, got MultimodalDataset \(index it"),
    ("loss_terms y -100", lambda: (lambda m, b: m.loss_terms(b, m(b)))(EarlyFusion(DIMS, 4), Batch(ds64()[:8].x, ds64()[:8].present, torch.tensor([-100] + [0] * 7))),
     ValueError, r"^y must hold class labels in 0..3 \(n_classes=4\), got labels from -100"),
    ("LateFusion y >= n_classes", lambda: (lambda m, b: m.loss_terms(b, m(b)))(LateFusion(DIMS, 4), Batch(ds64()[:8].x, ds64()[:8].present, torch.tensor([7] + [0] * 7))),
     ValueError, r"^y must hold class labels in 0..3"),
    ("loss_terms float y", lambda: (lambda m, b: m.loss_terms(b, m(b)))(DSRSD(DIMS, 4), Batch(ds64()[:8].x, ds64()[:8].present, torch.zeros(8))),
     TypeError, r"^y must hold integer class labels for DSRSD"),
    # ---- losses
    ("info_nce NaN a", lambda: L.info_nce(with_nan(A), B), ValueError, r"^info_nce: a must be finite, got 1 NaN"),
    ("info_nce inf b", lambda: L.info_nce(A, B.clone().fill_(INF)), ValueError, r"^info_nce: b must be finite"),
    ("decorrelation NaN z", lambda: L.decorrelation(with_nan(A)), ValueError, r"^decorrelation: z must be finite"),
    ("covariance NaN z", lambda: L.covariance(with_nan(A)), ValueError, r"^covariance: z must be finite"),
    ("orthogonality NaN p", lambda: L.orthogonality(A, with_nan(B)), ValueError, r"^orthogonality: p must be finite"),
    ("regression_alignment NaN target", lambda: L.regression_alignment(A, with_nan(B)), ValueError, r"^regression_alignment: target must be finite"),
    ("info_nce tau inf", lambda: L.info_nce(A, B, tau=INF), ValueError, r"^info_nce: tau must be a finite number > 0, got inf"),
    ("info_nce tau None", lambda: L.info_nce(A, B, tau=None), TypeError, r"^info_nce: tau must be"),
    ("info_nce symmetric str", lambda: L.info_nce(A, B, symmetric="no"), ValueError, r"^info_nce: symmetric must be one of"),
    ("decorrelation eps -1", lambda: L.decorrelation(A, eps=-1.0), ValueError, r"^covariance: eps must be a finite number > 0"),
    ("orthogonality eps 0", lambda: L.orthogonality(A, B, eps=0.0), ValueError, r"^orthogonality: eps must be a finite number > 0"),
    ("regression_alignment kind", lambda: L.regression_alignment(A, B, kind="l1"), ValueError, r"^regression_alignment: kind must be 'mse' or 'cos', got 'l1'"),
    ("info_nce complex", lambda: L.info_nce(A.to(torch.complex64), B), TypeError, r"^info_nce: a must hold real numbers"),
    # ---- evaluate
    ("accuracy NaN logits", lambda: E.accuracy(torch.full((20, 3), NAN), torch.arange(20) % 3), ValueError, r"^logits must be finite, got 60 NaN"),
    ("accuracy y 2-D", lambda: E.accuracy(torch.randn(20, 3), (torch.arange(20) % 3)[:, None]), ValueError, r"^y must have shape \[N\]"),
    ("auc 1-D logits", lambda: E.auc(torch.randn(20), torch.arange(20) % 3), ValueError, r"^logits must be an \[N, C\] array"),
    ("auc labels outside", lambda: E.auc(torch.randn(20, 3), torch.arange(20) % 3 + 5), ValueError, r"^y must hold class labels in 0..2"),
    ("collect batch_size 2.5", lambda: E.collect(EarlyFusion(DIMS, 4), ds64(), batch_size=2.5), TypeError, r"^batch_size must be an integer"),
    ("collect ds a list", lambda: E.collect(EarlyFusion(DIMS, 4), [1, 2]), TypeError, r"^ds must be a MultimodalDataset"),
    ("collect model a str", lambda: E.collect("model", ds64()), TypeError, r"^model must be a torch.nn.Module"),
    ("linear_probe NaN z", lambda: E.linear_probe(torch.full((40, 3), NAN), torch.arange(40) % 2), ValueError, r"^z must be finite"),
    ("linear_probe NaN target", lambda: E.linear_probe(torch.randn(40, 3), torch.full((40,), NAN)), ValueError, r"^target must be finite"),
    ("linear_probe test_size 1.5", lambda: E.linear_probe(torch.randn(40, 3), torch.arange(40) % 2, test_size=1.5), ValueError, r"^test_size must be"),
    ("linear_probe seed str", lambda: E.linear_probe(torch.randn(40, 3), torch.arange(40) % 2, seed="a"), TypeError, r"^seed must be an integer"),
    ("project_2d method None", lambda: E.project_2d(torch.randn(20, 3), method=None), ValueError, r"^method must be 'pca', 'tsne' or 'umap'"),
    ("project_2d NaN z", lambda: E.project_2d(torch.full((20, 3), NAN)), ValueError, r"^z must be finite"),
    ("robustness levels NaN", lambda: E.robustness_curve(EarlyFusion(DIMS, 4), ds64(), levels=[0.0, NAN]), ValueError, r"^levels\[1\] must be"),
    ("robustness batch_size 0", lambda: E.robustness_curve(EarlyFusion(DIMS, 4), ds64(), batch_size=0), ValueError, r"^batch_size must be"),
    ("retrieval ks an int", lambda: E.retrieval_metrics(A, B, ks=5), TypeError, r"^ks must be a list"),
    ("retrieval one name", lambda: E.retrieval_metrics(A, B, names=("a",)), ValueError, r"^names must be a pair"),
    # ---- TrainConfig / Trainer (the lead's checks, tested here)
    ("epochs 2.5", lambda: TrainConfig(epochs=2.5), TypeError, r"^epochs must be an integer >= 1, got 2.5"),
    ("epochs 0", lambda: TrainConfig(epochs=0), ValueError, r"^epochs must be an integer >= 1, got 0"),
    ("lr NaN", lambda: TrainConfig(lr=NAN), ValueError, r"^lr must be a finite number > 0, got nan"),
    ("lr inf", lambda: TrainConfig(lr=INF), ValueError, r"^lr must be a finite number > 0"),
    ("weight_decay -1", lambda: TrainConfig(weight_decay=-1), ValueError, r"^weight_decay must be a finite number >= 0"),
    ("momentum 1", lambda: TrainConfig(momentum=1.0), ValueError, r"^momentum must be a finite number >= 0 and < 1"),
    ("grad_clip -1 (gradient ascent)", lambda: TrainConfig(grad_clip=-1.0), ValueError, r"^grad_clip must be a finite number > 0"),
    ("grad_clip NaN", lambda: TrainConfig(grad_clip=NAN), ValueError, r"^grad_clip must be"),
    ("patience -1", lambda: TrainConfig(patience=-1), ValueError, r"^patience must be an integer >= 0"),
    ("patience 1.5", lambda: TrainConfig(patience=1.5), TypeError, r"^patience must be an integer"),
    ("eval_batch_size 0", lambda: TrainConfig(eval_batch_size=0), ValueError, r"^eval_batch_size must be an integer >= 1"),
    ("threads 0", lambda: TrainConfig(threads=0), ValueError, r"^threads must be an integer >= 1"),
    ("device tpu", lambda: TrainConfig(device="tpu"), ValueError, r"^device must be 'auto', 'cpu'"),
    ("mode up", lambda: TrainConfig(mode="up"), ValueError, r"^mode must be one of \['max', 'min'\]"),
    ("monitor empty", lambda: TrainConfig(monitor=""), ValueError, r"^monitor must be the name of a validation metric"),
    ("restore_best str", lambda: TrainConfig(restore_best="no"), ValueError, r"^restore_best must be one of \[True, False\]"),
    ("drop_last str", lambda: TrainConfig(drop_last="no"), ValueError, r"^drop_last must be one of"),
    ("checkpoint an int", lambda: TrainConfig(checkpoint=5), TypeError, r"^checkpoint must be a file path"),
    ("Trainer model str", lambda: Trainer("model"), TypeError, r"^model must be a torch.nn.Module"),
    ("Trainer regulator str", lambda: Trainer(EarlyFusion(DIMS, 4), regulator="OGM-GE"), TypeError, r"^regulator must be an nbkit.regulate.Regulator"),
    ("fit empty val", lambda: Trainer(EarlyFusion(DIMS, 4), epochs=1, progress=False).fit(ds64(), ds64().subset(torch.tensor([], dtype=torch.long))),
     ValueError, r"^val must hold at least 1 sample"),
    ("fit monitor f1 before training", lambda: Trainer(EarlyFusion(DIMS, 4), epochs=1, monitor="f1", progress=False).fit(ds64(), ds64()),
     KeyError, r"monitor='f1' is not among the validation metrics"),
    ("fit float y into a classifier", lambda: Trainer(EarlyFusion(DIMS, 4), epochs=1, progress=False).fit(ds64()._like(ds64().x, ds64().present, y=ds64().y.float())),
     TypeError, r"^train.y must hold integer class labels for EarlyFusion"),
    ("fit labels >= n_classes", lambda: Trainer(EarlyFusion(DIMS, 2), epochs=1, progress=False).fit(ds64()), ValueError,
     r"^train.y must hold class labels in 0..1 \(the model's n_classes=2\)"),
    ("fit lambda NaN set after build", lambda: Trainer((lambda m: (setattr(m.config, "lambda_dec", NAN), m)[1])(DSRSD(DIMS, 4)), epochs=1, progress=False).fit(ds64()),
     ValueError, r"^lambda_dec must be a finite number >= 0, got nan"),
    ("fit val with other dims, before training", lambda: Trainer(EarlyFusion(DIMS, 4), epochs=1, progress=False).fit(ds64(), make_synthetic(n=64, dims=[5, 32])),
     ValueError, r"^val.x\['m1'\] has per-sample shape \(5,\), the model was built for \(32,\)"),
    ("batches generator str", lambda: next(ds64().batches(8, shuffle=True, generator="a")), TypeError, r"^generator must be a torch.Generator"),
    ("avdigits path an int", lambda: load_avdigits(5), TypeError, r"^path must be a file or folder path"),
    # ---- regulators
    ("OGMGE seed str", lambda: R.OGMGE(seed="a"), TypeError, r"^seed must be an integer"),
    ("OGMGE modalities str", lambda: R.OGMGE(modalities="m1"), TypeError, r"^modalities must be a list of modality names"),
    ("RedReg ema 1.5", lambda: R.RedReg(ema=1.5), ValueError, r"^ema must be"),
    ("ModalityDropout p 1.5", lambda: R.ModalityDropout(p=1.5), ValueError, r"^p must be a finite number >= 0 and <= 1"),
    ("GradScale scale NaN", lambda: R.GradScale({"m1": NAN}), ValueError, r"^scales\['m1'\] must be"),
    # ---- avdigits arguments
    ("avdigits image_noise str", lambda: load_avdigits(image_noise="0.5", n=20), TypeError, r"^image_noise must be a finite number >= 0"),
    ("avdigits n 10.5", lambda: load_avdigits(n=10.5), TypeError, r"^n must be an integer >= 10, got 10.5"),
    ("avdigits n 6000", lambda: load_avdigits(n=6000), ValueError, r"^n must be an integer between 10 and 5000"),
    ("avdigits seed 1.5", lambda: load_avdigits(n=20, seed=1.5), TypeError, r"^seed must be an integer"),
    ("avdigits check str", lambda: load_avdigits(n=20, check="yes"), ValueError, r"^check must be one of \[True, False\]"),
    ("avdigits standardize_audio str", lambda: load_avdigits(n=20, standardize_audio="no"), ValueError, r"^standardize_audio must be one of"),
]


def test_the_walk_has_at_least_60_cases_over_every_area():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)          # unique ids


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_naming_the_argument(call, exc, pattern):
    with pytest.raises(exc) as info:
        call()
    msg = info.value.args[0] if isinstance(info.value, KeyError) else str(info.value)   # KeyError quotes str()
    assert re.search(pattern, msg), f"message does not name the argument as expected:\n  {msg}"
    # the error comes from nbkit's own checks, not from deep inside torch, numpy or sklearn
    frames = [str(f.path) for f in info.traceback]
    assert any("/nbkit/" in f for f in frames[-2:]), frames[-2:]


# --------------------------------------------------------------------------- conversions
def test_safe_conversions_are_made_once_and_work_downstream():
    a64 = np.random.default_rng(0).normal(size=(8, 3))                                  # numpy float64
    ds = MultimodalDataset({"a": a64, "b": torch.randn(8, 4).half()},
                           np.arange(8, dtype=np.int32) % 2, present=np.ones((8, 2), dtype=np.int64))
    assert ds.x["a"].dtype == torch.float32 and ds.x["b"].dtype == torch.float32
    assert torch.allclose(ds.x["a"].double(), torch.from_numpy(a64), atol=1e-6)
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == [0, 1] * 4
    assert ds.present.dtype == torch.bool and bool(ds.present.all())
    assert MultimodalDataset(xs(), (np.arange(8) % 2).astype(np.uint8)).y.dtype == torch.int64
    assert MultimodalDataset(xs(), np.arange(8) % 2 == 1).y.tolist() == [0, 1] * 4        # bool labels -> 0/1
    m = EarlyFusion.for_dataset(ds)
    assert torch.isfinite(m.loss_terms(ds[:8], m(ds[:8]))["task"])                      # trains after conversion
    # a Batch built by hand converts too (float64 -> float32, int32 -> int64), and keeps float32 as is
    b = Batch({"a": torch.randn(4, 3, dtype=torch.float64)}, torch.ones(4, 1, dtype=torch.bool), torch.zeros(4, dtype=torch.int32))
    assert b.x["a"].dtype == torch.float32 and b.y.dtype == torch.int64
    x32 = torch.randn(4, 3)
    assert Batch({"a": x32}, torch.ones(4, 1, dtype=torch.bool), torch.zeros(4).long()).x["a"] is x32
    # regression targets stay float, and a classifier refuses them by name
    reg = MultimodalDataset(xs(), torch.randn(8, dtype=torch.float64))
    assert reg.y.dtype == torch.float32
    with pytest.raises(ValueError, match=r"regression dataset \(float y\)"):
        EarlyFusion.for_dataset(reg)


def test_model_accepts_its_config_as_an_instance_or_a_dict_and_keeps_modality_order():
    a = DSRSD({"m2": (5,), "m1": (3,)}, 3, {"d": 8, "hidden": 16, "lambda_dec": 0.5})
    assert a.modalities == ("m2", "m1") and a.config.lambda_dec == 0.5 and isinstance(a.config, DSRSDConfig)
    cfg = DSRSDConfig(d=8, hidden=16)
    assert DSRSD({"a": (3,), "b": (3,)}, 3, cfg).config is cfg
    assert DSRSD({"a": (3,), "b": (3,)}, 3, cfg, tau=0.5).config.tau == 0.5 and cfg.tau == 0.1
    assert Unimodal({"a": (3,), "b": (4,)}, 3, {"modality": "b"}).modalities == ("b",)
    assert EarlyFusion({"a": (3.0,), "b": (np.int64(4),)}, np.int64(3)).dims == {"a": (3,), "b": (4,)}


# --------------------------------------------------------------------------- divergence soak
@pytest.fixture(scope="module")
def soak_data():
    return make_synthetic(n=256, dims=16, seed=0).split((0.75, 0.25), seed=0)


@pytest.mark.parametrize("lam", [1e3, 1e6])
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adamw", 1e-2)])
def test_soak_huge_loss_weights_end_finite_or_with_the_clear_error(soak_data, lam, optimizer, lr):
    """A few hundred steps of DSRSD with every lambda at 1e3 or 1e6: either the model ends
    finite, or training stops with `TrainingDiverged` naming a term and its weight, and the
    model is back at its best (or initial) state. Never a silent NaN model."""
    tr, va = soak_data
    torch.manual_seed(0)
    model = DSRSD.for_dataset(tr, d=16, hidden=32, lambda_con=lam, lambda_align=lam, lambda_dec=lam, lambda_orth=lam)
    t = Trainer(model, epochs=50, batch_size=32, optimizer=optimizer, lr=lr, progress=False)  # 6 steps/epoch: 300 steps
    try:
        t.fit(tr, va)
    except TrainingDiverged as exc:
        msg = str(exc)
        assert re.search(r"training diverged at step \d+", msg)
        assert re.search(r"likely cause: the (term '\w+' with lambda_\w+=\S+|learning rate lr=)", msg), msg
        assert f"lambda_dec={lam:g}" in msg or "parameter" in msg
        assert "restored to its" in msg
    else:
        assert t.step == 300
    assert all(torch.isfinite(p).all() for p in model.parameters())
    scores = t.evaluate(va)
    assert math.isfinite(scores["acc"]) and all(math.isfinite(v) for k, v in scores.items() if k.startswith("loss/"))


def test_soak_forced_divergence_names_the_culprit_and_restores(soak_data):
    """SGD at lr 1 with lambdas 1e6 must diverge within the run (this is the case the soak
    above may or may not hit); the error must then name the weighted culprit, not 'task'."""
    tr, va = soak_data
    torch.manual_seed(0)
    model = DSRSD.for_dataset(tr, d=16, hidden=32, lambda_con=1e6, lambda_align=1e6, lambda_dec=1e6, lambda_orth=1e6)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    t = Trainer(model, epochs=50, batch_size=32, optimizer="sgd", lr=1.0, progress=False)
    with pytest.raises(TrainingDiverged) as info:
        t.fit(tr, va)
    msg = str(info.value)
    culprit = re.search(r"likely cause: the term '(\w+)' with lambda_(\w+)=1e\+06", msg)
    assert culprit and culprit.group(1) == culprit.group(2) and culprit.group(1) in ("con", "align", "dec", "orth"), msg
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if t.best_epoch is None:          # no validated epoch: back at the initial weights
        assert all(torch.equal(init[k], v) for k, v in model.state_dict().items())
