"""Training-time modality dropout as a `Regulator` (our addition, not a paper's method)."""
from __future__ import annotations

import torch

from .._checks import check_int, check_probability
from .base import Regulator


class ModalityDropout(Regulator):
    """Every training batch loses each modality per sample with probability ``p``
    (`nbkit.data.drop_modalities`, keep_one), drawn from a generator seeded once per run, so
    the model sees missing modalities while it learns. Ours: DSRSD-Net's paper does not say
    how it trains for missing modalities."""

    name = "modality_dropout"

    def __init__(self, p: float, seed: int = 0):
        super().__init__()
        self.p = check_probability("p", p)
        self._g = torch.Generator().manual_seed(check_int("seed", seed))

    def prepare_batch(self, batch, epoch):
        from ..data.corrupt import drop_modalities

        if self.p == 0:
            return batch
        s = int(torch.randint(0, 2**31 - 1, (1,), generator=self._g))
        return drop_modalities(batch, self.p, seed=s, keep_one=True)
