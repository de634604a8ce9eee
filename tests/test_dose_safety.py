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
    assert "CONFIRMED" not in out and len(audit(synthetic_db)) == before


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
