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
from __future__ import annotations

from torch import Tensor

from .data.batch import Batch

__all__ = ["Regulator"]


class Regulator:
    """The do-nothing regulator: subclasses override the hooks they need."""

    name = "none"

    def __init__(self):
        self.weights: dict[str, float] = {}
        self.model = None
        self.trainer = None

    def attach(self, model, trainer) -> None:
        if not hasattr(model, "encoders"):
            raise TypeError(f"{type(self).__name__} needs a model with named encoders (model.encoders)")
        self.model, self.trainer = model, trainer

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        pass

    def prepare_batch(self, batch: Batch, epoch: int) -> Batch:
        return batch

    def extra_terms(self, batch: Batch, out) -> dict[str, Tensor]:
        return {}

    def backward(self, loss: Tensor, terms: dict[str, Tensor], batch: Batch, out) -> bool:
        return False

    def after_backward(self, batch: Batch, out, terms: dict[str, Tensor]) -> dict[str, float]:
        return {}

    def after_step(self) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        return {}
