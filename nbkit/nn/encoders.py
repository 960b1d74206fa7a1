"""Per-modality encoders: [B, D] vectors through an MLP, [B, T, D] sequences through a
small 1-D conv stack pooled into a few time bins. Sizes are our choices (small, CPU-friendly).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .._checks import check_int, check_number

__all__ = ["MLPEncoder", "SequenceEncoder", "make_encoder"]


class MLPEncoder(nn.Module):
    """[B, D] -> [B, d_out]: ``depth - 1`` hidden layers (Linear, GELU, Dropout(``dropout``))
    and a Linear + ReLU output. Dropout acts in train mode only."""

    def __init__(self, d_in: int, d_out: int = 64, hidden: int = 128, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        d_in, d_out = check_int("d_in", d_in, 1), check_int("d_out", d_out, 1)
        hidden, depth = check_int("hidden", hidden, 1), check_int("depth", depth, 1)
        dropout = check_number("dropout", dropout, 0.0, 1.0, hi_open=True)
        layers, d = [], d_in
        for _ in range(max(depth - 1, 0)):
            layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        layers += [nn.Linear(d, d_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.d_out = d_out

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim > 2:  # a sequence given to a vector encoder: mean over time first
            x = x.mean(1)
        return self.net(x)


class SequenceEncoder(nn.Module):
    """[B, T, D] -> [B, d_out]: two 1-D convolutions over time (the second with stride 2),
    average-pooled into ``bins`` time bins that keep the coarse order, then a linear layer.

    Our choice. A plain mean over time throws the order away: on avdigits audio it reached
    0.61 test accuracy after 10 epochs where this one reaches 0.95 (2,000 clips, same seed).
    """

    def __init__(self, d_in: int, d_out: int = 64, hidden: int = 64, kernel: int = 5, bins: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        d_in, d_out = check_int("d_in", d_in, 1), check_int("d_out", d_out, 1)
        hidden, kernel, bins = check_int("hidden", hidden, 1), check_int("kernel", kernel, 1), check_int("bins", bins, 1)
        dropout = check_number("dropout", dropout, 0.0, 1.0, hi_open=True)
        self.conv = nn.Sequential(
            nn.Conv1d(d_in, hidden, kernel, padding=kernel // 2), nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, stride=2), nn.GELU(),
            nn.AdaptiveAvgPool1d(bins),
        )
        self.drop = nn.Dropout(dropout)    # on the pooled conv features (its own module: state keys unchanged)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(hidden * bins, d_out), nn.ReLU())
        self.d_out = d_out

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3:
            raise ValueError(f"SequenceEncoder expects [B, T, D], got {tuple(x.shape)}")
        return self.out(self.drop(self.conv(x.transpose(1, 2))))


def make_encoder(shape: Sequence[int], d_out: int = 64, hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    """An encoder for one modality given its per-sample shape ((D,) or (T, D)); ``dropout``
    (the model config's) acts inside it in train mode."""
    shape = tuple(shape)
    if len(shape) == 1:
        return MLPEncoder(shape[0], d_out, hidden, dropout=dropout)
    if len(shape) == 2:
        return SequenceEncoder(shape[1], d_out, min(hidden, 64), dropout=dropout)
    raise ValueError(f"no encoder for per-sample shape {shape}; use (D,) or (T, D)")
