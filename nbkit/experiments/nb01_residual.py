"""Notebook 01, the residual dual-stream decomposition of DSRSD-Net: train one
model, probe its shared and private streams against known factors, compare the residual
shared head with a plain MLP head over seeds, 2-D maps of both spaces.

Every function returns tidy frames (one row per seed x setting x metric) that `nbkit.viz`
draws. Sizes and schedules are our choices (the paper gives none we could retrieve).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.batch import MultimodalDataset
from ..evaluate import classification_metrics, collect, linear_probe, project_2d
from ..models.dsrsd import DSRSD, DSRSDConfig
from ..nn import eval_mode
from ..regulate import Regulator

__all__ = ["TRAIN", "stream_representations", "stream_probes", "probe_matrix", "separation",
           "residual_vs_plain", "stream_embeddings", "summary_01", "claim_rows",
           "residual_size", "ResidualMonitor", "residual_curves", "DSRSDRec", "DSRSDRecConfig",
           "label_probes", "read_terms", "read_residual", "read_probe_grid", "read_separation", "read_maps",
           "read_avdigits", "read_closing"]


# ours: the spec's optimiser (AdamW, lr 1e-3, wd 1e-5) with our epochs and batch size
TRAIN = dict(epochs=15, batch_size=128, lr=1e-3, weight_decay=1e-5, progress=False)


def stream_representations(model, ds: MultimodalDataset, include_inputs: bool = True) -> dict[str, torch.Tensor]:
    """{"shared/<m>", "private/<m>"} (and "input/<m>", the raw features flattened, as the
    reference of what is linearly available) for every modality."""
    res = collect(model, ds)
    if "shared" not in res or "private" not in res:
        raise ValueError(f"{type(model).__name__} has no shared/private streams in its Output")
    reps: dict[str, torch.Tensor] = {}
    for m in ds.modalities:
        if include_inputs:
            reps[f"input/{m}"] = ds.x[m].reshape(len(ds), -1).float()
        reps[f"shared/{m}"] = res["shared"][m]
        reps[f"private/{m}"] = res["private"][m]
    return reps


def _default_targets(ds: MultimodalDataset) -> dict[str, Any]:
    if "shared" in ds.factors:                                   # synthetic: known factors
        return {k: v for k, v in ds.factors.items() if k == "shared" or k.startswith("private/")}
    return {"class": ds.y}


def stream_probes(model, ds: MultimodalDataset, targets: Mapping[str, Any] | Sequence[str] | None = None,
                  seed: int = 0, include_inputs: bool = True, max_input_dim: int = 4096) -> pd.DataFrame:
    """Linear probes from every stream of every modality to every target.

    targets: {name: tensor [N] or [N, k]}, or names of ``ds.factors`` ("class" means ``ds.y``);
    default: the synthetic factors "shared" and "private/<m>", else the class.
    Returns columns representation, stream (input/shared/private), modality, target, metric
    (R2 for continuous targets, accuracy for class targets), score. Only samples that have
    the modality are probed for it.
    """
    if targets is None:
        targets = _default_targets(ds)
    elif not isinstance(targets, Mapping):
        names = list(targets)
        unknown = [t for t in names if t != "class" and t not in ds.factors]
        if unknown:
            raise KeyError(f"targets {unknown} are not among ds.factors {sorted(ds.factors)} (or 'class')")
        targets = {t: (ds.y if t == "class" else ds.factors[t]) for t in names}
    reps = stream_representations(model, ds, include_inputs=include_inputs)
    rows = []
    for rn, z in reps.items():
        stream, m = rn.split("/", 1)
        if stream == "input" and z.shape[1] > max_input_dim:
            continue
        keep = ds.present[:, ds.modalities.index(m)]
        for tn, t in targets.items():
            t = torch.as_tensor(t)[keep]
            kind = "classification" if not t.is_floating_point() and t.ndim == 1 else "regression"
            rows.append({"representation": rn, "stream": stream, "modality": m, "target": tn,
                         "metric": "accuracy" if kind == "classification" else "R2",
                         "score": linear_probe(z[keep], t, kind=kind, seed=seed)})
    return pd.DataFrame(rows)


def probe_matrix(probes: pd.DataFrame) -> pd.DataFrame:
    """representation x target grid of probe scores (mean over seeds if several)."""
    return probes.pivot_table(index="representation", columns="target", values="score", aggfunc="mean",
                              sort=False)


def separation(probes: pd.DataFrame) -> pd.DataFrame:
    """Per modality: how well each stream carries the factor it should (synthetic factors).

    shared_on_shared, private_on_shared, shared_on_private, private_on_private (probe R2), and
    ``separation`` = (shared_on_shared - private_on_shared) + (private_on_private - shared_on_private):
    > 0 when the shared stream is the better read-out of the shared factors AND the private
    stream the better read-out of the modality's private factors.
    """
    rows = []
    group_cols = [c for c in ("seed", "variant") if c in probes.columns]
    groups = probes.groupby(group_cols) if group_cols else [((), probes)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in g.modality.unique():
            def score(stream, target):
                r = g[(g.stream == stream) & (g.modality == m) & (g.target == target)].score
                if r.empty:
                    raise KeyError(f"no probe of stream {stream!r} of {m!r} on target {target!r}")
                return float(r.mean())
            row = dict(zip(group_cols, key), modality=m,
                       shared_on_shared=score("shared", "shared"), private_on_shared=score("private", "shared"),
                       shared_on_private=score("shared", f"private/{m}"),
                       private_on_private=score("private", f"private/{m}"))
            row["separation"] = (row["shared_on_shared"] - row["private_on_shared"]
                                 + row["private_on_private"] - row["shared_on_private"])
            rows.append(row)
    return pd.DataFrame(rows)


def residual_vs_plain(train: MultimodalDataset, val: MultimodalDataset, test: MultimodalDataset,
                      seeds: Sequence[int] = (0, 1, 2), config=None, train_config=None, progress: bool = True,
                      variants: Mapping[str, dict] | None = None, return_models: bool = False,
                      model_cls=None, monitor: int = 256) -> tuple:
    """Train each variant of DSRSD-Net (``config``: a DSRSDConfig or dict; each variant's
    overrides on top) for each seed with ``train_config`` (default `TRAIN`); returns
    ``(metrics, probes)`` (and, with ``return_models``, a third item {(variant, seed): (model, trainer)}).

    variants default: {"residual": {}, "plain MLP": {"residual": False}} (spec ablation
    "w/o residual"). metrics: one row per seed x variant with acc, auc and, when the data has
    synthetic factors, the mean (over modalities) of the `separation` columns.
    ``model_cls``: DSRSD (default) or a subclass (e.g. `DSRSDRec`). ``monitor`` > 0 attaches a
    `ResidualMonitor` on the first ``monitor`` test samples to every run (it only measures,
    in eval mode without gradients, so training is unchanged); `residual_curves` reads it.
    """
    from .._checks import check_int
    from ..progress import progress_bar
    from . import as_config, as_train_config, check_seeds, fit

    model_cls = DSRSD if model_cls is None else model_cls
    if not (isinstance(model_cls, type) and issubclass(model_cls, DSRSD)):
        raise TypeError(f"model_cls must be DSRSD or a subclass of it, got {model_cls!r}")
    monitor = check_int("monitor", monitor, 0)
    variants = dict(variants or {"residual": {}, "plain MLP": {"residual": False}})
    seeds = check_seeds(seeds)
    base = as_config(model_cls, config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    rows, probe_frames, models = [], [], {}
    probe_set = test.subset(torch.arange(min(monitor, len(test)))) if monitor else None
    bar = progress_bar(len(seeds) * len(variants), "residual vs plain", enabled=progress)
    for seed in seeds:
        for name, over in variants.items():
            reg = ResidualMonitor(probe_set) if monitor else None
            model, trainer = fit(model_cls, train, val, seed=seed, config=as_config(model_cls, base, **over),
                                 train_config=tc, regulator=reg)
            res = collect(model, test)
            row = {"seed": seed, "variant": name, **classification_metrics(res["logits"], res["y"])}
            if "shared" in test.factors:
                pr = stream_probes(model, test, seed=seed, include_inputs=False).assign(seed=seed, variant=name)
                probe_frames.append(pr)
                sep = separation(pr).drop(columns=["seed", "variant", "modality"]).mean()
                row.update(sep.to_dict())
            rows.append(row)
            if return_models:
                models[(name, seed)] = (model, trainer)
            bar.update(1)
    bar.close()
    probes = pd.concat(probe_frames, ignore_index=True) if probe_frames else pd.DataFrame()
    return (pd.DataFrame(rows), probes, models) if return_models else (pd.DataFrame(rows), probes)


def stream_embeddings(model, ds: MultimodalDataset, modality: str, method: str = "tsne", n: int = 500,
                      seed: int = 0) -> dict[str, Any]:
    """2-D maps of one modality's shared and private spaces on the same ``n`` samples.

    Returns {"shared": xy [n, 2], "private": xy [n, 2], "index": the samples' indices,
    "y": their labels, "factors": their factors}, ready for `nbkit.viz.embedding_figure`.
    """
    if modality not in ds.modalities:
        raise KeyError(f"modality {modality!r} is not among {list(ds.modalities)}")
    if int(n) < 5:
        raise ValueError(f"n must be >= 5 points, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    have = torch.nonzero(ds.present[:, ds.modalities.index(modality)]).flatten()
    idx = have[torch.randperm(len(have), generator=g)[: int(n)]].sort().values
    sub = ds.subset(idx)
    res = collect(model, sub)
    xy = {k: project_2d(res[k][modality], method, seed=seed) for k in ("shared", "private")}
    return {"shared": xy["shared"], "private": xy["private"],
            "index": idx.numpy(), "y": sub.y.numpy(), "factors": {k: v.numpy() for k, v in sub.factors.items()}}


def summary_01(metrics: pd.DataFrame, sep: pd.DataFrame, av_eval: Mapping[str, float] | None = None,
               av_probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Notebook 01's closing table: one row per (data, model, quantity) with mean, std and the
    number of seeds it averages. Every value is measured here (none is the paper's)."""
    rows = []

    def add(data, model, quantity, values):
        v = np.asarray(list(values), dtype=float)
        rows.append({"data": data, "model": model, "quantity": quantity, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n_seeds": int(v.size)})

    for variant, g in metrics.groupby("variant", sort=False):
        add("synthetic", variant, "test accuracy", g["acc"])
        add("synthetic", variant, "test AUC", g["auc"])
    cols = ["shared_on_shared", "private_on_shared", "shared_on_private", "private_on_private", "separation"]
    for variant, g in sep.groupby("variant", sort=False):
        per_seed = g.groupby("seed")[cols].mean()          # mean over modalities
        for c in cols:
            add("synthetic", variant, f"probe R2 {c}" if c != "separation" else "separation score", per_seed[c])
    if av_eval is not None:
        add("avdigits", "residual", "test accuracy (1 seed)", [av_eval["acc"]])
    if av_probes is not None and not av_probes.empty:
        for (rep, tgt), g in av_probes.groupby(["representation", "target"], sort=False):
            add("avdigits", "residual", f"probe acc {rep} -> {tgt} (1 seed)", g["score"])
    return pd.DataFrame(rows)


def claim_rows(sep: pd.DataFrame, dataset: str, variant: str = "residual", record: bool = True) -> pd.DataFrame:
    """Notebook 01's claim: the residual dual-stream module splits each modality into shared
    and private factors, i.e. the `separation` score (mean over modalities, per seed) of
    ``variant`` is > 0. The paper states it qualitatively (no number)."""
    from ..claims import claim

    per_seed = sep[sep.variant == variant].groupby("seed", as_index=False).separation.mean().assign(variant=variant)
    return claim(per_seed, paper="DSRSD-Net (arXiv 2512.07568)",
                 claim="the residual dual-stream module splits each modality into shared and private factors "
                       "(probe separation score > 0)",
                 value="separation", by="variant", treatment=variant, against=0.0, dataset=dataset,
                 reference="qualitative claim of the paper (no number)", record=record)



# ------------------------------------------------------------------ the residual's size
@torch.no_grad()
def residual_size(model, data) -> dict[str, float]:
    """How far each modality's shared vector is from its base projection, relative to it:
    mean over present samples of ||s_m - z~_m|| / ||z~_m||. For the residual head (eq. 2)
    s_m - z~_m = R_sh(z~_m), so this is ||R_sh(z~)|| / ||z~||: near 0 at initialisation (its
    last layer starts at std 1e-3, ours), and it says how much of a "correction" the head
    learned. For the plain head (``residual=False``) it is the distance of MLP(z~) from z~.
    ``data``: a MultimodalDataset or Batch. The model is run in eval mode, then restored."""
    from ..data.batch import Batch

    batch = data if isinstance(data, Batch) else next(iter(data.batches(len(data))))
    with eval_mode(model):
        out = model(batch)
    base, pres = out.extras.get("base"), out.extras.get("present")
    if base is None:
        raise ValueError(f"{type(model).__name__} exposes no base projection (Output.extras['base']); use DSRSD")
    res = {}
    for i, m in enumerate(model.modalities):
        k = pres[:, i]
        if int(k.sum()) == 0:
            continue
        z, sv = base[m][k].float(), out.shared[m][k].float()
        res[m] = float(((sv - z).norm(dim=1) / z.norm(dim=1).clamp_min(1e-12)).mean())
    return res


class ResidualMonitor(Regulator):
    """A do-nothing `nbkit.regulate.Regulator` that measures `residual_size` on a fixed set
    before training (epoch 0) and after every epoch (epoch k = after k epochs); the Trainer
    logs it as ``reg/residual/<m>``. It changes nothing in training: it runs the model in
    eval mode without gradients and draws no random numbers."""

    name = "residual monitor"

    def __init__(self, data):
        super().__init__()
        if not isinstance(data, MultimodalDataset) or len(data) < 1:
            raise TypeError(f"data must be a non-empty MultimodalDataset, got {data!r}")
        self.data = data
        self.rows: list[dict] = []

    def _measure(self, epoch: int) -> dict[str, float]:
        size = residual_size(self.model, self.data)
        self.rows += [{"epoch": epoch, "modality": m, "ratio": v} for m, v in size.items()]
        return {f"residual/{m}": v for m, v in size.items()}

    def attach(self, model, trainer) -> None:
        super().attach(model, trainer)
        self.rows = []
        self._measure(0)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        return self._measure(epoch + 1)


def residual_curves(models: Mapping) -> pd.DataFrame:
    """Tidy frame (variant, seed, epoch, modality, ratio) of the `ResidualMonitor` of every
    run in ``models`` ({(variant, seed): (model, trainer)}, `residual_vs_plain`'s third item),
    plus ``best_epoch``: the epoch whose state was kept (the best validation epoch, + 1 so
    it counts epochs trained, as ``epoch`` does)."""
    frames = []
    for (variant, seed), (_, trainer) in models.items():
        mon = getattr(trainer, "regulator", None)
        if not isinstance(getattr(mon, "rows", None), list) or not mon.rows:
            raise ValueError(f"run {(variant, seed)} has no ResidualMonitor rows; train with residual_vs_plain(monitor=...)")
        best = trainer.best_epoch + 1 if trainer.best_epoch is not None else None
        frames.append(pd.DataFrame(mon.rows).assign(variant=variant, seed=seed, best_epoch=best))
    return pd.concat(frames, ignore_index=True)[["variant", "seed", "epoch", "modality", "ratio", "best_epoch"]]


# ------------------------------------------------- an exercise: a reconstruction loss on p_m
@dataclass
class DSRSDRecConfig(DSRSDConfig):
    """DSRSD-Net's config plus ``lambda_rec`` (ours: an exercise of notebook 01, not the paper)."""

    lambda_rec: float = 1.0      # weight of L_rec = ||D_m(p_m) - x_m||^2 (ours)

    def __post_init__(self):
        from .._checks import check_weight

        super().__post_init__()
        self.lambda_rec = check_weight("lambda_rec", self.lambda_rec)


class DSRSDRec(DSRSD):
    """DSRSD-Net with one more term (ours, notebook 01's exercise; the paper has none): each
    modality's PRIVATE vector must rebuild the modality's raw input through a linear decoder,

        L_rec = 1/M sum_m mean over present samples of 1/D_m ||D_m(p_m) - x_m||^2,

    a pull that asks p_m to KEEP what the modality holds (the spec's losses only push s and p
    apart). Everything else is DSRSD's; ``lambda_rec = 0`` trains plain DSRSD (the term is
    still logged)."""

    Config = DSRSDRecConfig

    def __init__(self, dims, n_classes, config: DSRSDRecConfig | None = None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        d = self.config.d
        self.decoder = torch.nn.ModuleDict({m: torch.nn.Linear(d, int(np.prod(s))) for m, s in self.dims.items()})

    def loss_terms(self, batch, out) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        terms = super().loss_terms(batch, out)
        present = out.extras["present"]
        rec, n = out.logits.sum() * 0.0, 0
        for i, m in enumerate(self.modalities):
            k = present[:, i]
            if int(k.sum()) == 0:
                continue
            x = batch.x[m][k].reshape(int(k.sum()), -1).float()
            rec = rec + F.mse_loss(self.decoder[m](out.private[m][k]).float(), x)
            n += 1
        terms["rec"] = rec / max(n, 1)
        return terms


# ------------------------------------------------------------------ generated reading
def label_probes(model, ds: MultimodalDataset, modality: str, seed: int = 0) -> dict[str, float]:
    """Accuracy of a linear (logistic) probe reading the class from the shared and from the
    private stream of ``modality`` (all d dimensions, present samples)."""
    res = collect(model, ds)
    k = ds.present[:, ds.modalities.index(modality)]
    return {st: linear_probe(res[st][modality][k], ds.y[k], kind="classification", seed=seed)
            for st in ("shared", "private")}


def read_terms(history, terms: Sequence[str] = ("task", "con", "dec", "orth")) -> str:
    """What the training-terms figure shows: each unweighted term's mean over the first and
    the last epoch (train), and the epoch whose state was kept."""
    f = history.frame if hasattr(history, "frame") else history
    f = f[f.split == "train"]
    parts = []
    for t in terms:
        c = f[f.metric == f"loss/{t}"].groupby("epoch").value.mean()
        if c.empty:
            raise KeyError(f"the history has no train metric loss/{t}")
        first, last = float(c.iloc[0]), float(c.iloc[-1])
        peak = int(c.idxmax())
        verb = "falls" if last < first else "rises"
        extra = f" (highest in epoch {peak + 1})" if 0 < peak < len(c) - 1 else ""
        parts.append(f"L_{t} {verb} from {first:.3g} to {last:.3g}{extra}")
    return "Over the epochs of this run (epoch means, unweighted): " + "; ".join(parts) + "."


def read_residual(curves: pd.DataFrame) -> str:
    """What the residual-size figure shows, per variant: the relative correction
    ||s - z~|| / ||z~|| before training, at the kept epoch and after the last epoch (mean
    over seeds and modalities)."""
    out = []
    for v, g in curves.groupby("variant", sort=False):
        per = g.groupby("epoch").ratio.mean()
        kept = g.groupby("seed").apply(lambda q: q[q.epoch == q.best_epoch].ratio.mean(), include_groups=False)
        out.append(f"**{v}**: {per.iloc[0]:.3g} before training, {kept.mean():.3g} at the kept (best validation) epoch, "
                   f"{per.iloc[-1]:.3g} after all {int(per.index.max())} epochs")
    return ("Relative correction ||s − z̃|| / ||z̃|| (mean over seeds and both modalities): " + "; ".join(out) + ".")


def read_probe_grid(grid: pd.DataFrame, modalities: Sequence[str]) -> str:
    """What the probe heatmap shows: for each modality, the R² of its shared and private
    streams on the shared factors and on its own private factors, and whether each stream
    is the better read-out of its own factors."""
    out = []
    for m in modalities:
        ss, ps = grid.loc[f"shared/{m}", "shared"], grid.loc[f"private/{m}", "shared"]
        sp, pp = grid.loc[f"shared/{m}", f"private/{m}"], grid.loc[f"private/{m}", f"private/{m}"]
        s_ok = "better" if ss > ps else "not better"
        p_ok = "better" if pp > sp else "not better"
        out.append(f"- **{m}**: on the shared factors shared/{m} scores {ss:.2f} and private/{m} {ps:.2f} (the shared "
                   f"stream is {s_ok}); on the private factors of {m} private/{m} scores {pp:.2f} and shared/{m} "
                   f"{sp:.2f} (the private stream is {p_ok}).")
    return "\n".join(out)


def read_separation(sep: pd.DataFrame) -> str:
    """Per variant: the four read-outs and the separation score, mean over seeds and
    modalities, with a plain-words verdict."""
    cols = ["shared_on_shared", "private_on_shared", "shared_on_private", "private_on_private", "separation"]
    out = []
    for v, g in sep.groupby("variant", sort=False):
        per_seed = g.groupby("seed")[cols].mean()
        m = per_seed.mean()
        word = "the streams separate" if m.separation > 0.05 else \
            "the streams do not separate" if m.separation < -0.05 else "the streams barely differ"
        out.append(f"- **{v}** ({len(per_seed)} seeds): shared→shared {m.shared_on_shared:.2f}, private→shared "
                   f"{m.private_on_shared:.2f}, shared→private {m.shared_on_private:.2f}, private→private "
                   f"{m.private_on_private:.2f}; separation {m.separation:+.3f} (range {per_seed.separation.min():+.3f} "
                   f"to {per_seed.separation.max():+.3f}): {word}.")
    return "\n".join(out)


def read_maps(map_table: pd.DataFrame, label_acc: Mapping[str, float], modality: str) -> str:
    """Section 5 of notebook 01: does private/<m> group by label as cleanly as shared/<m>?
    ``map_table``: `nb00_data_tour.describe_maps`'s frame for the maps (first two rows: the
    shared and the private map coloured by label); ``label_acc``: `label_probes`."""
    lab = map_table[map_table.kind == "purity"]
    if len(lab) < 2:
        raise ValueError("map_table needs the shared and the private map coloured by label (purity rows)")
    s, p = lab.iloc[0], lab.iloc[1]
    lift = (lambda r: (r.score - r.chance) / (1 - r.chance))
    close = abs(lift(s) - lift(p)) < 0.15
    verdict = (f"private/{modality} groups by label about as cleanly as shared/{modality}: visible evidence that the "
               f"split failed, since the label is a function of the shared factors only"
               if close and lift(p) > 0.15 else
               f"private/{modality} groups by label {'more' if lift(p) > lift(s) else 'less'} cleanly than "
               f"shared/{modality}")
    return (f"Neighbourhood purity by label in the maps: shared/{modality} {s.score:.0%}, private/{modality} "
            f"{p.score:.0%} (chance {s.chance:.0%}). A linear probe on all d dimensions reads the label with accuracy "
            f"{label_acc['shared']:.3f} from shared/{modality} and {label_acc['private']:.3f} from private/{modality}. "
            f"So {verdict}.")


def read_avdigits(grid: pd.DataFrame, chance: Mapping[str, float]) -> str:
    """Section 6 of notebook 01 (avdigits): the voice and gender columns of shared/audio vs
    private/audio, the class column of every stream, against each target's chance rate."""
    sa, pa = grid.loc["shared/audio"], grid.loc["private/audio"]
    parts = []
    for t in ("voice", "gender"):
        who = "private" if pa[t] > sa[t] else "shared"
        parts.append(f"{t}: shared/audio {sa[t]:.2f}, private/audio {pa[t]:.2f} (chance {chance[t]:.2f}; the {who} "
                     f"stream holds more of it)")
    cls = ", ".join(f"{r} {grid.loc[r, 'class']:.2f}" for r in grid.index)
    voice_in_shared = sa["voice"] > chance["voice"] + 0.5 * (pa["voice"] - chance["voice"])
    tail = (" The shared audio stream keeps much of the voice, which a clean split would have left to the private one."
            if voice_in_shared else " The voice sits mostly in the private audio stream, as a clean split wants.")
    return "Probe accuracy, " + "; ".join(parts) + f". Digit (class) from every stream: {cls}." + tail


def read_closing(sep: pd.DataFrame, claims: pd.DataFrame) -> str:
    """The closing paragraph: the verdict of the separation claim with its numbers, and what
    it means for the notebooks that follow."""
    r = claims.iloc[0]
    m = sep[sep.variant == "residual"].groupby("seed").separation.mean()
    msg = (f"The paper's qualitative claim that the residual dual-stream module splits shared from private factors is "
           f"**{r.verdict}** on our synthetic data: separation {r.ours_mean:+.3f} (95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}], "
           f"{int(r.n_seeds)} seeds; per seed {', '.join(f'{v:+.3f}' for v in m)}).")
    if r.verdict != "supported":
        msg += (" With the spec's weights nothing asks the private stream to keep private information, and the "
                "task pulls both streams toward the label: exercises 1 and 4 test a reconstruction loss and a "
                "strong orthogonality weight. We did not tune the data or the seeds to change the verdict.")
    return msg
