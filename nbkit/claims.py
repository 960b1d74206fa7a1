"""claims.csv: one row per paper claim tested on our data, with a verdict computed from it.

A claim row holds the EFFECT the verdict judges (e.g. "RedReg minus joint, fused accuracy,
paired by seed"): its mean and standard deviation over seeds, a 95 % Student-t interval of
the per-seed effects, the number of seeds, the data set it was measured on and, where the
paper gives one, the paper's value of the same effect (a reference on the paper's data,
never a target). The compared levels go into the claim's text.

- `claim` builds a row from a tidy frame of per-seed results (a paired comparison of two
  settings, or one setting against a constant) and records it;
- `record_claim` records a row from per-seed effects computed elsewhere;
- `verdict` is the rule (see its docstring); `claims_markdown` writes rows as sentences.

Under ``nbkit reproduce`` rows are appended to the run's claims.csv (its path comes in the
environment variable ``NBKIT_CLAIMS``); run by hand, a row is only returned (and shown), so
exploring never writes files behind your back.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._checks import check_choice, check_number

__all__ = ["COLUMNS", "VERDICTS", "MIN_SEEDS", "interval", "verdict", "claim", "record_claim",
           "claims_markdown", "read_claims"]

# the nine original columns first, then the interval and the data set (appended, so older
# readers that take the first nine keep working)
COLUMNS = ["paper", "claim", "metric", "ours_mean", "ours_std", "n_seeds", "reference",
           "reference_value", "verdict", "ci_low", "ci_high", "dataset"]
VERDICTS = ("supported", "not supported", "inconclusive")
MIN_SEEDS = 3          # a verdict needs at least this many seeds; fewer is "inconclusive"


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided Student-t ``level`` interval of the mean of
    ``values`` (per-seed effects): mean -+ t_{(1+level)/2, n-1} * sd / sqrt(n), sd with
    Bessel's correction. With one value the interval is (nan, nan)."""
    from scipy.stats import t as student_t

    v = _values(values)
    level = check_number("level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(student_t.ppf((1 + level) / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - half, m + half


def verdict(values: Sequence[float], direction: str = "greater", level: float = 0.95) -> str:
    """The verdict on per-seed effects whose claimed sign is ``direction`` ("greater": the
    effect is > 0, "less": < 0), from the 95 % interval of `interval`:

    - "supported": the interval excludes 0 on the claimed side;
    - "not supported": the mean is on the wrong side of 0 (or exactly 0), which includes an
      interval that excludes 0 on the wrong side;
    - "inconclusive": the mean is on the claimed side but the interval contains 0, and
      always with fewer than `MIN_SEEDS` seeds (then the verdict says so).
    """
    direction = check_choice("direction", direction, ("greater", "less"))
    v = _values(values)
    sign = 1.0 if direction == "greater" else -1.0
    m, lo, hi = interval(v * sign, level)
    if not m > 0:
        return "not supported"
    if v.size < MIN_SEEDS:
        return f"inconclusive (fewer than {MIN_SEEDS} seeds)"
    return "supported" if lo > 0 else "inconclusive"


def _values(values) -> np.ndarray:
    v = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    if v.size == 0:
        raise ValueError("values must hold at least one number (one per seed), got none")
    if not np.isfinite(v).all():
        raise ValueError(f"values must be finite (one effect per seed), got {v.tolist()}")
    return v


def _select(frame: pd.DataFrame, by: list[str], key, what: str) -> pd.DataFrame:
    key = key if isinstance(key, tuple) else (key,)
    if len(key) != len(by):
        raise ValueError(f"{what}={key!r} must give one value per column of by={by}")
    mask = np.ones(len(frame), dtype=bool)
    for col, k in zip(by, key):
        mask &= (frame[col] == k).to_numpy()
    rows = frame[mask]
    if rows.empty:
        have = frame[by].drop_duplicates().to_records(index=False).tolist()
        raise KeyError(f"no rows with {dict(zip(by, key))} for {what}; the frame has {have}")
    return rows


def _label(by: list[str], key) -> str:
    key = key if isinstance(key, tuple) else (key,)
    fmt = (lambda k: f"{k:g}" if isinstance(k, float) else str(k))
    if len(by) == 1:
        return fmt(key[0])
    return ", ".join(f"{col}={fmt(k)}" for col, k in zip(by, key))


def claim(frame: pd.DataFrame, *, paper: str, claim: str, value: str, treatment: Any,
          control: Any = None, against: float | None = None, by: str | Sequence[str] = "method",
          pair: str = "seed", direction: str = "greater", dataset: str, reference: str = "",
          reference_value: float = math.nan, units: str = "", digits: int = 3,
          verdict_text: str | None = None, record: bool = True) -> pd.DataFrame:
    """One claim row from a tidy frame of per-seed results, recorded (see `record_claim`).

    frame:     one row per (setting, seed) with the measured column ``value``.
    treatment: the setting the claim is about: a value of column ``by`` (or a tuple, one
               value per column when ``by`` is a list).
    control:   the setting it is compared with; rows are paired on ``pair`` (the seed), and
               the effect per seed is treatment - control. Or ``against``: a constant (the
               effect is treatment - against), for claims like "rho < 1".
    direction: the claimed sign of the effect ("greater" or "less").
    dataset:   the data it was measured on (``MultimodalDataset.describe()``).
    The claim's text gets the compared means appended, e.g. "(RedReg 0.826 vs joint 0.776)";
    ``metric`` reads "<value>: <treatment> - <control>, paired by <pair>". ``verdict_text=""``
    records a measurement without a verdict (see `record_claim`).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, pair, value] if c not in frame.columns]
    if missing:
        raise KeyError(f"frame has no column(s) {missing}; it has {list(frame.columns)}")
    if (control is None) == (against is None):
        raise ValueError("give exactly one of control (a setting to pair with) or against (a constant)")
    t = _select(frame, by, treatment, "treatment").set_index(pair)[value]
    if t.index.duplicated().any():
        raise ValueError(f"treatment {treatment!r} has several rows per {pair}; aggregate them first")
    unit = f" {units}" if units else ""
    if control is not None:
        c = _select(frame, by, control, "control").set_index(pair)[value]
        common = t.index.intersection(c.index).sort_values()
        if len(common) == 0:
            raise ValueError(f"treatment and control share no {pair}: {sorted(t.index)} vs {sorted(c.index)}")
        effects = (t.loc[common] - c.loc[common]).to_numpy(float)
        sep = ":" if len(by) > 1 else ""
        text = (f"{claim} ({_label(by, treatment)}{sep} {t.loc[common].mean():.{digits}f} vs "
                f"{_label(by, control)}{sep} {c.loc[common].mean():.{digits}f}{unit})")
        metric = f"{value}: ({_label(by, treatment)}) - ({_label(by, control)}), paired by {pair}" if len(by) > 1 \
            else f"{value}: {_label(by, treatment)} - {_label(by, control)}, paired by {pair}"
    else:
        against = check_number("against", against)
        effects = (t.sort_index() - against).to_numpy(float)
        text = f"{claim} ({_label(by, treatment)} {t.mean():.{digits}f}{unit} vs {against:g})"
        metric = f"{value}: {_label(by, treatment)} - {against:g}"
    return record_claim(paper, text, metric, effects, direction=direction, dataset=dataset,
                        reference=reference, reference_value=reference_value, verdict_text=verdict_text,
                        record=record)


def record_claim(paper: str, claim: str, metric: str, values: Sequence[float] | float, *,
                 dataset: str, direction: str = "greater", verdict_text: str | None = None,
                 reference: str = "", reference_value: float = math.nan,
                 path: str | os.PathLike | None = None, record: bool = True) -> pd.DataFrame:
    """Append one row (to ``path`` or ``$NBKIT_CLAIMS``) and return it as a one-row frame.

    values:  the per-seed EFFECTS the verdict judges (not one side of a comparison).
    verdict: computed by `verdict` from ``values`` and ``direction``; pass
             ``verdict_text=""`` for a row that only measures something (no verdict).
    """
    for name, v in (("paper", paper), ("claim", claim), ("metric", metric), ("dataset", dataset)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    vals = _values(values)
    reference_value = check_number("reference_value", reference_value) if not (
        isinstance(reference_value, float) and math.isnan(reference_value)) else math.nan
    text = verdict(vals, direction) if verdict_text is None else str(verdict_text)
    if text and not any(text.startswith(v) for v in VERDICTS):
        raise ValueError(f"verdict_text must be '' or start with one of {VERDICTS}, got {text!r}")
    m, lo, hi = interval(vals)
    row = {"paper": paper, "claim": claim, "metric": metric, "ours_mean": m,
           "ours_std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0, "n_seeds": int(vals.size),
           "reference": reference, "reference_value": float(reference_value), "verdict": text,
           "ci_low": lo, "ci_high": hi, "dataset": dataset}
    path = path or os.environ.get("NBKIT_CLAIMS")
    if path and record:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)
    return pd.DataFrame([row], columns=COLUMNS)


def claims_markdown(rows: pd.DataFrame, digits: int = 3) -> str:
    """One markdown bullet per claim row: the claim (with its compared levels), the effect's
    mean and 95 % interval over n seeds, the data set, the paper's value where there is one,
    and the verdict, so a notebook's closing prose quotes the run it belongs to."""
    need = {"claim", "metric", "ours_mean", "n_seeds", "ci_low", "ci_high", "dataset", "reference_value", "verdict"}
    if not isinstance(rows, pd.DataFrame) or not need <= set(rows.columns):
        raise ValueError(f"rows must be claim rows (nbkit.claims.claim / record_claim) with columns {sorted(need)}")
    lines = []
    for r in rows.itertuples(index=False):
        ci = "" if pd.isna(r.ci_low) else f", 95% CI [{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]"
        ref = "" if pd.isna(r.reference_value) else f"; paper: {r.reference_value:+g}"
        seeds = f"{r.n_seeds} seed{'s' if r.n_seeds != 1 else ''}"
        head = f"**{r.verdict}**" if r.verdict else "*measured (no verdict)*"
        lines.append(f"- {r.claim}: {head}. Effect {r.ours_mean:+.{digits}f}{ci} over {seeds} "
                     f"({r.metric}; {r.dataset}){ref}.")
    return "\n".join(lines)


def read_claims(path: str | os.PathLike) -> pd.DataFrame:
    """A claims.csv as a frame (empty with `COLUMNS` when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path)
    if "verdict" in df:
        df["verdict"] = df["verdict"].astype(object).where(df["verdict"].notna(), "")   # a measurement row has no verdict
    return df
