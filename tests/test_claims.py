"""nbkit.claims: the 95 % Student-t interval of paired per-seed effects, the verdict rule,
claim rows from tidy frames, the CSV they are appended to, and their sentences."""
import math

import numpy as np
import pandas as pd
import pytest

from nbkit.claims import COLUMNS, MIN_SEEDS, claim, claims_markdown, interval, read_claims, record_claim, verdict


def test_interval_is_the_student_t_interval_written_out():
    v = np.array([0.10, 0.30, 0.20, 0.25])
    m, lo, hi = interval(v)
    # t_{0.975, 3} = 3.182446 (table value), sd with Bessel's correction
    half = 3.182446 * v.std(ddof=1) / math.sqrt(4)
    assert m == pytest.approx(v.mean()) and lo == pytest.approx(m - half, abs=1e-6) and hi == pytest.approx(m + half, abs=1e-6)
    m3, lo3, hi3 = interval([1.0, 2.0, 3.0])               # t_{0.975, 2} = 4.302653
    assert (hi3 - lo3) / 2 == pytest.approx(4.302653 * 1.0 / math.sqrt(3), abs=1e-5)
    assert interval([1.0, 2.0, 3.0], level=0.5)[2] < hi3     # a lower level gives a narrower interval
    m1, lo1, hi1 = interval([0.4])
    assert m1 == 0.4 and math.isnan(lo1) and math.isnan(hi1)


def test_verdict_rule():
    assert verdict([0.10, 0.12, 0.11]) == "supported"                       # interval excludes 0 above
    assert verdict([-0.10, -0.12, -0.11]) == "not supported"                # excludes 0 below
    assert verdict([0.5, -0.4, 0.1]) == "inconclusive"                      # mean > 0, interval contains 0
    assert verdict([-0.5, 0.4, -0.1]) == "not supported"                    # mean on the wrong side
    assert verdict([0.0, 0.0, 0.0]) == "not supported"                      # no effect is not an effect
    assert verdict([-0.10, -0.12, -0.11], direction="less") == "supported"  # the claimed sign is negative
    # fewer than MIN_SEEDS seeds: never "supported", whatever the numbers
    assert MIN_SEEDS == 3
    assert verdict([0.10, 0.11]).startswith("inconclusive (fewer than 3")
    assert verdict([0.10]).startswith("inconclusive")
    assert verdict([-0.10, -0.11]) == "not supported"
    # the old one-standard-error rule said "supported" here; a 95 % interval does not
    v = [0.02, 0.10, -0.01]
    assert np.mean(v) > np.std(v, ddof=1) / math.sqrt(3) and verdict(v) == "inconclusive"
    with pytest.raises(ValueError, match="direction must be one of"):
        verdict([1.0, 2.0, 3.0], direction="up")
    with pytest.raises(ValueError, match="values must be finite"):
        verdict([1.0, float("nan"), 2.0])


def _frame():
    rows = []
    for s, (a, b) in enumerate([(0.80, 0.70), (0.82, 0.75), (0.85, 0.71)]):
        rows += [{"method": "new", "seed": s, "acc": a}, {"method": "old", "seed": s, "acc": b}]
    return pd.DataFrame(rows)


def test_claim_pairs_by_seed_and_records(tmp_path, monkeypatch):
    path = tmp_path / "claims.csv"
    monkeypatch.setenv("NBKIT_CLAIMS", str(path))
    f = _frame().sample(frac=1.0, random_state=0)            # row order must not matter: pairing is by seed
    row = claim(f, paper="P", claim="new beats old", value="acc", treatment="new", control="old",
                dataset="toy n=6", reference="paper: +0.05", reference_value=0.05)
    r = row.iloc[0]
    eff = np.array([0.10, 0.07, 0.14])
    assert r.ours_mean == pytest.approx(eff.mean()) and r.ours_std == pytest.approx(eff.std(ddof=1))
    assert r.n_seeds == 3 and r.verdict == "supported" and r.ci_low > 0
    assert "(new 0.823 vs old 0.720)" in r.claim and r.dataset == "toy n=6"
    assert r.metric == "acc: new - old, paired by seed"
    df = read_claims(path)
    assert list(df.columns) == COLUMNS and len(df) == 1 and df.loc[0, "ci_high"] == pytest.approx(r.ci_high)
    assert COLUMNS[:9] == ["paper", "claim", "metric", "ours_mean", "ours_std", "n_seeds", "reference",
                           "reference_value", "verdict"]              # the nine original columns first
    # against a constant, and the claimed direction "less"
    rho = pd.DataFrame({"method": ["fused"] * 3, "seed": [0, 1, 2], "rho": [0.6, 0.7, 0.65]})
    r2 = claim(rho, paper="P", claim="rho < 1", value="rho", treatment="fused", against=1.0, direction="less",
               dataset="toy", record=False).iloc[0]
    assert r2.ours_mean == pytest.approx(-0.35) and r2.verdict == "supported"
    assert len(read_claims(path)) == 1                       # record=False wrote nothing
    # several columns in `by`
    grid = pd.DataFrame({"a": [0, 0, 0, 1, 1, 1], "b": [5] * 6, "seed": [0, 1, 2] * 2, "v": [1, 2, 3, 0, 1, 2.5]})
    r3 = claim(grid, paper="P", claim="a lowers v", value="v", by=["a", "b"], treatment=(1, 5), control=(0, 5),
               direction="less", dataset="toy", record=False).iloc[0]
    assert r3.ours_mean == pytest.approx(np.mean([-1, -1, -0.5]))
    assert "(a=1, b=5: 1.167 vs a=0, b=5: 2.000)" in r3.claim and r3.metric == "v: (a=1, b=5) - (a=0, b=5), paired by seed"


def test_claim_bad_input_is_named():
    f = _frame()
    kw = dict(paper="P", claim="c", value="acc", dataset="toy", record=False)
    with pytest.raises(KeyError, match="no rows with {'method': 'newer'}"):
        claim(f, treatment="newer", control="old", **kw)
    with pytest.raises(KeyError, match=r"no column\(s\) \['f1'\]"):
        claim(f, **{**kw, "value": "f1"}, treatment="new", control="old")
    with pytest.raises(ValueError, match="exactly one of control"):
        claim(f, treatment="new", **kw)
    with pytest.raises(ValueError, match="several rows per seed"):
        claim(pd.concat([f, f]), treatment="new", control="old", **kw)
    with pytest.raises(ValueError, match="dataset must be a non-empty string"):
        claim(f, treatment="new", control="old", **{**kw, "dataset": ""})
    with pytest.raises(ValueError, match="verdict_text must be ''"):
        record_claim("P", "c", "m", [1.0, 2.0, 3.0], dataset="toy", verdict_text="yes", record=False)


def test_measurement_rows_and_sentences(tmp_path):
    path = tmp_path / "c.csv"
    a = record_claim("P", "MM-late's drop", "AUC drop", [2.0, 3.0, 4.0], dataset="toy", verdict_text="", path=path)
    b = claim(_frame(), paper="P", claim="new beats old", value="acc", treatment="new", control="old",
              dataset="toy", reference_value=0.05, record=False)
    md = claims_markdown(pd.concat([a, b], ignore_index=True)).splitlines()
    assert len(md) == 2
    assert "measured (no verdict)" in md[0] and "+3.000" in md[0] and "toy" in md[0]
    assert "**supported**" in md[1] and "95% CI [+" in md[1] and "paper: +0.05" in md[1]
    back = read_claims(path)
    assert back.loc[0, "verdict"] == "" and back.loc[0, "n_seeds"] == 3      # an empty verdict survives the CSV
    with pytest.raises(ValueError, match="must be claim rows"):
        claims_markdown(pd.DataFrame({"claim": ["x"]}))
