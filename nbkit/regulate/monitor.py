"""`ModelMonitor`: a regulator that changes nothing and logs what a model reports about
itself (our addition for SRCID, issue 9)."""
from __future__ import annotations

from .base import Regulator, _floats


class ModelMonitor(Regulator):
    """Leaves gradients alone. Each step it logs the model's ``monitor()`` dict into the
    History (as ``reg/<key>``, e.g. SRCID's ``reg/warm/on``, ``reg/usage/L1.0/perplexity``),
    and at each epoch start it passes the epoch number to ``model.on_epoch_start`` (SRCID's
    fixed-epoch warm start needs it). Models without these methods are simply not monitored."""

    name = "model_monitor"

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        fn = getattr(self.model, "on_epoch_start", None)
        if callable(fn):
            fn(int(epoch))

    def after_backward(self, batch, out, terms) -> dict[str, float]:
        fn = getattr(self.model, "monitor", None)
        return _floats(fn()) if callable(fn) else {}
