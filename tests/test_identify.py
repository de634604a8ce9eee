"""Enrolment, 1:N identification with open-set rejection, the dose check, and the gallery database.

Faces are the built-in synthetic generator's, so nothing here needs ../shared. Most tests enrol aligned crops
(--aligned: no detector); the ones that detect faces in whole frames need MTCNN's weights and skip without them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from compress.data.mtcnn_weights import weights_present
from compress.data.synthetic import generate
from compress.errors import UserError
from compress.identify.dose import check_dose, due, load_plan, parse_at
from compress.identify.enrol import threshold_at_far
from compress.identify.gallery import SCHEMA_VERSION, Gallery
from compress.identify.pipeline import AlignedFinder
from compress.zoo import WARD_MODEL, load_entry
from tests.identify_helpers import run_cli, save

needs_weights = pytest.mark.skipif(not weights_present(), reason="MTCNN weights absent (compress data fetch-mtcnn)")
PEOPLE = 4
CAL = ["--calibration", "synthetic", "--calibration-images", "100", "--far", "0.01"]




@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """gallery/P<i>/<j>.png: two aligned synthetic crops per person; probes/: a third one, and strangers."""
    root = tmp_path_factory.mktemp("crops")
    images, labels = generate(PEOPLE, 3, first_identity=700)
    for k, (img, y) in enumerate(zip(images, labels)):
        j = k % 3
        save(root / ("gallery" if j < 2 else "probes") / (f"P{y}/{j}.png" if j < 2 else f"P{y}.png"), img)
    strangers, _ = generate(2, 1, first_identity=900)
    for k, img in enumerate(strangers):
        save(root / "probes" / f"stranger{k}.png", img)
    return root


@pytest.fixture(scope="module")
def ward(crops, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("ward") / "ward.db"
    rc, out, err = run_cli("enrol", "--gallery", crops / "gallery", "--db", db, "--aligned", *CAL)
    assert rc == 0, (out, err)
    return db


# ------------------------------------------------------------------------------------------------ database

def test_gallery_schema_is_versioned_and_audit_is_append_only(tmp_path):
    with Gallery(tmp_path / "g.db", create=True) as g:
        assert g.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert g.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert g.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with g.transaction() as c:
            g.audit(c, command="test", decision="x", scores=[0.5], model_sha256="abc")
        for sql in ("UPDATE audit SET decision = 'y'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                g.conn.execute(sql)
        assert [r["decision"] for r in g.audit_rows()] == ["x"]


def test_gallery_refuses_files_it_did_not_write(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just some text that is long enough " * 20)
    with pytest.raises(UserError, match="not a readable gallery"):
        Gallery(text)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.execute("PRAGMA user_version = 7")
    con.commit()
    con.close()
    with pytest.raises(UserError, match="schema version 7"):
        Gallery(other, create=True)
    with pytest.raises(UserError, match="not found"):
        Gallery(tmp_path / "missing.db")


def test_threshold_at_far_lets_through_at_most_far_n_impostors():
    scores = np.linspace(0.0, 0.99, 1000)
    t = threshold_at_far(scores, 0.01)
    assert t["false_accepts_allowed"] == 10 and t["false_accepts"] == 10 and t["resolved"]
    assert (scores > t["threshold"]).sum() == 10
    small = threshold_at_far(scores[:50], 0.001)  # 50 impostors cannot resolve 1e-3: nobody gets through
    assert not small["resolved"] and (scores[:50] > small["threshold"]).sum() == 0 and small["note"]


# ------------------------------------------------------------------------------------------------ enrol + identify

def test_enrol_stores_model_hash_runtime_precision_and_threshold(ward):
    sha = load_entry(WARD_MODEL.split(":", 1)[1]).sha256
    with Gallery(ward) as g:
        m = g.meta()
        assert m["model_sha256"] == sha and m["runtime"] == "pytorch" and m["precision"] == "fp32"
        rows = g.conn.execute("SELECT DISTINCT model_sha256, runtime, precision FROM embeddings").fetchall()
        assert rows == [(sha, "pytorch", "fp32")]
        assert g.people() == [f"P{i}" for i in range(PEOPLE)]
        assert g.counts()["embeddings"] == 2 * PEOPLE and g.counts()["calibration"] == 100
        info = json.loads(m["threshold_info"])
        assert info["far"] == 0.01 and info["impostors"] == 100 and "SYNTHETIC" in info["calibration"]
        assert float(m["threshold"]) == info["threshold"]


def test_identify_names_enrolled_faces_and_rejects_strangers(ward, crops, tmp_path):
    enrolled_photo = crops / "gallery" / "P2" / "0.png"
    strangers = sorted((crops / "probes").glob("stranger*.png"))
    out_json = tmp_path / "answers.json"
    rc, out, err = run_cli("identify", "--db", ward, "--aligned", "--json", out_json, enrolled_photo, *strangers)
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    first = res["results"][0]["faces"][0]
    assert first["decision"] == "P2" and first["top"][0][0] == "P2" and first["top"][0][1] > res["threshold"]
    assert len(first["top"]) == 3
    for r in res["results"][1:]:
        assert r["faces"][0]["decision"] == "unknown"
        assert r["faces"][0]["top"][0][1] <= res["threshold"]
    assert f"threshold {res['threshold']:.4f}" in out and "FAR 0.01" in out and "sha256" in out
    with Gallery(ward) as g:
        assert [r["decision"] for r in g.audit_rows() if r["command"] == "identify"][-3:] == ["P2", "unknown",
                                                                                             "unknown"]


def test_identify_with_another_model_is_refused(ward, crops):
    rc, _, err = run_cli("identify", "--db", ward, "--aligned", "--model", "zoo:table2", crops / "probes" / "P0.png")
    assert rc == 2 and "re-enrol" in err and WARD_MODEL in err


def test_enrol_without_model_uses_the_ward_model_then_the_gallerys_own(crops, tmp_path, monkeypatch):
    import compress.zoo as zoo

    parts = {}
    for person in ("P0", "P1"):
        parts[person] = tmp_path / person
        (parts[person] / person).mkdir(parents=True)
        for p in (crops / "gallery" / person).iterdir():
            (parts[person] / person / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(zoo, "WARD_MODEL", "zoo:table3-faces")
    db = tmp_path / "w.db"
    rc, out, err = run_cli("enrol", "--gallery", parts["P0"], "--db", db, "--aligned", *CAL)
    assert rc == 0, err
    monkeypatch.setattr(zoo, "WARD_MODEL", "zoo:table2")  # a new default does not change an existing gallery
    rc, out, err = run_cli("enrol", "--gallery", parts["P1"], "--db", db, "--aligned", *CAL)
    assert rc == 0, err
    with Gallery(db) as g:
        assert g.meta()["model_spec"] == "zoo:table3-faces" and g.people() == ["P0", "P1"]


def test_a_changed_model_file_is_refused(crops, tmp_path):
    from compress.model import build_model
    from compress.model.io import save_model

    run = tmp_path / "run"
    save_model(build_model("table3"), run / "model.pt")
    db = tmp_path / "w.db"
    rc, out, err = run_cli("enrol", "--model", run, "--gallery", crops / "gallery", "--db", db, "--aligned", *CAL)
    assert rc == 0, err
    save_model(build_model("table3"), run / "model.pt")  # fresh random weights: a different model
    rc, _, err = run_cli("identify", "--db", db, "--aligned", crops / "probes" / "P0.png")
    assert rc == 2 and "changed" in err and "re-enrol" in err


def test_enrol_lists_people_without_a_usable_face_and_enrols_the_rest(crops, tmp_path):
    gallery = tmp_path / "gallery"
    for p in (crops / "gallery" / "P0").iterdir():
        (gallery / "P0").mkdir(parents=True, exist_ok=True)
        (gallery / "P0" / p.name).write_bytes(p.read_bytes())
    save(gallery / "Blurry" / "small.png", np.zeros((50, 50, 3), np.uint8))  # not an aligned crop
    (gallery / "Blurry" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (gallery / "Nobody").mkdir()
    db = tmp_path / "w.db"
    rc, out, err = run_cli("enrol", "--gallery", gallery, "--db", db, "--aligned", *CAL)
    assert rc == 1, (out, err)
    assert "NOT ENROLLED Blurry" in err and "broken.jpg" in err and "small.png" in err
    assert "NOT ENROLLED Nobody: no image files" in err
    with Gallery(db) as g:
        assert g.people() == ["P0"]
    rc, _, err = run_cli("enrol", "--gallery", gallery, "--db", db, "--aligned", *CAL)
    assert rc == 2 and "already enrolled" in err and "--overwrite" in err
    only_bad = tmp_path / "bad"
    (only_bad / "Nobody").mkdir(parents=True)
    rc, _, err = run_cli("enrol", "--gallery", only_bad, "--db", tmp_path / "new.db", "--aligned", *CAL)
    assert rc == 2 and "no usable face" in err and not (tmp_path / "new.db").exists()


@pytest.mark.parametrize("case", ["unreadable", "empty_gallery", "no_db", "no_person_folders"])
def test_bad_input_is_one_line(case, ward, crops, tmp_path):
    if case == "unreadable":
        bad = tmp_path / "x.jpg"
        bad.write_bytes(b"garbage")
        args, want = ("identify", "--db", ward, bad), "not a readable image"
    elif case == "empty_gallery":
        Gallery(tmp_path / "e.db", create=True).close()
        args, want = ("identify", "--db", tmp_path / "e.db", crops / "probes" / "P0.png"), "nobody enrolled"
    elif case == "no_db":
        args, want = ("identify", "--db", tmp_path / "none.db", crops / "probes" / "P0.png"), "not found"
    else:
        (tmp_path / "g").mkdir()
        args, want = ("enrol", "--gallery", tmp_path / "g", "--db", tmp_path / "n.db", "--aligned"), "no person folders"
    rc, _, err = run_cli(*args)
    assert rc == 2 and want in err


# ------------------------------------------------------------------------------------------------ dose check

PLAN = """
[[patient]]
name = "P1"
[[patient.medication]]
drug = "Metformin 500 mg"
times = ["08:00", "20:00"]
window_minutes = 30
[[patient]]
name = "P3"
"""


def test_plan_is_checked_against_the_gallery(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    plan = load_plan(p, ["P1", "P3"])
    assert [d.drug for d, _ in due(plan, "P1", parse_at("2026-12-01T07:45"))] == ["Metformin 500 mg"]
    assert due(plan, "P1", parse_at("2026-12-01T08:31")) == []
    assert [s.hour for _, s in due(plan, "P1", parse_at("2026-12-01T19:50"))] == [20]
    with pytest.raises(UserError, match="'P3' is not enrolled"):
        load_plan(p, ["P1"])
    for bad, want in [(PLAN.replace('"08:00"', '"8 o\'clock"'), "not HH:MM"),
                      (PLAN.replace("window_minutes = 30", "window_minutes = 0"), "window_minutes"),
                      (PLAN.replace("drug =", "dose ="), "unknown key"),
                      ("[[patient]]\nname = 'P1'\nname2 = 1\n", "name"),
                      ("not toml [", "not valid TOML")]:
        p.write_text(bad)
        with pytest.raises(UserError, match=want):
            load_plan(p, ["P1", "P3"])
    with pytest.raises(UserError, match="--at"):
        parse_at("tomorrow")


def test_check_dose_confirms_once_and_refuses_otherwise(ward, crops, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    p1 = crops / "gallery" / "P1" / "0.png"  # an enrolled photo: a sure match
    aligned = AlignedFinder()

    def check(image, at, **kw):
        return check_dose(ward, plan, image, at, finder=aligned, allow_uncalibrated=True, **kw)  # synthetic ward

    ok = check(p1, "2026-12-01T08:10")
    assert ok["decision"] == "confirmed" and ok["person"] == "P1"
    assert ok["doses"] == [{"drug": "Metformin 500 mg", "slot": "2026-12-01T08:00"}]
    again = check(p1, "2026-12-01T08:20")
    assert again["decision"] == "refused" and again["reason"].startswith("already given")
    assert check(p1, "2026-12-01T20:05")["decision"] == "confirmed"  # the evening dose is another slot
    assert "nothing due" in check(p1, "2026-12-01T12:00")["reason"]
    assert "unknown face" in check(crops / "probes" / "stranger0.png", "2026-12-02T08:00")["reason"]
    assert "low confidence" in check(p1, "2026-12-02T08:00", margin=0.99)["reason"]
    assert "no medication" in check(crops / "gallery" / "P3" / "0.png", "2026-12-02T08:00")["reason"]
    assert "no medication" in check(crops / "gallery" / "P0" / "0.png", "2026-12-02T08:00")["reason"]
    with Gallery(ward) as g:
        rows = [r for r in g.audit_rows() if r["command"] == "check-dose"]
        assert [r["decision"] for r in rows] == ["confirmed", "refused", "confirmed", "refused", "refused",
                                                 "refused", "refused", "refused"]
        assert all(r["model_sha256"] == load_entry(WARD_MODEL.split(":", 1)[1]).sha256 and json.loads(r["scores"]) for r in rows)


def test_check_dose_cli_exit_codes(ward, crops, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace('"P3"', '"Zed"'))
    rc, _, err = run_cli("check-dose", "--db", ward, "--plan", plan, "--image", crops / "probes" / "P1.png",
                         "--allow-uncalibrated")
    assert rc == 2 and "'Zed' is not enrolled" in err
    plan.write_text(PLAN)
    blank = save(tmp_path / "blank.png", np.full((112, 112, 3), 128, np.uint8))
    if weights_present():  # a detector run on a face-free image: refused, exit 1
        rc, out, _ = run_cli("check-dose", "--db", ward, "--plan", plan, "--image", blank, "--at", "08:00",
                             "--allow-uncalibrated")
        assert rc == 1 and "REFUSED: no face found" in out


# ------------------------------------------------------------------------------------------------ whole frames

def _frame(faces: list[np.ndarray], size: int = 110) -> np.ndarray:
    """A 320x240 camera frame (a quarter of VGA: the detector's cost in tests) with the given synthetic faces."""
    frame = np.full((240, 320, 3), 110, np.uint8)
    for k, f in enumerate(faces):
        x = 10 + 160 * k
        frame[60:60 + size, x:x + size] = cv2.resize(f, (size, size))
    return frame


@needs_weights
def test_frames_detect_align_identify_and_refuse_several_faces(crops, tmp_path):
    from compress.identify.pipeline import FaceFinder

    finder = FaceFinder()
    images, labels = generate(3, 3, first_identity=700)  # the first three enrolled people
    # The detector misses the odd cartoon face: use the frames it finds exactly one face in (deterministic).
    found = [k for k, img in enumerate(images) if len(finder.faces(_frame([img]))) == 1]
    gallery = tmp_path / "gallery"
    for k in found:
        save(gallery / f"P{labels[k]}" / f"{k}.jpg", _frame([images[k]]))
    assert {int(labels[k]) for k in found} == {0, 1, 2}
    db = tmp_path / "w.db"
    rc, out, err = run_cli("enrol", "--gallery", gallery, "--db", db, *CAL)
    assert rc == 0, (out, err)
    p1 = next(k for k in found if labels[k] == 1)
    one = save(tmp_path / "one.jpg", _frame([images[p1]]))  # an enrolled photo of P1
    pair = next((a, b) for a in found for b in found if labels[a] == 0 and labels[b] == 2
                and len(finder.faces(_frame([images[a], images[b]]))) == 2)
    two = save(tmp_path / "two.jpg", _frame([images[pair[0]], images[pair[1]]]))  # P0 and P2 together
    blank = save(tmp_path / "blank.jpg", np.full((240, 320, 3), 90, np.uint8))
    answers = tmp_path / "a.json"
    rc, out, err = run_cli("identify", "--db", db, "--json", answers, one, two, blank)
    assert rc == 0, err
    res = json.loads(answers.read_text())["results"]
    assert [f["decision"] for f in res[0]["faces"]] == ["P1"]
    assert sorted(f["top"][0][0] for f in res[1]["faces"]) == ["P0", "P2"] and "face 1/2" in out
    assert res[2]["faces"] == [] and "blank.jpg: no face found" in out
    plan = tmp_path / "plan.toml"
    plan.write_text('[[patient]]\nname = "P0"\n[[patient.medication]]\ndrug = "A"\ntimes = ["08:00"]\n')
    rc, out, _ = run_cli("check-dose", "--db", db, "--plan", plan, "--image", two, "--at", "08:00",
                         "--allow-uncalibrated")
    assert rc == 1 and "REFUSED: 2 faces" in out


@pytest.mark.slow
@needs_weights
def test_exported_detector_finds_the_same_faces_in_onnxruntime_and_openvino(tmp_path):
    import os
    import subprocess
    import sys

    # In a fresh interpreter: OpenVINO's compiled MTCNN nets left the pytest process to crash (SIGSEGV) some
    # tests later, in unrelated code; isolated, the test and the product are unaffected.
    if os.environ.get("COMPRESS_TEST_ISOLATED") != "1":
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::test_exported_detector_finds_the_same_faces_in_onnxruntime_and_openvino"],
                           env={**os.environ, "COMPRESS_TEST_ISOLATED": "1"}, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
        return
    from compress.identify.detector import export_detector, load_detector
    from compress.identify.pipeline import FaceFinder

    m = export_detector(tmp_path / "mtcnn")
    assert set(m["files"]) == {"pnet.onnx", "rnet.onnx", "onet.onnx", "openvino/pnet.xml", "openvino/rnet.xml",
                               "openvino/onet.xml"}
    images, _ = generate(2, 1, first_identity=700)
    img = _frame(list(images))
    boxes, landmarks, scores = FaceFinder().detect(img)
    assert len(boxes) >= 1
    for runtime in ("onnxruntime", "openvino"):
        b, lm, s = FaceFinder(detector=load_detector(tmp_path / "mtcnn", runtime, threads=1)).detect(img)
        np.testing.assert_allclose(b, boxes, atol=0.5)
        np.testing.assert_allclose(np.array(lm), np.array(landmarks), atol=0.5)
        np.testing.assert_allclose(s, scores, atol=1e-3)
    with pytest.raises(UserError, match="not found"):
        load_detector(tmp_path / "nowhere", "onnxruntime")


def test_open_set_metrics_count_rank1_and_dir_at_far():
    from compress.identify.openset import open_set_metrics

    gallery = np.eye(4, dtype=np.float32)  # four people, orthogonal templates
    probes = np.array([[1, 0, 0, 0], [0, 0.9, 0.1, 0], [0, 0, 0.6, 0.8], [0.8, 0.6, 0, 0]], np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    truth = np.array([0, 1, 2, 1])  # probe 2 is closer to person 3, probe 3 closer to person 0: rank-1 misses
    impostors = np.tile(np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), (100, 1))  # best score 0.5 each
    impostors[:1] = [0.9, 0.1, 0.1, 0.1]
    impostors /= np.linalg.norm(impostors, axis=1, keepdims=True)
    r = open_set_metrics(gallery, probes, truth, impostors, fars=(0.01, 0.001))
    assert r["rank1"] == 0.5
    # FAR 1%: one impostor may pass, so the threshold is the second-highest impostor score (0.5): both rank-1
    # hits (scores 1.0 and 0.994) are above it. FAR 0.1% on 100 impostors: nobody passes (threshold = 0.98...).
    assert r["threshold@far=0.01"] == pytest.approx(0.5) and r["dir@far=0.01"] == 0.5
    assert r["false_accepts_allowed@far=0.001"] == 0
    assert r["threshold@far=0.001"] == pytest.approx(0.9 / np.linalg.norm([0.9, 0.1, 0.1, 0.1]))
    assert r["dir@far=0.001"] == 0.5  # 1.0 and 0.9939 both exceed 0.9847
