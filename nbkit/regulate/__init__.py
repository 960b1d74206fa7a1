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
"""
from .agm import AGM, agm_coefficients
from .base import GradMonitor, GradScale, Regulator, project_out
from .inforeg import InfoReg
from .mmpareto import MMPareto, min_norm_weights
from .ogm_ge import OGMGE, ogm_coefficients
from .pmr import PMR
from .redreg import RedReg

__all__ = ["Regulator", "OGMGE", "AGM", "PMR", "MMPareto", "InfoReg", "RedReg", "GradMonitor", "GradScale",
           "ogm_coefficients", "min_norm_weights", "project_out", "agm_coefficients",
           "REGULATORS", "make_regulator"]

REGULATORS = {"joint": GradMonitor, "ogm_ge": OGMGE, "agm": AGM, "pmr": PMR, "mmpareto": MMPareto,
              "inforeg": InfoReg, "redreg": RedReg, "grad_scale": GradScale}


def make_regulator(name: str, **kwargs) -> Regulator:
    """A regulator by name: one of ``REGULATORS`` ("none" gives the base do-nothing one)."""
    if name in ("none", None):
        return Regulator()
    if name not in REGULATORS:
        raise KeyError(f"unknown regulator {name!r}; choose one of {['none', *REGULATORS]}")
    return REGULATORS[name](**kwargs)
