"""OULAD loader: tiny hand-written tables in the official schema (exact values known) and the
synthetic sample written by `write_sample`."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from nbkit.data import oulad
from nbkit.data.oulad import SCHEMA, load_oulad, write_sample


def _write_tiny(folder, with_vle=True, drop_column=None):
    """One presentation (AAA 2013J), five students with known clicks and submissions."""
    t = {}
    t["courses.csv"] = pd.DataFrame({"code_module": ["AAA"], "code_presentation": ["2013J"],
                                     "module_presentation_length": [240]})
    t["assessments.csv"] = pd.DataFrame({
        "code_module": ["AAA"] * 4, "code_presentation": ["2013J"] * 4, "id_assessment": [1, 2, 3, 4],
        "assessment_type": ["TMA", "CMA", "TMA", "Exam"], "date": ["20", "50", "100", "?"],
        "weight": [10, 0, 20, 100]})
    t["vle.csv"] = pd.DataFrame({"id_site": [11, 12], "code_module": ["AAA", "AAA"],
                                 "code_presentation": ["2013J", "2013J"], "activity_type": ["resource", "quiz"],
                                 "week_from": ["?", "?"], "week_to": ["?", "?"]})
    t["studentInfo.csv"] = pd.DataFrame({
        "code_module": ["AAA"] * 5, "code_presentation": ["2013J"] * 5, "id_student": [101, 102, 103, 104, 105],
        "gender": ["M", "F", "F", "M", "M"], "region": ["Scotland", "Wales", "Wales", "Ireland", "Scotland"],
        "highest_education": ["HE Qualification", "A Level or Equivalent", "Lower Than A Level",
                              "A Level or Equivalent", "No Formal quals"],
        "imd_band": ["90-100%", "?", "10-20", "0-10%", "20-30%"], "age_band": ["35-55", "0-35", "0-35", "55<=", "0-35"],
        "num_of_prev_attempts": [0, 1, 0, 0, 2], "studied_credits": [60, 120, 60, 30, 60],
        "disability": ["N", "N", "Y", "N", "N"],
        "final_result": ["Pass", "Distinction", "Fail", "Withdrawn", "Withdrawn"]})
    t["studentRegistration.csv"] = pd.DataFrame({
        "code_module": ["AAA"] * 5, "code_presentation": ["2013J"] * 5, "id_student": [101, 102, 103, 104, 105],
        "date_registration": ["-50", "-10", "?", "-5", "-100"], "date_unregistration": ["?", "?", "?", "30", "100"]})
    t["studentAssessment.csv"] = pd.DataFrame({
        "id_assessment": [1, 3, 1, 2, 1], "id_student": [101, 101, 102, 102, 105],
        "date_submitted": [18, 98, 22, 45, 19], "is_banked": [0, 0, 0, 0, 0], "score": [80, 90, 60, 70, 40]})
    if with_vle:
        # (student, site, day, clicks); days are relative to the start; cutoff 8 weeks = day 56
        rows = [(101, 11, -3, 5), (101, 11, 0, 2), (101, 11, 0, 1), (101, 12, 6, 3), (101, 11, 7, 4),
                (101, 12, 55, 10), (101, 11, 56, 100), (101, 12, 200, 7),
                (102, 12, 14, 9), (104, 11, 1, 50), (105, 11, 60, 8), (999, 11, 3, 1000)]
        s = pd.DataFrame(rows, columns=["id_student", "id_site", "date", "sum_click"])
        s.insert(0, "code_presentation", "2013J")
        s.insert(0, "code_module", "AAA")
        t["studentVle.csv"] = s[list(SCHEMA["studentVle.csv"])]
    for name, df in t.items():
        if drop_column and drop_column[0] == name:
            df = df.drop(columns=[drop_column[1]])
        df.to_csv(folder / name, index=False)
    return folder


@pytest.fixture
def tiny(tmp_path):
    return _write_tiny(tmp_path)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("oulad_sample"), n_students=400, seed=1)


def test_rows_labels_and_leak_filter(tiny):
    ds = load_oulad(tiny, cutoff_week=8)
    rows = ds.info["rows"]
    # 104 unregistered on day 30 < 56: dropped (label leak); 105 unregistered on day 100: kept
    assert rows.id_student.tolist() == [101, 102, 103, 105]
    assert ds.y.tolist() == [1, 1, 0, 0]
    assert ds.class_names == ["Fail/Withdrawn", "Pass/Distinction"]
    assert ds.info["n_withdrawn_before_cutoff"] == 1 and ds.info["real_data"] is True
    assert ds.modalities == ("clicks", "assessments", "demographics")
    kept = load_oulad(tiny, cutoff_week=8, withdrawn_before_cutoff="keep")
    assert kept.info["rows"].id_student.tolist() == [101, 102, 103, 104, 105]
    assert kept.y.tolist() == [1, 1, 0, 0, 0]


def test_weekly_clicks_exact_and_cutoff(tiny):
    ds = load_oulad(tiny, cutoff_week=8)
    assert ds.info["features"]["clicks"] == ["quiz", "resource"]
    c = torch.expm1(ds.x["clicks"])                              # undo log1p: raw sums
    assert c.shape == (4, 9, 2)
    q, r = 0, 1
    s101 = c[0]
    assert s101[0, r] == pytest.approx(5)                       # before the start (day -3)
    assert s101[1, r] == pytest.approx(3) and s101[1, q] == pytest.approx(3)   # week 0: 2 + 1 resource, 3 quiz
    assert s101[2, r] == pytest.approx(4)                       # week 1 (day 7)
    assert s101[8, q] == pytest.approx(10)                      # week 7 (day 55), last week before the cutoff
    assert float(s101.sum()) == pytest.approx(5 + 3 + 3 + 4 + 10)   # day 56 and day 200 are not there
    assert c[1, 3, q] == pytest.approx(9) and float(c[1].sum()) == pytest.approx(9)
    assert float(c[2].sum()) == 0 and float(c[3].sum()) == 0    # 105's clicks are after the cutoff
    # an earlier cutoff removes week 7, and keeps 104 (unregistered on day 30, after day 28)
    ds4 = load_oulad(tiny, cutoff_week=4)
    assert ds4.x["clicks"].shape == (5, 5, 2)
    assert ds4.info["rows"].id_student.tolist() == [101, 102, 103, 104, 105]
    assert float(torch.expm1(ds4.x["clicks"][3, 1, r])) == pytest.approx(50)
    assert float(torch.expm1(ds4.x["clicks"][0]).sum()) == pytest.approx(5 + 3 + 3 + 4)


def test_chunked_reading_matches(tiny):
    a = load_oulad(tiny, cutoff_week=8, chunksize=3).x["clicks"]
    b = load_oulad(tiny, cutoff_week=8).x["clicks"]
    assert torch.equal(a, b)


def test_assessment_features_exact(tiny):
    ds = load_oulad(tiny, cutoff_week=8)
    names = ds.info["features"]["assessments"]
    f = pd.DataFrame(ds.x["assessments"].numpy(), columns=names)
    assert np.allclose(f.n_due, math.log1p(2))                  # assessments 1 and 2 are due before day 56
    assert f.mean_score.tolist() == pytest.approx([0.8, 0.65, 0.0, 0.4])   # 101's score of day 98 is unused
    assert f.frac_due_submitted.tolist() == pytest.approx([0.5, 1.0, 0.0, 0.5])
    assert f.n_late.tolist() == pytest.approx([0, math.log1p(1), 0, 0])     # 102 submitted 1 on day 22 > 20
    assert f.weighted_score.tolist() == pytest.approx([0.8, 0.6, 0.0, 0.4])  # CMA has weight 0
    assert f.any_submission.tolist() == [1, 1, 0, 1]
    later = pd.DataFrame(load_oulad(tiny, cutoff_week=15).x["assessments"].numpy(), columns=names)
    assert later.mean_score[0] == pytest.approx(0.85)           # day 98 < 105 now counts


def test_demographics_one_hot(tiny):
    ds = load_oulad(tiny, cutoff_week=8)
    names = ds.info["features"]["demographics"]
    d = pd.DataFrame(ds.x["demographics"].numpy(), columns=names)
    assert d["imd_band=missing"].tolist() == [0, 1, 0, 0]
    assert d["gender=F"].tolist() == [0, 1, 1, 0]
    assert d["date_registration_missing"].tolist() == [0, 0, 1, 0]
    assert d["date_registration/100"][0] == pytest.approx(-0.5)
    groups = ["gender=", "region=", "highest_education=", "imd_band=", "age_band=", "disability="]
    for g in groups:                                            # each one-hot block sums to 1 per row
        assert np.allclose(d[[c for c in names if c.startswith(g)]].sum(axis=1), 1.0)


def test_without_student_vle(tmp_path):
    folder = _write_tiny(tmp_path, with_vle=False)
    with pytest.warns(UserWarning, match="studentVle.csv"):
        ds = load_oulad(folder)
    assert ds.modalities == ("assessments", "demographics")
    assert ds.info["has_clicks"] is False and "no clicks" in ds.info["clicks_note"]
    with pytest.raises(FileNotFoundError, match="studentVle.csv"):
        load_oulad(folder, modalities=["clicks", "demographics"])


@pytest.mark.parametrize("name", ["studentInfo.csv", "studentRegistration.csv", "courses.csv",
                                  "assessments.csv", "studentAssessment.csv", "vle.csv"])
def test_missing_file_is_named(tmp_path, name):
    folder = _write_tiny(tmp_path)
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_oulad(folder)


@pytest.mark.parametrize("name,column", [("studentVle.csv", "sum_click"), ("studentInfo.csv", "final_result"),
                                         ("studentInfo.csv", "imd_band"), ("assessments.csv", "weight"),
                                         ("studentAssessment.csv", "score"),
                                         ("studentRegistration.csv", "date_unregistration"),
                                         ("vle.csv", "activity_type")])
def test_missing_column_is_named(tmp_path, name, column):
    folder = _write_tiny(tmp_path, drop_column=(name, column))
    with pytest.raises(ValueError, match=f"{name}: column '{column}' is missing"):
        load_oulad(folder)


def test_bad_inputs(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        load_oulad(tmp_path / "nope")
    with pytest.raises(ValueError, match="cutoff_week"):
        load_oulad(tiny, cutoff_week=0)
    with pytest.raises(ValueError, match="cutoff_week"):
        load_oulad(tiny, cutoff_week=40)                        # past the end of the 240-day presentation
    with pytest.raises(ValueError, match="modalities"):
        load_oulad(tiny, modalities=["video"])
    with pytest.raises(ValueError, match="withdrawn_before_cutoff"):
        load_oulad(tiny, withdrawn_before_cutoff="maybe")
    with pytest.raises(ValueError, match="presentations"):
        load_oulad(tiny, presentations=["ZZZ_2013J"])
    info = pd.read_csv(tiny / "studentInfo.csv")
    info.loc[0, "final_result"] = "Passed"
    info.to_csv(tiny / "studentInfo.csv", index=False)
    with pytest.raises(ValueError, match="final_result.*Passed"):
        load_oulad(tiny)


def test_unknown_site_warns(tmp_path):
    folder = _write_tiny(tmp_path)
    s = pd.read_csv(folder / "studentVle.csv")
    s.loc[len(s)] = ["AAA", "2013J", 101, 77, 3, 5]
    s.to_csv(folder / "studentVle.csv", index=False)
    with pytest.warns(UserWarning, match="id_site"):
        ds = load_oulad(folder)
    assert float(torch.expm1(ds.x["clicks"][0]).sum()) == pytest.approx(25)


def test_write_sample_schema_and_marker(sample_dir):
    for name, cols in SCHEMA.items():
        head = pd.read_csv(sample_dir / name, nrows=5)
        assert list(head.columns) == list(cols), name
    assert "NOT REAL DATA" in (sample_dir / oulad.SAMPLE_MARKER).read_text()
    info = pd.read_csv(sample_dir / "studentInfo.csv")
    assert set(info.final_result) == {"Pass", "Distinction", "Fail", "Withdrawn"}
    assert not info.duplicated(["code_module", "code_presentation", "id_student"]).any()
    vle = pd.read_csv(sample_dir / "vle.csv")
    s = pd.read_csv(sample_dir / "studentVle.csv")
    assert s.id_site.isin(vle.id_site).all() and (s.sum_click >= 1).all()
    # withdrawn students stop clicking on their unregistration day
    reg = pd.read_csv(sample_dir / "studentRegistration.csv", na_values="?")
    m = s.merge(reg, on=["code_module", "code_presentation", "id_student"])
    assert (m.date < m.date_unregistration.fillna(10**6)).all()


def test_sample_loads_labelled_not_real(sample_dir):
    ds = load_oulad(sample_dir, cutoff_week=6)
    assert "NOT REAL DATA" in ds.name and ds.info["real_data"] is False
    assert ds.x["clicks"].shape[1:] == (7, 8)
    assert 0.3 < ds.y.float().mean() < 0.7
    # the label depends on clicks and on scores: each alone separates the classes
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    y = ds.y.numpy()
    for m in ("clicks", "assessments"):
        X = ds.x[m].reshape(len(ds), -1).numpy()
        p = cross_val_predict(LogisticRegression(max_iter=2000), X, y, cv=3, method="predict_proba")[:, 1]
        assert roc_auc_score(y, p) > 0.7, m


def test_sample_deterministic_and_no_vle(tmp_path):
    a = write_sample(tmp_path / "a", n_students=50, seed=3)
    b = write_sample(tmp_path / "b", n_students=50, seed=3)
    for name in SCHEMA:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = write_sample(tmp_path / "c", n_students=50, seed=3, with_vle=False)
    assert not (c / "studentVle.csv").exists()
    with pytest.warns(UserWarning, match="without the 'clicks' modality"):
        ds = load_oulad(c)
    assert ds.modalities == ("assessments", "demographics")
    with pytest.raises(ValueError, match="n_students"):
        write_sample(tmp_path / "d", n_students=3)


def test_max_students_and_presentations(sample_dir):
    full = load_oulad(sample_dir)
    small = load_oulad(sample_dir, max_students=100, seed=0)
    assert 95 <= len(small) <= 105
    assert abs(small.y.float().mean() - full.y.float().mean()) < 0.05      # stratified
    one = load_oulad(sample_dir, presentations=["AAA_2013J"])
    r = one.info["rows"]
    assert set(r.code_module) == {"AAA"} and set(r.code_presentation) == {"2013J"}
    assert len(one) < len(full)


def test_label_counts(tiny):
    ds = load_oulad(tiny)
    lc = oulad.label_counts(ds).set_index("final_result")
    assert lc.loc["Withdrawn", "n"] == 1 and lc.loc["Withdrawn", "label"] == "Fail/Withdrawn"
    assert lc.loc["Distinction", "label"] == "Pass/Distinction"


# ------------------------------------------------------------------ the case-study protocol
def test_split_by_student_is_disjoint_and_stratified(sample_dir, tmp_path):
    from nbkit.experiments.nb10_oulad import split_by_student

    # a student who took two presentations must land on one side only
    folder = write_sample(tmp_path / "s", n_students=300, seed=2)
    info = pd.read_csv(folder / "studentInfo.csv")
    reg = pd.read_csv(folder / "studentRegistration.csv")
    other = info.code_presentation.map({"2013J": "2014B", "2014B": "2013J"})
    dup = info.head(40).assign(code_presentation=other.head(40))
    pd.concat([info, dup]).to_csv(folder / "studentInfo.csv", index=False)
    pd.concat([reg, reg.head(40).assign(code_presentation=other.head(40))]).to_csv(
        folder / "studentRegistration.csv", index=False)
    ds = load_oulad(folder)
    assert ds.info["rows"].id_student.duplicated().sum() > 0
    parts = split_by_student(ds, (0.6, 0.2, 0.2), seed=0)
    assert sum(len(p) for p in parts) == len(ds)
    ids = [set(p.info["rows"].id_student) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) == set(ds.info["rows"].id_student)
    for p in parts:
        assert len(p.info["rows"]) == len(p)
        assert abs(p.y.float().mean() - ds.y.float().mean()) < 0.1          # stratified
        # a part's rows are the loader's rows: labels agree with final_result
        assert (p.y.numpy() == p.info["rows"].final_result.isin(["Pass", "Distinction"]).to_numpy()).all()
    again = split_by_student(ds, (0.6, 0.2, 0.2), seed=0)
    assert all(torch.equal(a.y, b.y) and torch.equal(a.x["clicks"], b.x["clicks"]) for a, b in zip(parts, again))
    with pytest.raises(ValueError, match="fractions"):
        split_by_student(ds, (0.5, 0.6))
    with pytest.raises(ValueError, match="load_oulad"):
        split_by_student(ds.subset(torch.arange(10)))


def test_standardize_and_click_profile(sample_dir):
    from nbkit.experiments.nb10_oulad import click_profile, standardize, split_by_student

    ds = load_oulad(sample_dir)
    tr, te = split_by_student(ds, (0.5, 0.5))
    str_, ste = standardize(tr, te)
    flat = str_.x["clicks"].reshape(-1, str_.x["clicks"].shape[-1])
    assert torch.allclose(flat.mean(0), torch.zeros(flat.shape[1]), atol=1e-4)
    assert torch.allclose(str_.x["assessments"].std(0)[tr.x["assessments"].std(0) > 0], torch.tensor(1.0), atol=1e-3)
    assert torch.equal(ste.y, te.y) and not torch.allclose(ste.x["clicks"], te.x["clicks"])
    prof = click_profile(ds)
    assert set(prof.label) == set(ds.class_names) and prof.week.min() == -1 and prof.week.max() == 7
    # in the sample, passing students click more (engagement drives both)
    m = prof.groupby("label")["mean clicks per student"].sum()
    assert m["Pass/Distinction"] > m["Fail/Withdrawn"]
    from nbkit import viz
    viz.curve_figure(prof, x="week", y="mean clicks per student", color="label")
    with pytest.raises(ValueError, match="clicks"):
        click_profile(ds.select(["assessments", "demographics"]))


def test_compare_methods_and_gain(sample_dir):
    from nbkit.experiments.nb10_oulad import TRAIN, compare_methods, gain_over_best_baseline, gate_summary

    ds = load_oulad(sample_dir, max_students=240)
    r = compare_methods(ds, seeds=[0], train_config=dict(TRAIN, epochs=2),
                        methods=["DSRSD-Net", "EarlyFusion", "Unimodal: clicks"], progress=False)
    m = r.metrics
    assert list(m.method) == ["DSRSD-Net", "EarlyFusion", "Unimodal: clicks"]
    assert m.auc.between(0, 1).all() and (m.data == "SAMPLE (NOT REAL DATA)").all()
    assert (m.n_train + m.n_test < len(ds)).all()
    gs = gate_summary(r.gates)
    assert set(gs.modality) == set(ds.modalities)
    assert np.allclose(r.gates.groupby(["seed", "label"]).gate.sum(), 1.0, atol=1e-4)   # gate rows sum to 1
    g = gain_over_best_baseline(m)
    assert g["best_baseline"] in ("EarlyFusion", "Unimodal: clicks")
    best = m[m.method == g["best_baseline"]].auc.iloc[0]
    assert g["gap"][0] == pytest.approx(m[m.method == "DSRSD-Net"].auc.iloc[0] - best)
    with pytest.raises(ValueError, match="unknown methods"):
        compare_methods(ds, seeds=[0], methods=["SVM"])
    with pytest.raises(ValueError, match="baseline"):
        gain_over_best_baseline(m[m.method == "DSRSD-Net"])


# ------------------------------------------------------------- hardening (bad files)
def _append_line(path, line):
    with open(path, "a") as fh:
        fh.write(line + "\n")


@pytest.mark.parametrize("name, line, expected", [
    ("studentInfo.csv", "AAA,2013J,106,M,Wales,HE Qualification,0-10%,0-35,0,60,N,Pass,EXTRA",
     r"studentInfo.csv, line 7: 13 fields where the header has 12 \(too many\)"),
    ("studentInfo.csv", "AAA,2013J,106,M,Wales", r"studentInfo.csv, line 7: 5 fields where the header has 12 \(too few\)"),
    ("studentAssessment.csv", "1,101", r"studentAssessment.csv, line 7: 2 fields"),
    ("studentVle.csv", "AAA,2013J,101,11,3,4,5", r"studentVle.csv, line 14: 7 fields where the header has 6"),
])
def test_rows_with_the_wrong_number_of_fields_name_file_and_line(tmp_path, name, line, expected):
    d = _write_tiny(tmp_path)
    _append_line(d / name, line)
    with pytest.raises(ValueError, match=expected):
        load_oulad(d)


@pytest.mark.parametrize("value, line", [("10x", 4), ("101.5", 4)])
def test_non_integer_student_ids_name_file_and_line(tmp_path, value, line):
    d = _write_tiny(tmp_path)
    t = pd.read_csv(d / "studentRegistration.csv", dtype=str)
    t.loc[2, "id_student"] = value
    t.to_csv(d / "studentRegistration.csv", index=False)
    with pytest.raises(ValueError, match=rf"studentRegistration.csv, line {line}: column 'id_student' must be an integer, "
                                         rf"got '{value}'"):
        load_oulad(d)


def test_blank_line_in_the_middle_is_an_error_but_a_trailing_one_is_not(tmp_path):
    d = _write_tiny(tmp_path)
    n0 = len(load_oulad(d, modalities=["demographics"]))
    _append_line(d / "courses.csv", "")
    assert len(load_oulad(d, modalities=["demographics"])) == n0         # trailing blank line: fine
    _append_line(d / "courses.csv", "BBB,2013J,240")
    with pytest.raises(ValueError, match="courses.csv, line 3: an empty line in the middle"):
        load_oulad(d)


def test_empty_files_are_named(tmp_path):
    d = _write_tiny(tmp_path)
    (d / "courses.csv").write_text("")
    with pytest.raises(ValueError, match="OULAD file courses.csv is empty"):
        load_oulad(d)
    (tmp_path / "b").mkdir()
    d2 = _write_tiny(tmp_path / "b")
    (d2 / "studentInfo.csv").write_text(",".join(SCHEMA["studentInfo.csv"]) + "\n")
    with pytest.raises(ValueError, match="studentInfo.csv .* has a header but no data rows"):
        load_oulad(d2)


@pytest.mark.parametrize("how", ["empty file", "header only", "no matching student"])
def test_clicks_that_match_nobody_are_absent_not_zero(tmp_path, how):
    d = _write_tiny(tmp_path)
    if how == "empty file":
        (d / "studentVle.csv").write_text("")
    elif how == "header only":
        (d / "studentVle.csv").write_text(",".join(SCHEMA["studentVle.csv"]) + "\n")
    else:
        v = pd.read_csv(d / "studentVle.csv")
        v["id_student"] = 777777
        v.to_csv(d / "studentVle.csv", index=False)
    with pytest.warns(UserWarning, match="'clicks' modality is marked ABSENT"):
        ds = load_oulad(d)
    assert "clicks" in ds.modalities and not ds.present[:, ds.modalities.index("clicks")].any()
    assert ds.present[:, [ds.modalities.index(m) for m in ("assessments", "demographics")]].all()
    assert ds.info["clicks_absent"] and "ABSENT" in ds.info["clicks_note"]
    assert "modalities assessments+demographics" in ds.describe()


def test_zipped_table_is_read_or_the_zip_is_named(tmp_path):
    import zipfile

    d = _write_tiny(tmp_path)
    plain = load_oulad(d)
    with zipfile.ZipFile(d / "studentVle.csv.zip", "w") as zf:      # as OULAD's archive nests files
        zf.write(d / "studentVle.csv", "anonymisedData/studentVle.csv")
    (d / "studentVle.csv").unlink()
    zipped = load_oulad(d)
    assert torch.equal(zipped.x["clicks"], plain.x["clicks"])
    with zipfile.ZipFile(d / "studentVle.csv.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(FileNotFoundError, match=r"found the zip .*studentVle.csv.zip.*holds \['readme.txt'\]"):
        load_oulad(d)
    (d / "studentVle.csv.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="studentVle.csv.zip' is not a readable zip archive"):
        load_oulad(d)


def test_find_data_dir_follows_nbkit_data(tmp_path, monkeypatch):
    monkeypatch.delenv("NBKIT_DATA", raising=False)
    assert oulad.find_data_dir() is None
    assert oulad.find_data_dir(tmp_path) == tmp_path                  # an explicit folder wins
    monkeypatch.setenv("NBKIT_DATA", str(tmp_path))
    assert oulad.find_data_dir() is None                               # no OULAD tables there
    (tmp_path / "oulad").mkdir()
    _write_tiny(tmp_path / "oulad")
    assert oulad.find_data_dir() == tmp_path / "oulad"
