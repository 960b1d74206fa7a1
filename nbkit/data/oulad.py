"""OULAD, the Open University Learning Analytics Dataset, read from files the user provides.

Kuzilek, Hlosta & Zdrahal, "Open University Learning Analytics dataset", Scientific Data 4,
170171 (2017); licence CC-BY 4.0; https://analyse.kmi.open.ac.uk/open_dataset. Nothing is
downloaded here: unzip the official archive and point ``load_oulad(data_dir)`` at the folder
holding its seven CSV files (official names and columns, see ``SCHEMA``).

One row per student x module presentation (``code_module``, ``code_presentation``,
``id_student``), built with only what is known before day ``7 * cutoff_week`` of the
presentation (day 0 = official start; dates in OULAD are days relative to it):

- ``"clicks"``       [N, cutoff_week + 1, A]: log1p of VLE clicks per week and activity type
                     (bin 0 = every day before the start, bin k = week k-1), from
                     studentVle.csv joined with vle.csv. Left out (with a warning) when
                     studentVle.csv is absent.
- ``"assessments"``  [N, F]: counts, scores and timing of the submissions made before the
                     cutoff, against the assessments due before it.
- ``"demographics"`` [N, F]: one-hot studentInfo categories, prior attempts, credits,
                     registration day, and the module/presentation the row belongs to.

Target: ``final_result`` Pass/Distinction -> 1, Fail/Withdrawn -> 0.

Leakage (our choices, documented in ``ds.info``): no column is read that is dated after the
cutoff (clicks, submissions) and neither ``final_result`` nor ``date_unregistration`` is a
feature. A student who unregistered before the cutoff is trivially "Withdrawn"; by default
these rows are dropped (``withdrawn_before_cutoff="drop"``) so the task is to predict the
outcome of students still enrolled at the cutoff. A score is used from its submission date
(the marking date is not in OULAD, so a mark returned after the cutoff is a small leak).

``write_sample`` writes a synthetic data set in the same schema (NOT REAL DATA) for tests,
teaching runs and trying the loader without the real files.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .batch import MultimodalDataset

__all__ = ["SCHEMA", "load_oulad", "write_sample", "read_table", "label_counts", "SAMPLE_MARKER"]

# official file names and columns (Kuzilek et al. 2017, Table 1-7)
SCHEMA: dict[str, tuple[str, ...]] = {
    "courses.csv": ("code_module", "code_presentation", "module_presentation_length"),
    "assessments.csv": ("code_module", "code_presentation", "id_assessment", "assessment_type", "date", "weight"),
    "vle.csv": ("id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"),
    "studentInfo.csv": ("code_module", "code_presentation", "id_student", "gender", "region",
                        "highest_education", "imd_band", "age_band", "num_of_prev_attempts",
                        "studied_credits", "disability", "final_result"),
    "studentRegistration.csv": ("code_module", "code_presentation", "id_student", "date_registration",
                                "date_unregistration"),
    "studentAssessment.csv": ("id_assessment", "id_student", "date_submitted", "is_banked", "score"),
    "studentVle.csv": ("code_module", "code_presentation", "id_student", "id_site", "date", "sum_click"),
}
KEY = ["code_module", "code_presentation", "id_student"]
POSITIVE = ("Pass", "Distinction")
NEGATIVE = ("Fail", "Withdrawn")
CLASS_NAMES = ["Fail/Withdrawn", "Pass/Distinction"]
NA_VALUES = ["?", ""]          # the official CSVs mark a missing value with "?" (some copies: empty)
SAMPLE_MARKER = "NOT_REAL_DATA.txt"
DOWNLOAD_HINT = ("Download the Open University Learning Analytics Dataset (CC-BY 4.0) from "
                 "https://analyse.kmi.open.ac.uk/open_dataset, unzip it and pass the folder holding "
                 "studentInfo.csv etc. as data_dir (see data/README.md). Without it, "
                 "nbkit.data.oulad.write_sample(folder) writes a synthetic sample in the same schema.")
CATEGORICAL = ["gender", "region", "highest_education", "imd_band", "age_band", "disability"]
MODALITIES = ("clicks", "assessments", "demographics")


# ------------------------------------------------------------------------------ reading
def find_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The OULAD folder to read: ``data_dir`` when given; else, when the environment
    variable ``NBKIT_DATA`` names a folder holding the OULAD tables (directly, or in a
    subfolder ``oulad/`` or ``OULAD/``), that folder; else None (no real data: use
    `write_sample`). ``nbkit reproduce --data-dir DIR`` sets ``NBKIT_DATA`` for a run."""
    import os

    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("NBKIT_DATA")
    if not env:
        return None
    root = Path(env).expanduser()
    for cand in (root, root / "oulad", root / "OULAD"):
        if (cand / "studentInfo.csv").is_file() or (cand / "studentInfo.csv.zip").is_file():
            return cand
    return None


class _Table:
    """One OULAD table on disk: ``<name>`` or, as OULAD's own archive nests files,
    ``<name>.zip`` holding a member of that name. ``open()`` gives a fresh binary stream."""

    def __init__(self, data_dir: Path, name: str):
        self.name = name
        path, zipped = Path(data_dir) / name, Path(data_dir) / f"{name}.zip"
        self.member = None
        if path.is_file():
            self.path, self.label = path, name
        elif zipped.is_file():
            import zipfile

            try:
                with zipfile.ZipFile(zipped) as zf:
                    members = [m for m in zf.namelist() if not m.startswith("__MACOSX")]
            except zipfile.BadZipFile as exc:
                raise ValueError(f"OULAD file {str(zipped)!r} is not a readable zip archive ({exc})") from None
            hits = [m for m in members if Path(m).name == name]
            if not hits:
                raise FileNotFoundError(f"OULAD file {name} is missing: found the zip {str(zipped)!r}, but it holds "
                                        f"{members[:10]}{' ...' if len(members) > 10 else ''}, not {name}")
            self.path, self.member, self.label = zipped, hits[0], f"{name} (in {zipped.name})"
        else:
            raise FileNotFoundError(f"OULAD file {name} is missing: {str(path)!r} does not exist. {DOWNLOAD_HINT}")

    def open(self):
        if self.member is None:
            return open(self.path, "rb")
        import zipfile

        zf = zipfile.ZipFile(self.path)
        fh = zf.open(self.member)
        fh._nbkit_zip = zf            # keep the archive open as long as the member stream
        return fh

    def empty(self) -> bool:
        """True when the table has no data row (an empty file, or a header alone)."""
        with self.open() as fh:
            return not fh.readline().strip() or not any(line.strip() for line in fh)


def _fields(line: bytes) -> int:
    if b'"' not in line:
        return line.count(b",") + 1
    import csv

    return len(next(csv.reader([line.decode("utf-8", "replace")])))


def check_fields(table: _Table) -> int:
    """Every data line of ``table`` has as many fields as its header (an error naming the
    file and the line otherwise, where pandas would drop extra fields or pad short rows);
    blank lines are allowed only at the end. Returns the number of data rows."""
    with table.open() as fh:
        header = fh.readline()
        if not header.strip():
            raise ValueError(f"OULAD file {table.label} is empty: it has no header line (expected the columns "
                             f"{list(SCHEMA[table.name])})")
        n = _fields(header.rstrip(b"\r\n"))
        rows, blank_at = 0, None
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                blank_at = blank_at or lineno
                continue
            if blank_at is not None:
                raise ValueError(f"OULAD file {table.label}, line {blank_at}: an empty line in the middle of the table")
            k = _fields(line)
            if k != n:
                raise ValueError(f"OULAD file {table.label}, line {lineno}: {k} fields where the header has {n} "
                                 f"({'too many' if k > n else 'too few'}): {line[:120].decode('utf-8', 'replace')!r}")
            rows += 1
    return rows


def read_table(data_dir: str | Path, name: str, usecols: Sequence[str] | None = None, check: bool = True,
               **kwargs) -> pd.DataFrame:
    """Read one official OULAD table (``<name>`` or ``<name>.zip``), checking it first: the
    file exists and is not empty, every line has the header's number of fields, and the
    columns are there. Raises FileNotFoundError naming the file, ValueError naming the file
    and line or the missing column. ``chunksize=`` returns an iterator of frames."""
    if name not in SCHEMA:
        raise ValueError(f"name must be one of the OULAD files {list(SCHEMA)}, got {name!r}")
    table = _Table(Path(data_dir), name)
    if check:
        check_fields(table)
    cols = list(usecols) if usecols is not None else list(SCHEMA[name])
    with table.open() as fh:
        have = [c.strip() for c in fh.readline().decode("utf-8", "replace").strip().split(",")]
    missing = [c for c in cols if c not in have]
    if missing:
        raise ValueError(f"{table.label}: column {missing[0]!r} is missing (columns {missing} not found; the file has "
                         f"{have}). The official OULAD schema of {name} is {list(SCHEMA[name])}.")
    if kwargs.get("chunksize"):
        return pd.read_csv(table.open(), usecols=cols, na_values=NA_VALUES, skipinitialspace=True, **kwargs)
    with table.open() as fh:
        return pd.read_csv(fh, usecols=cols, na_values=NA_VALUES, skipinitialspace=True, **kwargs)


def _has(data_dir: Path, name: str) -> bool:
    return (data_dir / name).is_file() or (data_dir / f"{name}.zip").is_file()


INTEGER_COLUMNS = ("id_student", "id_assessment", "id_site")


def _numeric(df: pd.DataFrame, name: str, cols: Sequence[str]) -> None:
    """Columns to numbers in place; a value that is not a number (or, for the id columns,
    not an integer) is an error naming the file, the column and its line."""
    for c in cols:
        conv = pd.to_numeric(df[c], errors="coerce")
        bad = conv.isna() & df[c].notna()
        if c in INTEGER_COLUMNS:
            bad |= conv.notna() & (conv != conv.round())
        if bad.any():
            first = df.index[bad.to_numpy()][0]
            raise ValueError(f"OULAD file {name}, line {int(first) + 2}: column {c!r} must be "
                             f"{'an integer' if c in INTEGER_COLUMNS else 'numeric (or ? for missing)'}, got "
                             f"{str(df.loc[first, c])!r} (bad values: {df.loc[bad, c].astype(str).unique()[:5].tolist()})")
        df[c] = conv


def _check_cutoff(cutoff_week) -> int:
    if isinstance(cutoff_week, bool) or not isinstance(cutoff_week, (int, np.integer)) or cutoff_week < 1:
        raise ValueError(f"cutoff_week must be an integer >= 1 (weeks after the official start), got {cutoff_week!r}")
    return int(cutoff_week)


def _one_hot(values: pd.Series, prefix: str) -> tuple[np.ndarray, list[str]]:
    v = values.astype("object").where(values.notna(), "missing").astype(str)
    cats = sorted(v.unique())
    codes = pd.Categorical(v, categories=cats).codes
    out = np.zeros((len(v), len(cats)), np.float32)
    out[np.arange(len(v)), codes] = 1.0
    return out, [f"{prefix}={c}" for c in cats]


# ------------------------------------------------------------------------- modalities
def _click_tensor(data_dir, rows: pd.DataFrame, cutoff_week: int, chunksize: int) -> tuple[np.ndarray, list[str], int]:
    """log1p weekly clicks per activity type: [N, cutoff_week + 1, A]. No loop over rows:
    each chunk of studentVle.csv is filtered by date, mapped to (row, week, type) codes by
    hash look-ups and summed with one bincount."""
    vle = read_table(data_dir, "vle.csv", usecols=["id_site", "activity_type"])
    vle = vle.drop_duplicates("id_site")
    types = sorted(vle.activity_type.astype(str).unique())
    site_index = pd.Index(vle.id_site.to_numpy())
    site_type = pd.Categorical(vle.activity_type.astype(str), categories=types).codes.astype(np.int64)
    mp_index = pd.MultiIndex.from_frame(rows[["code_module", "code_presentation"]].astype(str)).unique()
    mp_of_row = mp_index.get_indexer(pd.MultiIndex.from_frame(rows[["code_module", "code_presentation"]].astype(str)))
    row_index = pd.Index(mp_of_row.astype(np.int64) * (1 << 32) + rows.id_student.to_numpy(np.int64))
    T, A, N = cutoff_week + 1, len(types), len(rows)
    cutoff_day = 7 * cutoff_week
    total = np.zeros(N * T * A, np.float64)
    n_unknown_sites = 0
    dtype = {"code_module": "category", "code_presentation": "category"}
    reader = read_table(data_dir, "studentVle.csv", dtype=dtype, chunksize=chunksize)
    from tqdm.auto import tqdm
    big = _Table(Path(data_dir), "studentVle.csv").path.stat().st_size > 50e6     # the real file is ~450 MB
    for chunk in tqdm(reader, desc="studentVle.csv", leave=False, unit="chunk", disable=not big):
        _numeric(chunk, "studentVle.csv", ["id_student", "id_site", "date", "sum_click"])
        chunk = chunk[chunk.date < cutoff_day].dropna(subset=["date", "sum_click", "id_site", "id_student"])
        if chunk.empty:
            continue
        mp = mp_index.get_indexer(pd.MultiIndex.from_arrays([chunk.code_module.astype(str), chunk.code_presentation.astype(str)]))
        key = mp.astype(np.int64) * (1 << 32) + chunk.id_student.to_numpy(np.int64)
        r = row_index.get_indexer(key)
        s = site_index.get_indexer(chunk.id_site.to_numpy(np.int64))
        n_unknown_sites += int(((s < 0) & (r >= 0) & (mp >= 0)).sum())
        ok = (r >= 0) & (s >= 0) & (mp >= 0)
        if not ok.any():
            continue
        day = chunk.date.to_numpy()[ok]
        week = np.where(day < 0, 0, np.floor_divide(day, 7).astype(np.int64) + 1)
        flat = (r[ok].astype(np.int64) * T + week) * A + site_type[s[ok]]
        total += np.bincount(flat, weights=chunk.sum_click.to_numpy(np.float64)[ok], minlength=N * T * A)
    if n_unknown_sites:
        warnings.warn(f"studentVle.csv: {n_unknown_sites} rows name an id_site absent from vle.csv; they are ignored",
                      stacklevel=3)
    matched = bool(total.any())
    return np.log1p(total.reshape(N, T, A)).astype(np.float32), types, T, matched


def _assessment_features(data_dir, rows: pd.DataFrame, cutoff_day: int) -> tuple[np.ndarray, list[str]]:
    """Per-row summary of the submissions made before the cutoff (vectorised groupby)."""
    ass = read_table(data_dir, "assessments.csv")
    _numeric(ass, "assessments.csv", ["id_assessment", "date", "weight"])
    sa = read_table(data_dir, "studentAssessment.csv")
    _numeric(sa, "studentAssessment.csv", ["id_assessment", "id_student", "date_submitted", "is_banked", "score"])
    ass["code_module"] = ass.code_module.astype(str)
    ass["code_presentation"] = ass.code_presentation.astype(str)
    key = rows[KEY].reset_index(drop=True).assign(_row=np.arange(len(rows)))
    # assessments due before the cutoff, per module presentation (exam dates may be missing: not due)
    due = ass[ass.date < cutoff_day].groupby(["code_module", "code_presentation"]).size().rename("n_due")
    n_due = key.merge(due.reset_index(), on=["code_module", "code_presentation"], how="left").n_due.fillna(0).to_numpy()
    sub = sa.merge(ass, on="id_assessment", how="inner", suffixes=("", "_deadline"))
    sub = sub[sub.date_submitted < cutoff_day]
    sub = sub.merge(key, on=KEY, how="inner")
    sub["s"] = sub.score / 100.0
    sub["was_due"] = (sub.date < cutoff_day).astype(float)
    sub["late"] = (sub.date_submitted > sub.date).astype(float)
    sub["early"] = ((sub.date - sub.date_submitted).clip(-30, 30) / 30.0)
    sub["ws"] = sub.s * sub.weight
    sub["wt"] = sub.weight.where(sub.s.notna())
    for t in ("TMA", "CMA"):
        sub[f"s_{t}"] = sub.s.where(sub.assessment_type == t)
        sub[f"n_{t}"] = (sub.assessment_type == t).astype(float)
    g = sub.groupby("_row")
    agg = pd.DataFrame({
        "n_submitted": g.size(), "n_submitted_due": g.was_due.sum(), "mean_score": g.s.mean(),
        "min_score": g.s.min(), "last_score": sub.sort_values("date_submitted").groupby("_row").s.last(),
        "ws": g.ws.sum(), "wt": g.wt.sum(), "n_late": g.late.sum(), "mean_early": g.early.mean(),
        "n_banked": g.is_banked.sum(), "mean_TMA": g.s_TMA.mean(), "mean_CMA": g.s_CMA.mean(),
        "n_TMA": g.n_TMA.sum(), "n_CMA": g.n_CMA.sum(),
    }).reindex(np.arange(len(rows)))
    n_sub = agg.n_submitted.fillna(0).to_numpy()
    wmean = (agg.ws / agg.wt.where(agg.wt > 0)).to_numpy()
    feats = {
        "n_due": np.log1p(n_due),
        "n_submitted": np.log1p(n_sub),
        "frac_due_submitted": np.where(n_due > 0, agg.n_submitted_due.fillna(0).to_numpy() / np.maximum(n_due, 1), 1.0),
        "n_missed": np.log1p(np.maximum(n_due - agg.n_submitted_due.fillna(0).to_numpy(), 0)),
        "any_submission": (n_sub > 0).astype(float),
        "mean_score": agg.mean_score.fillna(0).to_numpy(),
        "weighted_score": np.nan_to_num(wmean, nan=0.0),
        "min_score": agg.min_score.fillna(0).to_numpy(),
        "last_score": agg.last_score.fillna(0).to_numpy(),
        "n_late": np.log1p(agg.n_late.fillna(0).to_numpy()),
        "mean_days_early/30": agg.mean_early.fillna(0).to_numpy(),
        "n_banked": np.log1p(agg.n_banked.fillna(0).to_numpy()),
        "mean_TMA_score": agg.mean_TMA.fillna(0).to_numpy(),
        "mean_CMA_score": agg.mean_CMA.fillna(0).to_numpy(),
        "n_TMA": np.log1p(agg.n_TMA.fillna(0).to_numpy()),
        "n_CMA": np.log1p(agg.n_CMA.fillna(0).to_numpy()),
    }
    return np.stack(list(feats.values()), 1).astype(np.float32), list(feats)


def _demographic_features(rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    blocks, names = [], []
    for c in CATEGORICAL + ["code_module"]:
        b, n = _one_hot(rows[c], c)
        blocks.append(b)
        names += n
    sem = rows.code_presentation.astype(str).str[-1]
    b, n = _one_hot(sem, "presentation_start")        # B = February, J = October
    blocks.append(b)
    names += n
    reg = rows.date_registration.to_numpy(float)
    num = {
        "num_of_prev_attempts": np.clip(rows.num_of_prev_attempts.fillna(0).to_numpy(float), 0, 6) / 6.0,
        "log_studied_credits": np.log1p(rows.studied_credits.fillna(0).clip(lower=0).to_numpy(float)) / math.log1p(600),
        "date_registration/100": np.nan_to_num(reg, nan=0.0) / 100.0,
        "date_registration_missing": np.isnan(reg).astype(float),
    }
    blocks.append(np.stack(list(num.values()), 1))
    names += list(num)
    return np.concatenate(blocks, 1).astype(np.float32), names


# ------------------------------------------------------------------------------ loader
def load_oulad(
    data_dir: str | Path,
    cutoff_week: int = 8,
    modalities: Sequence[str] | None = None,
    withdrawn_before_cutoff: str = "drop",
    presentations: Sequence[str] | None = None,
    max_students: int | None = None,
    seed: int = 0,
    chunksize: int = 2_000_000,
) -> MultimodalDataset:
    """Build a `MultimodalDataset` from the official OULAD CSV files in ``data_dir``.

    cutoff_week:   only information dated before day ``7 * cutoff_week`` is used (our choice 8).
    modalities:    subset of ("clicks", "assessments", "demographics"); default all that the
                   files allow ("clicks" needs studentVle.csv and vle.csv).
    withdrawn_before_cutoff: "drop" (default) removes students whose date_unregistration is
                   before the cutoff (their label "Withdrawn" is known at the cutoff: a leak);
                   "keep" keeps them (then a model can score well by detecting inactivity).
    presentations: keep only these module presentations, written "AAA_2013J" or "AAA".
    max_students:  keep a stratified random subset of this many rows (by ``seed``), for quick runs.

    ``ds.info`` records the cutoff, what was dropped, the feature names per modality, whether
    clicks were available, whether the folder is the synthetic sample, and ``rows`` (a frame of
    the keys and final_result, in row order of the returned data set).
    """
    cutoff_week = _check_cutoff(cutoff_week)
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} is not a folder. {DOWNLOAD_HINT}")
    if withdrawn_before_cutoff not in ("drop", "keep"):
        raise ValueError(f"withdrawn_before_cutoff must be 'drop' or 'keep', got {withdrawn_before_cutoff!r}")
    modalities, vle_empty = _resolve_modalities(data_dir, modalities)
    rows, n_all, n_early = _read_rows(data_dir, 7 * cutoff_week, withdrawn_before_cutoff, presentations,
                                      max_students, seed)
    y = rows.final_result.isin(POSITIVE).to_numpy(np.int64)
    x, features, T, clicks_absent = _build_modalities(data_dir, rows, modalities, cutoff_week, chunksize, vle_empty)
    synthetic = (data_dir / SAMPLE_MARKER).is_file()
    info = _dataset_info(data_dir, rows, y, x, features, T, clicks_absent, cutoff_week, synthetic,
                         withdrawn_before_cutoff, n_early, n_all)
    present = torch.ones(len(rows), len(x), dtype=torch.bool)
    if clicks_absent:
        present[:, list(x).index("clicks")] = False
    name = "OULAD SAMPLE (synthetic, NOT REAL DATA)" if synthetic else "OULAD"
    return MultimodalDataset(x, torch.from_numpy(y), present=present, name=name, class_names=CLASS_NAMES, info=info)


def _dataset_info(data_dir, rows, y, x, features, T, clicks_absent, cutoff_week, synthetic,
                  withdrawn_before_cutoff, n_early, n_all) -> dict:
    """``ds.info`` of `load_oulad`: provenance, filters, feature names, the rows' keys, a description."""
    counts = pd.Series(y).value_counts().reindex([0, 1], fill_value=0)
    info = {
        "source": str(data_dir), "real_data": not synthetic, "synthetic_sample": synthetic,
        "cutoff_week": cutoff_week, "cutoff_day": 7 * cutoff_week, "has_clicks": "clicks" in x,
        "clicks_note": (f"ABSENT for every student: {clicks_absent}" if clicks_absent else
                        f"[N, {T}, {len(features.get('clicks', []))}]: bin 0 = before the start, bin k = week k-1; "
                        f"log1p(sum_click)") if "clicks" in x else
                       "no clicks: studentVle.csv absent or not asked for (demographics / registration / assessments only)",
        "clicks_absent": bool(clicks_absent),
        "withdrawn_before_cutoff": withdrawn_before_cutoff,
        "n_withdrawn_before_cutoff": n_early, "n_rows_before_filters": n_all,
        "features": features, "label_counts": {CLASS_NAMES[0]: int(counts[0]), CLASS_NAMES[1]: int(counts[1])},
        "rows": rows[KEY + ["final_result"]].copy(),
        "citation": "Kuzilek, Hlosta & Zdrahal, Open University Learning Analytics dataset, Sci. Data 4:170171 (2017), CC-BY 4.0",
    }
    used = [m for m in x if not (m == "clicks" and clicks_absent)]
    n_pres = rows[["code_module", "code_presentation"]].drop_duplicates().shape[0]
    info["description"] = (f"{'OULAD sample (NOT REAL DATA)' if synthetic else 'OULAD real'}: "
                           f"{rows.id_student.nunique():,} students, {n_pres} presentations, "
                           f"cutoff week {cutoff_week}, modalities {'+'.join(used)}")
    return info


def _resolve_modalities(data_dir: Path, modalities) -> tuple[list[str], bool]:
    """The modalities to build (default: all the files allow) and whether studentVle.csv is
    there but empty."""
    has_vle = _has(data_dir, "studentVle.csv")
    if modalities is None:
        modalities = list(MODALITIES) if has_vle else ["assessments", "demographics"]
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {modalities}")
    if "clicks" in modalities and not has_vle:
        raise FileNotFoundError(f"OULAD file studentVle.csv is missing from {str(data_dir)!r}, and modality "
                                f"'clicks' needs it; pass modalities=['assessments', 'demographics'] to go without")
    if not has_vle:
        warnings.warn(f"studentVle.csv is not in {str(data_dir)!r}: building the OULAD data set without the "
                      f"'clicks' modality (demographics, registration and assessments only)", stacklevel=3)
    return modalities, has_vle and "clicks" in modalities and _Table(data_dir, "studentVle.csv").empty()


def _read_rows(data_dir: Path, cutoff_day: int, withdrawn_before_cutoff: str, presentations, max_students,
               seed: int) -> tuple[pd.DataFrame, int, int]:
    """One row per student x presentation with its registration and label, filtered:
    (rows sorted by the key, rows before the filters, students who left before the cutoff)."""
    info_t = read_table(data_dir, "studentInfo.csv")
    if info_t.empty:
        raise ValueError(f"OULAD file studentInfo.csv in {str(data_dir)!r} has a header but no data rows")
    _numeric(info_t, "studentInfo.csv", ["id_student", "num_of_prev_attempts", "studied_credits"])
    reg = read_table(data_dir, "studentRegistration.csv")
    _numeric(reg, "studentRegistration.csv", ["id_student", "date_registration", "date_unregistration"])
    courses = read_table(data_dir, "courses.csv")
    _numeric(courses, "courses.csv", ["module_presentation_length"])
    for df in (info_t, reg, courses):
        df["code_module"] = df.code_module.astype(str)
        df["code_presentation"] = df.code_presentation.astype(str)
    bad = sorted(set(info_t.final_result.dropna().astype(str)) - set(POSITIVE + NEGATIVE))
    if bad or info_t.final_result.isna().any():
        raise ValueError(f"studentInfo.csv: column 'final_result' must hold only {list(POSITIVE + NEGATIVE)}; "
                         f"found {bad or ['missing values']}")
    n_dup = int(info_t.duplicated(KEY).sum())
    if n_dup:
        warnings.warn(f"studentInfo.csv: {n_dup} duplicate (code_module, code_presentation, id_student) rows; "
                      f"keeping the first of each", stacklevel=3)
        info_t = info_t.drop_duplicates(KEY)
    rows = info_t.merge(reg.drop_duplicates(KEY), on=KEY, how="left")
    if presentations is not None:
        want = {str(p) for p in presentations}
        mp = rows.code_module + "_" + rows.code_presentation
        keep = mp.isin(want) | rows.code_module.isin(want)
        if not keep.any():
            raise ValueError(f"presentations {sorted(want)} match no rows; available: {sorted(mp.unique())}")
        rows = rows[keep]
    longest = courses.module_presentation_length.max()
    if cutoff_day >= longest:
        raise ValueError(f"cutoff_week={cutoff_day // 7} (day {cutoff_day}) is not before the end of any "
                         f"presentation (the longest lasts {longest:.0f} days)")
    n_all = len(rows)
    early = rows.date_unregistration < cutoff_day
    if withdrawn_before_cutoff == "drop":
        rows = rows[~early]
    if max_students is not None:
        rows = _stratified_subset(rows, max_students, seed)
    rows = rows.sort_values(KEY).reset_index(drop=True)
    if len(rows) < 2:
        raise ValueError(f"only {len(rows)} students are left after the filters; loosen presentations/cutoff_week")
    return rows, n_all, int(early.sum())


def _stratified_subset(rows: pd.DataFrame, max_students, seed: int) -> pd.DataFrame:
    if int(max_students) < 2:
        raise ValueError(f"max_students must be >= 2, got {max_students}")
    if len(rows) <= int(max_students):
        return rows
    rng = np.random.default_rng(int(seed))
    y_tmp = rows.final_result.isin(POSITIVE).to_numpy()
    pick = []
    for cls in (False, True):
        idx = np.flatnonzero(y_tmp == cls)
        k = int(round(int(max_students) * len(idx) / len(rows)))
        pick.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return rows.iloc[np.sort(np.concatenate(pick))]


def _build_modalities(data_dir: Path, rows: pd.DataFrame, modalities, cutoff_week: int, chunksize: int,
                      vle_empty: bool):
    """(x, feature names, clicks' time bins, why clicks are absent or None)."""
    x, features = {}, {}
    T, clicks_absent = None, None
    for m in modalities:
        if m == "clicks":
            if vle_empty:
                vle = read_table(data_dir, "vle.csv", usecols=["activity_type"])
                types, T = sorted(vle.activity_type.astype(str).unique()) or ["none"], cutoff_week + 1
                arr = np.zeros((len(rows), T, len(types)), np.float32)
                clicks_absent = "studentVle.csv has no data rows"
            else:
                arr, types, T, matched = _click_tensor(data_dir, rows, cutoff_week, chunksize)
                if not matched:
                    clicks_absent = "no row of studentVle.csv (before the cutoff) matches a student of this data set"
            if clicks_absent:
                warnings.warn(f"{clicks_absent}: the 'clicks' modality is marked ABSENT for every student "
                              f"(present=False), not all-zero and present", stacklevel=3)
            features[m] = types
        elif m == "assessments":
            arr, features[m] = _assessment_features(data_dir, rows, 7 * cutoff_week)
        else:
            arr, features[m] = _demographic_features(rows)
        x[m] = torch.from_numpy(arr)
    return x, features, T, clicks_absent


def label_counts(ds: MultimodalDataset) -> pd.DataFrame:
    """Rows per final_result and per binary label, from ``ds.info['rows']``."""
    r = ds.info.get("rows")
    if r is None:
        raise ValueError("ds.info has no 'rows': it was not built by load_oulad")
    out = r.groupby("final_result").size().rename("n").reset_index()
    out["label"] = np.where(out.final_result.isin(POSITIVE), CLASS_NAMES[1], CLASS_NAMES[0])
    return out


# --------------------------------------------------------------------- synthetic sample
_REGIONS = ["East Anglian Region", "East Midlands Region", "Ireland", "London Region", "North Region",
            "North Western Region", "Scotland", "South East Region", "South Region", "South West Region",
            "Wales", "West Midlands Region", "Yorkshire Region"]
_EDU = ["No Formal quals", "Lower Than A Level", "A Level or Equivalent", "HE Qualification",
        "Post Graduate Qualification"]
_IMD = ["0-10%", "10-20", "20-30%", "30-40%", "40-50%", "50-60%", "60-70%", "70-80%", "80-90%", "90-100%"]
_AGE = ["0-35", "35-55", "55<="]
_ACTIVITY = ["oucontent", "resource", "url", "homepage", "subpage", "forumng", "quiz", "glossary"]
_ACT_POPULARITY = np.array([6, 3, 2, 5, 3, 4, 3, 1], float)


def write_sample(folder: str | Path, n_students: int = 600, seed: int = 0, n_modules: int = 2,
                 with_vle: bool = True) -> Path:
    """Write a SYNTHETIC data set in OULAD's official schema (seven CSVs) into ``folder``.

    NOT REAL DATA: every value is drawn from a made-up generative story (ours): each student
    has a latent engagement ``e`` and ability ``a``; daily VLE activity grows with ``e``,
    assessment submission and timing with ``e``, scores with ``a``; withdrawal is likelier
    at low ``e`` and stops clicks and submissions from its day; the final result depends on
    ``a`` and ``e`` plus noise, so both clicks and scores carry signal about the label.
    A file ``NOT_REAL_DATA.txt`` marks the folder; the loader then names the data set
    "OULAD SAMPLE (synthetic, NOT REAL DATA)" and sets ``info['real_data'] = False``.
    ``with_vle=False`` leaves out studentVle.csv (to try the loader without it).
    """
    if isinstance(n_students, bool) or int(n_students) < 10:
        raise ValueError(f"n_students must be >= 10, got {n_students}")
    if not 1 <= int(n_modules) <= 7:
        raise ValueError(f"n_modules must be in 1..7, got {n_modules}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(seed))
    n = int(n_students)
    modules = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"][: int(n_modules)]
    mps = [(m, p) for m in modules for p in ("2013J", "2014B")]
    # the draws happen in this order (courses, assessments, VLE, students, submissions, clicks)
    tables, length = _sample_course_tables(rng, mps)
    st = _sample_students(rng, n, mps, length)
    tables.update(studentInfo=st["info"], studentRegistration=st["registration"],
                  studentAssessment=_sample_submissions(rng, st, tables["assessments"], mps, length))
    if with_vle:
        tables["studentVle"] = _sample_clicks(rng, st, tables["vle"], mps)
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False, na_rep="?", float_format="%.10g")
    (folder / SAMPLE_MARKER).write_text(
        "SYNTHETIC SAMPLE - NOT REAL DATA.\n"
        "Written by nbkit.data.oulad.write_sample in the official OULAD schema (Kuzilek et al. 2017) so that\n"
        "the loader, tests and notebooks run without the real files. Its values come from a made-up\n"
        f"generative story (seed={seed}, n_students={n}); no conclusion about students or about any method\n"
        "on real data may be drawn from it. Real data: https://analyse.kmi.open.ac.uk/open_dataset (CC-BY 4.0).\n")
    return folder


def _sample_course_tables(rng, mps) -> tuple[dict, dict]:
    """courses, assessments (CMA/TMA schedule per presentation, an exam at the end whose date
    is sometimes missing) and VLE sites; and the presentations' lengths."""
    length = {mp: int(rng.integers(234, 270)) for mp in mps}
    courses = pd.DataFrame([(m, p, length[(m, p)]) for m, p in mps], columns=list(SCHEMA["courses.csv"]))
    ass_rows, aid = [], 1750
    for i, (m, p) in enumerate(mps):
        L = length[(m, p)]
        sched = [("CMA", 18, 5.0), ("TMA", 26, 10.0), ("TMA", 54, 15.0), ("CMA", 90, 10.0),
                 ("TMA", 117, 20.0), ("TMA", 166, 20.0), ("TMA", L - 40, 20.0)]
        for t, d, w in sched:
            ass_rows.append((m, p, aid, t, d + int(rng.integers(-3, 4)), w))
            aid += 1
        ass_rows.append((m, p, aid, "Exam", L if i % 2 == 0 else np.nan, 100.0))
        aid += 1
    vle_rows, sid = [], 546000
    for m, p in mps:
        for k in range(30):
            t = _ACTIVITY[k % len(_ACTIVITY)]
            wf = float(rng.integers(0, 20)) if t == "subpage" and k % 3 == 0 else np.nan
            vle_rows.append((sid, m, p, t, wf, wf))
            sid += 1
    return ({"courses": courses, "assessments": pd.DataFrame(ass_rows, columns=list(SCHEMA["assessments.csv"])),
             "vle": pd.DataFrame(vle_rows, columns=list(SCHEMA["vle.csv"]))}, length)


def _sample_students(rng, n: int, mps, length) -> dict:
    """studentInfo and studentRegistration, plus the latent variables the later tables use."""
    mp_idx = rng.integers(0, len(mps), n)
    ids = rng.choice(np.arange(11000, 2_700_000), size=n, replace=False)
    edu = rng.choice(len(_EDU), n, p=[0.02, 0.40, 0.43, 0.14, 0.01])
    imd = rng.integers(0, len(_IMD), n)
    e = rng.normal(0, 1, n)                                         # latent engagement
    a = 0.5 * rng.normal(0, 1, n) + 0.35 * (edu - 2) + 0.06 * (imd - 4.5) + 0.3 * e   # latent ability
    L_s = np.array([length[mps[i]] for i in mp_idx])
    withdraw = rng.random(n) < 1 / (1 + np.exp(1.2 + 1.6 * e + 0.4 * a))
    unreg = np.where(withdraw, rng.integers(-20, 1, n) + (rng.random(n) * (L_s - 30)).astype(int), np.nan)
    score_latent = 0.9 * a + 0.6 * e + rng.normal(0, 0.6, n)
    final = np.where(withdraw, "Withdrawn",
                     np.where(score_latent > 1.1, "Distinction", np.where(score_latent > -0.35, "Pass", "Fail")))
    imd_str = np.array(_IMD, object)[imd]
    imd_str[rng.random(n) < 0.03] = np.nan
    info = pd.DataFrame({
        "code_module": [mps[i][0] for i in mp_idx], "code_presentation": [mps[i][1] for i in mp_idx],
        "id_student": ids, "gender": rng.choice(["M", "F"], n),
        "region": rng.choice(_REGIONS, n), "highest_education": np.array(_EDU)[edu], "imd_band": imd_str,
        "age_band": rng.choice(_AGE, n, p=[0.7, 0.29, 0.01]),
        "num_of_prev_attempts": rng.choice([0, 1, 2], n, p=[0.87, 0.1, 0.03]),
        "studied_credits": rng.choice([30, 60, 90, 120], n, p=[0.2, 0.6, 0.1, 0.1]),
        "disability": rng.choice(["N", "Y"], n, p=[0.9, 0.1]), "final_result": final,
    })
    date_reg = -rng.integers(1, 180, n).astype(float)
    date_reg[rng.random(n) < 0.01] = np.nan
    registration = pd.DataFrame({"code_module": info.code_module, "code_presentation": info.code_presentation,
                                 "id_student": ids, "date_registration": date_reg, "date_unregistration": unreg})
    return dict(info=info, registration=registration, mp_idx=mp_idx, ids=ids, e=e, a=a, L_s=L_s,
                withdraw=withdraw, unreg=unreg)


def _sample_submissions(rng, st: dict, assessments: pd.DataFrame, mps, length) -> pd.DataFrame:
    """studentAssessment: one row per (student, assessment) submitted before withdrawal."""
    sa_rows = []
    by_mp = {mp: list(g.itertuples(index=False)) for mp, g in assessments.groupby(["code_module", "code_presentation"])}
    e, a, ids, withdraw, unreg = st["e"], st["a"], st["ids"], st["withdraw"], st["unreg"]
    for s in range(len(ids)):
        m, p = mps[st["mp_idx"][s]]
        for r in by_mp[(m, p)]:
            deadline = r.date if not np.isnan(r.date) else length[(m, p)]
            if withdraw[s] and unreg[s] <= deadline:
                continue
            if r.assessment_type != "Exam" and rng.random() > 1 / (1 + np.exp(-(1.2 + 1.3 * e[s]))):
                continue
            sub = int(deadline + round(rng.normal(-1.5 - 1.5 * e[s], 3)))
            score = float(np.clip(round(62 + 14 * a[s] + 5 * e[s] + rng.normal(0, 9)), 0, 100))
            if rng.random() < 0.01:
                score = np.nan
            sa_rows.append((r.id_assessment, ids[s], sub, int(rng.random() < 0.01), score))
    return pd.DataFrame(sa_rows, columns=list(SCHEMA["studentAssessment.csv"]))


def _sample_clicks(rng, st: dict, vle: pd.DataFrame, mps) -> pd.DataFrame:
    """studentVle: daily activity, vectorised over (student, day)."""
    e, ids, withdraw, unreg, L_s, mp_idx = st["e"], st["ids"], st["withdraw"], st["unreg"], st["L_s"], st["mp_idx"]
    n = len(ids)
    days = np.arange(-20, 270)
    sd_s, sd_d = np.meshgrid(np.arange(n), days, indexing="ij")
    end = np.where(withdraw, unreg, L_s)
    alive = (sd_d < end[:, None]) & (sd_d < L_s[:, None])
    weekly = 0.3 * np.cos(2 * np.pi * sd_d / 7)
    fade = np.where(withdraw[:, None], -1.5 * np.clip(1 - (end[:, None] - sd_d) / 30, 0, 1), 0)
    p_active = 1 / (1 + np.exp(-(-0.9 + 1.1 * e[:, None] + weekly + fade - 0.8 * (sd_d < 0))))
    active = alive & (rng.random(sd_s.shape) < p_active)
    s_idx, dy = sd_s[active], sd_d[active]
    k = 1 + rng.poisson(1.2 * np.exp(0.3 * e[s_idx]))               # sites visited that day
    s_idx, dy = np.repeat(s_idx, k), np.repeat(dy, k)
    site_of_mp = {mp: vle.id_site[(vle.code_module == mp[0]) & (vle.code_presentation == mp[1])].to_numpy()
                  for mp in mps}
    type_w = _ACT_POPULARITY[[_ACTIVITY.index(t) for t in vle.activity_type[:30]]]
    type_w = type_w / type_w.sum()
    pick = rng.choice(30, size=len(s_idx), p=type_w)
    site = np.array([site_of_mp[mps[i]] for i in range(len(mps))])[mp_idx[s_idx], pick]
    clicks = 1 + rng.geometric(1 / (1 + 2.0 * np.exp(0.25 * e[s_idx])), size=len(s_idx)) - 1
    info = st["info"]
    return pd.DataFrame({"code_module": info.code_module.to_numpy()[s_idx],
                         "code_presentation": info.code_presentation.to_numpy()[s_idx],
                         "id_student": ids[s_idx], "id_site": site, "date": dy, "sum_click": clicks})
