"""Gradient regulation: a `Regulator` acts between ``backward()`` and ``step()``.

The Trainer calls, in order, for every step::

    batch = reg.prepare_batch(batch, epoch)        # e.g. modality dropout
    out = model(batch); terms = model.loss_terms(batch, out)
    terms.update(reg.extra_terms(batch, out))       # e.g. PMR's prototype loss (weighted by reg.weights)
    handled = reg.backward(loss, terms, batch, out) # True if it ran backward itself (MMPareto)
    diag = reg.after_backward(batch, out, terms)    # edit .grad in place; return diagnostics
    optimizer.step(); reg.after_step()

plus ``attach(model, trainer)`` once, ``on_epoch_start(epoch, n_epochs)`` and
``on_epoch_end(epoch)``. Diagnostics (floats) are logged per step as ``reg/<name>``.
Regulators find each modality's parameters through ``model.encoders[m]``.

`REGULATORS` is the one registry, keyed by the names the notebooks and papers use;
`make_regulator` builds one by that name (case, "-" and "_" do not matter: "ogm_ge" works).
"""
from .agm import AGM, agm_coefficients
from .base import GradMonitor, GradScale, Regulator, project_out
from .dropout import ModalityDropout
from .inforeg import InfoReg
from .mmpareto import MMPareto, min_norm_weights
from .ogm_ge import OGMGE, ogm_coefficients
from .pmr import PMR
from .redreg import RedReg

__all__ = ["Regulator", "OGMGE", "AGM", "PMR", "MMPareto", "InfoReg", "RedReg", "GradMonitor", "GradScale",
           "ModalityDropout", "ogm_coefficients", "min_norm_weights", "project_out", "agm_coefficients",
           "REGULATORS", "BALANCE_METHODS", "make_regulator", "ModelMonitor", "RSC", "MD", "RSCMD",
           "SuppressionMonitor", "partner_absent", "suppression_ratios", "agm_responses", "pmr_coefficients"]

# name -> class. "joint" is plain joint training that logs (confidence, gradient norms).
REGULATORS: dict[str, type] = {"none": Regulator, "joint": GradMonitor, "OGM-GE": OGMGE, "AGM": AGM, "PMR": PMR,
                               "MMPareto": MMPareto, "InfoReg": InfoReg, "RedReg": RedReg,
                               "GradScale": GradScale, "ModalityDropout": ModalityDropout}

# the balance comparison of notebook 05, in its order
BALANCE_METHODS = ("joint", "OGM-GE", "AGM", "PMR", "MMPareto", "InfoReg", "RedReg")


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "").replace(" ", "")


def make_regulator(name: str, **kwargs) -> Regulator:
    """A regulator by its registry name (``REGULATORS``), built with ``kwargs``: the
    reference defaults unless overridden. ``None`` gives the do-nothing `Regulator`."""
    if name is None:
        return Regulator()
    by_key = {_key(k): cls for k, cls in REGULATORS.items()}
    cls = by_key.get(_key(name))
    if cls is None:
        raise KeyError(f"unknown regulator {name!r}; choose one of {list(REGULATORS)}")
    return cls(**kwargs)

# ---- SRCID (issue 9): a monitor that logs what the model reports (warm start, codebook usage)
from .monitor import ModelMonitor  # noqa: E402

REGULATORS["ModelMonitor"] = ModelMonitor

# ---- RSC-MD (notebook 06): RSC, MD and their measurement ---------------------------------
from .md import MD, RSCMD, SuppressionMonitor, partner_absent, suppression_ratios  # noqa: E402
from .rsc import RSC  # noqa: E402

REGULATORS.update({"RSC": RSC, "MD": MD, "RSC-MD": RSCMD, "SuppressionMonitor": SuppressionMonitor})

# ---- faithful balance baselines (issue 12): helpers of PMR and AGM --------------------
from .agm import agm_responses  # noqa: E402
from .pmr import pmr_coefficients  # noqa: E402

