"""claims.csv: one row per paper claim, with our numbers and a verdict computed from them.

Notebooks call `record_claim`; under ``nbkit reproduce`` the row is appended to the run's
claims.csv (the path comes in the environment variable ``NBKIT_CLAIMS``); run by hand, the
row is only returned (and shown), so exploring never writes files behind your back.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "record_claim", "verdict_greater", "read_claims"]

COLUMNS = ["paper", "claim", "metric", "ours_mean", "ours_std", "n_seeds", "reference",
           "reference_value", "verdict"]
VERDICTS = ("supported", "not supported", "inconclusive")


def verdict_greater(a: Sequence[float], b: Sequence[float] | float, margin: float = 0.0) -> str:
    """Is mean(a) > mean(b) + margin?  "supported" when the gap exceeds its standard error
    (so one lucky seed is not enough), "not supported" when the gap is <= margin,
    "inconclusive" in between. With one seed each, the sign decides, and the verdict says
    "(1 seed)"."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.atleast_1d(np.asarray(b, dtype=float)).ravel()
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("verdict_greater needs non-empty finite values on both sides")
    gap = a.mean() - b.mean() - margin
    if gap <= 0:
        return "not supported"
    if a.size < 2 and b.size < 2:
        return "supported (1 seed)"
    se = math.sqrt((a.var(ddof=1) / a.size if a.size > 1 else 0) + (b.var(ddof=1) / b.size if b.size > 1 else 0))
    return "supported" if gap > se else "inconclusive"


def record_claim(paper: str, claim: str, metric: str, values: Sequence[float] | float,
                 verdict: str, reference: str = "", reference_value: float = float("nan"),
                 path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Append one claim row (to ``path`` or ``$NBKIT_CLAIMS``) and return it as a frame."""
    if not paper or not claim or not metric:
        raise ValueError("paper, claim and metric must be non-empty strings")
    vals = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    if vals.size == 0:
        raise ValueError("values must hold at least one number (one per seed)")
    if not any(str(verdict).startswith(v) for v in VERDICTS):
        raise ValueError(f"verdict must start with one of {VERDICTS}, got {verdict!r}")
    row = {
        "paper": paper, "claim": claim, "metric": metric,
        "ours_mean": float(vals.mean()),
        "ours_std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
        "n_seeds": int(vals.size), "reference": reference,
        "reference_value": float(reference_value), "verdict": str(verdict),
    }
    path = path or os.environ.get("NBKIT_CLAIMS")
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)
    return pd.DataFrame([row], columns=COLUMNS)


def read_claims(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path)
