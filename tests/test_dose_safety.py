"""Issue 28, patient safety: a dose is confirmed only on a gallery whose threshold was set on real faces (or
with --allow-uncalibrated, which the audit records), every number that gates the decision is finite and in
range, and the dose plan's times, offsets and drug spellings cannot give one dose twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.identify.gallery import Gallery
from tests.identify_helpers import PLAN, enrol, make_faces, run_cli


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def synthetic_db(faces, tmp_path_factory) -> Path:
    return enrol(faces, tmp_path_factory.mktemp("syn") / "ward.db", real=False)


@pytest.fixture(scope="module")
def real_db(faces, tmp_path_factory) -> Path:
    return enrol(faces, tmp_path_factory.mktemp("real") / "ward.db", real=True)


@pytest.fixture()
def plan(tmp_path) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    return p


def dose(db: Path, plan: Path, image: Path, *extra: object) -> tuple[int, str, str]:
    return run_cli("check-dose", "--db", db, "--plan", plan, "--image", image, "--aligned", *extra)


def audit(db: Path) -> list[dict]:
    with Gallery(db) as g:
        return [r for r in g.audit_rows() if r["command"] == "check-dose"]


# ------------------------------------------------------------------------------------------------ calibration

def test_synthetic_calibration_cannot_confirm_a_dose(synthetic_db, faces, plan):
    before = len(audit(synthetic_db))
    rc, out, err = dose(synthetic_db, plan, faces / "gallery" / "P1" / "0.png", "--at", "2026-12-01T08:10")
    assert rc == 2 and "NOT set on real faces" in err and "--allow-uncalibrated" in err and "--calibration" in err
    assert "CONFIRMED" not in out and len(audit(synthetic_db)) == before + 1  # the refusal is in the audit
    last = audit(synthetic_db)[-1]
    assert last["decision"] == "refused" and "NOT set on real faces" in last["detail"]


def test_allow_uncalibrated_confirms_and_the_audit_row_says_so(synthetic_db, faces, plan):
    rc, out, _ = dose(synthetic_db, plan, faces / "gallery" / "P1" / "0.png", "--at", "2026-12-03T08:10",
                      "--allow-uncalibrated")
    assert rc == 0 and out.startswith("CONFIRMED P1") and "WARNING" in out
    row = audit(synthetic_db)[-1]
    assert row["decision"] == "confirmed" and "allow-uncalibrated" in json.loads(row["detail"])["calibration"]


def test_real_calibration_confirms_without_the_flag(real_db, faces, plan):
    rc, out, err = dose(real_db, plan, faces / "gallery" / "P1" / "0.png", "--at", "2026-12-01T08:10")
    assert rc == 0 and out.startswith("CONFIRMED P1"), (out, err)
    assert "WARNING" not in out
    assert json.loads(audit(real_db)[-1]["detail"])["calibration"] == "real faces"


def test_identify_says_when_the_threshold_is_not_set_on_real_faces(synthetic_db, real_db, faces):
    probe = faces / "gallery" / "P0" / "0.png"
    rc, out, _ = run_cli("identify", "--db", synthetic_db, "--aligned", probe)
    assert rc == 0 and "NOT set on real faces" in out
    rc, out, _ = run_cli("identify", "--db", real_db, "--aligned", probe)
    assert rc == 0 and "NOT set on real faces" not in out


def test_enrol_warns_about_a_synthetic_threshold(faces, tmp_path):
    rc, out, _ = run_cli("enrol", "--gallery", faces / "gallery", "--db", tmp_path / "w.db", "--aligned",
                         "--calibration-images", 20, "--far", 0.1)
    assert rc == 0 and "NOT set on real faces" in out and "--allow-uncalibrated" in out
    with Gallery(tmp_path / "w.db") as g:
        assert g.meta()["calibration_kind"] == "synthetic"


@pytest.mark.parametrize("margin", ["nan", "-1", "inf", "-inf", "1.5"])
def test_margin_must_be_finite_and_in_range(real_db, faces, plan, margin):
    before = len(audit(real_db))
    rc, out, err = dose(real_db, plan, faces / "stranger.png", "--at", "2026-12-01T08:10", "--margin", margin)
    assert rc == 2 and "--margin" in err and "CONFIRMED" not in out
    assert len(audit(real_db)) == before


@pytest.mark.parametrize("margin", [float("nan"), -1.0, float("inf")])
def test_margin_is_checked_by_the_api_too(real_db, faces, plan, margin):
    from compress.errors import UserError
    from compress.identify.dose import check_dose

    with pytest.raises(UserError, match="--margin"):
        check_dose(real_db, plan, faces / "stranger.png", "2026-12-01T08:10", margin=margin, aligned=True)


# ------------------------------------------------------------------------------------------------ times and doses

@pytest.fixture()
def local_tz_plus_5_30(monkeypatch):
    """A local zone that is not UTC, so reading an offset as local time would be visible."""
    import time as _time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    _time.tzset()
    yield
    monkeypatch.undo()
    _time.tzset()


@pytest.mark.parametrize("value, local", [("2026-12-01T02:40Z", "2026-12-01T08:10"),
                                          ("2026-12-01T02:40+00:00", "2026-12-01T08:10"),
                                          ("2026-12-01T08:10+05:30", "2026-12-01T08:10"),
                                          ("2026-12-01T08:10", "2026-12-01T08:10")])
def test_at_with_an_offset_is_converted_to_local_time(local_tz_plus_5_30, value, local):
    from datetime import datetime

    from compress.identify.dose import parse_at

    assert parse_at(value) == datetime.fromisoformat(local)


@pytest.mark.parametrize("value", ["9999-12-31T23:59", "0001-01-01T00:00", "9999-12-31T23:59+14:00", "tomorrow",
                                   "", "Z", "2026-13-01T08:00", "nan"])
def test_odd_at_values_are_one_line(value):
    from compress.errors import UserError
    from compress.identify.dose import parse_at

    with pytest.raises(UserError, match="--at"):
        parse_at(value)


def test_at_out_of_range_is_exit_2_on_the_cli(real_db, faces, plan):
    rc, out, err = dose(real_db, plan, faces / "gallery" / "P1" / "0.png", "--at", "9999-12-31T23:59")
    assert rc == 2 and "out of range" in err and "CONFIRMED" not in out


@pytest.mark.parametrize("times, ok", [('["08:00+05:00"]', False), ('["08:00Z"]', False), ('["25:00"]', False),
                                       ('["8 am"]', False), ('[""]', False), ("[800]", False),
                                       ('["08:00", "08:00"]', False),
                                       ('["08:00:00.123"]', True), ('["23:59"]', True), ('["00:00", "12:00"]', True)])
def test_odd_plan_times_load_or_are_one_line(tmp_path, times, ok):
    from compress.errors import UserError
    from compress.identify.dose import load_plan

    p = tmp_path / "plan.toml"
    p.write_text(PLAN.replace('["08:00", "20:00"]', times))
    if ok:
        assert load_plan(p, ["P1"]).patients["P1"]
    else:
        with pytest.raises(UserError) as e:
            load_plan(p, ["P1"])
        assert "\n" not in str(e.value)


def test_a_plan_time_with_an_offset_is_refused_with_one_line(real_db, faces, plan):
    plan.write_text(PLAN.replace('"08:00"', '"08:00+05:00"'))
    rc, out, err = dose(real_db, plan, faces / "gallery" / "P1" / "0.png", "--at", "2026-12-01T08:10")
    assert rc == 2 and "UTC offset" in err and '"08:00"' in err


def test_a_drug_listed_twice_in_other_spelling_is_refused(tmp_path):
    from compress.errors import UserError
    from compress.identify.dose import load_plan

    p = tmp_path / "plan.toml"
    p.write_text(PLAN + '[[patient.medication]]\ndrug = "metformin  500 MG"\ntimes = ["12:00"]\n')
    with pytest.raises(UserError, match="listed twice"):
        load_plan(p, ["P1"])


@pytest.mark.parametrize("edit", ["time", "spacing", "case", "nfd"])
def test_editing_the_plan_after_a_dose_does_not_give_it_again(real_db, faces, plan, edit):
    import unicodedata

    day = {"time": "2027-01-05", "spacing": "2027-01-07", "case": "2027-01-09", "nfd": "2027-01-11"}[edit]
    p1 = faces / "gallery" / "P1" / "0.png"
    if edit == "nfd":
        plan.write_text(PLAN.replace("Metformin", unicodedata.normalize("NFC", "Métformin")))
    rc, out, err = dose(real_db, plan, p1, "--at", f"{day}T08:10")
    assert rc == 0 and out.startswith("CONFIRMED P1"), (out, err)
    edited = {"time": PLAN.replace('"08:00"', '"08:45"'),
              "spacing": PLAN.replace("Metformin 500 mg", "Metformin  500\tmg "),
              "case": PLAN.replace("Metformin 500 mg", "METFORMIN 500 MG"),
              "nfd": PLAN.replace("Metformin", unicodedata.normalize("NFD", "Métformin"))}[edit]
    plan.write_text(edited)
    rows = len(audit(real_db))
    rc, out, _ = dose(real_db, plan, p1, "--at", f"{day}T08:40" if edit == "time" else f"{day}T08:25")
    assert rc == 1 and out.startswith("REFUSED: already given"), out
    assert audit(real_db)[-1]["decision"] == "refused" and len(audit(real_db)) == rows + 1  # the refusal is audited
    rc, out, _ = dose(real_db, plan, p1, "--at", f"{day}T20:05")  # the evening dose is another dose
    assert rc == 0 and out.startswith("CONFIRMED P1"), out


# ------------------------------------------------------------------------------------------------ names

def _copy_gallery(faces: Path, dst: Path, names: dict[str, str]) -> Path:
    """faces' gallery with the person folders renamed."""
    import shutil

    for old, new in names.items():
        shutil.copytree(faces / "gallery" / old, dst / new)
    return dst


def test_enrol_refuses_a_name_with_a_control_character(faces, tmp_path):
    g = _copy_gallery(faces, tmp_path / "g", {"P0": "P0", "P1": "Bob\nCONFIRMED Bob"})
    rc, out, err = run_cli("enrol", "--gallery", g, "--db", tmp_path / "w.db", "--aligned")
    assert rc == 2 and "control character" in err and "\\n" in err and not (tmp_path / "w.db").exists()


def test_control_characters_in_stored_names_are_escaped_on_output(real_db, faces, plan, tmp_path):
    import shutil
    import sqlite3

    db = tmp_path / "w.db"
    shutil.copy(real_db, db)
    con = sqlite3.connect(db)
    con.execute("UPDATE people SET name = 'P1' || char(10) || 'CONFIRMED P1 (score 0.99)' WHERE name = 'P1'")
    con.commit()
    con.close()
    rc, out, _ = run_cli("identify", "--db", db, "--aligned", faces / "gallery" / "P1" / "0.png")
    assert rc == 0 and "P1\\x0aCONFIRMED" in out and not any(x.startswith("CONFIRMED") for x in out.splitlines())
    plan.write_text(PLAN.replace('"P1"', '"P0"'))
    rc, out, _ = dose(db, plan, faces / "gallery" / "P1" / "0.png", "--at", "2026-12-01T08:10")
    assert rc == 1 and out.startswith("REFUSED") and "no medication" in out
    assert not any(x.startswith("CONFIRMED") for x in out.splitlines())


@pytest.mark.parametrize("field", ["name", "drug"])
def test_a_plan_with_a_control_character_is_refused(tmp_path, field):
    from compress.errors import UserError
    from compress.identify.dose import load_plan

    p = tmp_path / "plan.toml"
    p.write_text(PLAN.replace('"P1"', '"P1\\u001b[2K"') if field == "name" else
                 PLAN.replace("500 mg", "500 mg\\u001b[2KCONFIRMED"))
    with pytest.raises(UserError, match="control character"):
        load_plan(p, ["P1"])


def test_nfc_and_nfd_names_are_one_person(faces, tmp_path):
    import unicodedata

    nfd, nfc = unicodedata.normalize("NFD", "José"), unicodedata.normalize("NFC", "José")
    g = _copy_gallery(faces, tmp_path / "g", {"P0": nfd, "P1": "P1", "P2": "P2"})
    db = tmp_path / "w.db"
    rc, out, err = run_cli("enrol", "--gallery", g, "--db", db, "--aligned", "--calibration", faces / "impostors",
                           "--calibration-images", 12, "--far", 0.1)
    assert rc == 0, err
    with Gallery(db) as gal:
        assert nfc in gal.people() and nfd not in gal.people()
    again = _copy_gallery(faces, tmp_path / "g2", {"P0": nfc})
    rc, _, err = run_cli("enrol", "--gallery", again, "--db", db, "--aligned")
    assert rc == 2 and "already enrolled" in err
    both = _copy_gallery(faces, tmp_path / "g3", {"P0": nfc, "P1": nfd})
    rc, _, err = run_cli("enrol", "--gallery", both, "--db", tmp_path / "n.db", "--aligned")
    assert rc == 2 and "two Unicode forms" in err
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace('"P1"', f'"{nfd}"'))
    rc, out, err = dose(db, plan, faces / "gallery" / "P0" / "0.png", "--at", "2026-12-01T08:10")
    assert rc == 0 and out.startswith(f"CONFIRMED {nfc}"), (out, err)


@pytest.mark.parametrize("far", ["nan", "inf", "0", "1", "-0.1"])
def test_enrol_far_must_be_finite_and_in_range(faces, tmp_path, far):
    rc, _, err = run_cli("enrol", "--gallery", faces / "gallery", "--db", tmp_path / "w.db", "--aligned", "--far", far)
    assert rc == 2 and "--far" in err and not (tmp_path / "w.db").exists()
