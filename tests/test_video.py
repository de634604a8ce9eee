"""Video input (issue 27): identify and check-dose on a clip written from LFW photos, the k-of-n vote, and bad
input (unreadable or empty video, a camera that does not open, no face, bad --vote): one line, exit code,
nothing written to the gallery."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from compress.bench.frame import place_in_frame
from compress.errors import UserError
from compress.identify.gallery import Gallery
from compress.identify.video import Vote, parse_vote
from tests.identify_helpers import run_cli

SHARED = Path(__file__).resolve().parents[2] / "shared"
LFW = SHARED / "data" / "lfw" / "lfw-deepfunneled"
needs_lfw = pytest.mark.skipif(not LFW.is_dir(), reason="../shared/data/lfw absent")
PEOPLE = ("Colin_Powell", "Tony_Blair")
CAL = ["--calibration", "synthetic", "--calibration-images", "20", "--far", "0.05"]
PLAN = '[[patient]]\nname = "Colin_Powell"\n[[patient.medication]]\ndrug = "Aspirin 100 mg"\ntimes = ["08:00"]\n'



def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MJPG .avi (OpenCV writes it on every build, unlike mp4)."""
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def _photo(person: str, i: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(LFW / person / f"{person}_{i:04d}.jpg")), cv2.COLOR_BGR2RGB)


def _audit(db: Path) -> list[dict]:
    with Gallery(db) as g:
        return g.audit_rows()


@pytest.fixture(scope="module")
def ward(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ward")
    for person in PEOPLE:
        (root / "gallery" / person).mkdir(parents=True)
        for i in (1, 2):
            shutil.copy(LFW / person / f"{person}_{i:04d}.jpg", root / "gallery" / person)
    db = root / "ward.db"
    rc, out, err = run_cli("enrol", "--gallery", root / "gallery", "--db", db, "--detector", "yunet", *CAL)
    assert rc == 0, (out, err)
    return db


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Four frames of Colin Powell (a photo not enrolled), then three without a face."""
    face = place_in_frame(_photo("Colin_Powell", 3))
    blank = np.full_like(face, 114)
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", [face] * 4 + [blank] * 3)


def test_vote_confirms_after_k_of_the_last_n_frames():
    v = Vote(*parse_vote("3/5"))
    seen = [{"A"}, set(), {"A"}, {"B"}, {"A"}, {"B"}, set(), {"B"}, {"C"}, {"C"}, set(), set(), set(), {"C"}]
    # A: frames 0, 2, 4; B: 3, 5, 7; C: 8, 9, 13 (the third C falls outside the window of the first two)
    assert [v.add(i, s) for i, s in enumerate(seen)] == [[], [], [], [], ["A"], [], [], ["B"]] + [[]] * 6
    for bad in ("0/5", "6/5", "3", "a/b", "3/101"):
        with pytest.raises(UserError, match="--vote"):
            parse_vote(bad)


@pytest.mark.slow  # enrols real photos (~20-35 s on a loaded 2-core host)
@needs_lfw
def test_identify_a_clip_confirms_on_the_vote_and_reports_frames_per_second(ward, clip):
    before = len(_audit(ward))
    rc, out, err = run_cli("identify", "--db", ward, clip, "--vote", "3/5")
    assert rc == 0, (out, err)
    assert "frame 0: Colin_Powell" in out and "CONFIRMED Colin_Powell (3 of 5 frames)" in out
    assert "frame 6: no face" in out and "7 frames in" in out and "frames/s" in out
    rows = _audit(ward)[before:]
    assert [(r["command"], r["person"]) for r in rows] == [("identify", "Colin_Powell")]  # once, not per frame


@pytest.mark.slow  # enrols real photos (~20-35 s on a loaded 2-core host)
@needs_lfw
def test_check_dose_on_a_clip_confirms_on_the_vote(ward, clip, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    rc, out, err = run_cli("check-dose", "--db", ward, "--plan", plan, "--video", clip, "--at", "2026-12-01T08:05")
    assert rc == 2 and "NOT set on real faces" in err and "CONFIRMED" not in out  # synthetic threshold: refused
    assert _audit(ward)[-1]["decision"] == "refused" and _audit(ward)[-1]["image"].endswith("clip.avi")
    rc, out, _ = run_cli("check-dose", "--db", ward, "--plan", plan, "--video", clip, "--at", "2026-12-01T08:05",
                         "--allow-uncalibrated")
    assert rc == 0 and "CONFIRMED Colin_Powell" in out and "Aspirin" in out
    assert _audit(ward)[-1]["image"].endswith("clip.avi#frame2")
    rc, out, _ = run_cli("check-dose", "--db", ward, "--plan", plan, "--video", clip, "--vote", "5/5",
                         "--at", "2026-12-02T08:05", "--allow-uncalibrated")
    assert rc == 1 and "REFUSED: nobody confirmed" in out


@pytest.mark.parametrize("case", ["empty", "garbage", "missing", "camera", "vote", "detector", "max_frames"])
def test_bad_video_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    db = tmp_path / "ward.db"  # checked before the gallery is opened: it is never created
    src: object = tmp_path / "clip.mp4"
    extra: list[str] = []
    if case == "empty":
        src.write_bytes(b"")
    elif case == "garbage":
        src.write_bytes(b"not a video at all" * 100)
    elif case == "camera":
        src, extra = None, ["--camera", "97"]
    elif case in ("vote", "detector", "max_frames"):
        src = write_clip(tmp_path / "blank.avi", [np.full((480, 640, 3), 114, np.uint8)] * 3)
        extra = {"vote": ["--vote", "6/5"], "detector": ["--detector", "nope"], "max_frames": ["--max-frames", "0"]}[case]
    for cmd in (["identify", "--db", db, *([src] if src else []), *extra],
                ["check-dose", "--db", db, "--plan", tmp_path / "p.toml", *(["--video", src] if src else []), *extra]):
        rc, out, err = run_cli(*cmd)
        assert rc == 2 and err and "\n" not in err, (cmd, rc, out, err)
        want = {"empty": "gave no frames|not a readable video", "garbage": "gave no frames|not a readable video",
                "missing": "not found", "camera": "camera 97 did not open", "vote": "--vote",
                "detector": "unknown detector", "max_frames": "--max-frames"}[case]
        assert re.search(want, err), err
        assert not db.exists()


@pytest.mark.slow  # enrols real photos (~20-35 s on a loaded 2-core host)
@needs_lfw
def test_a_clip_without_faces_exits_1_and_writes_nothing(ward, tmp_path):
    before = _audit(ward)
    src = write_clip(tmp_path / "blank.avi", [np.full((480, 640, 3), 114, np.uint8)] * 3)
    rc, out, _ = run_cli("identify", "--db", ward, src)
    assert rc == 1 and "frame 0: no face" in out and "no face in any of 3 frames" in out
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    rc, out, _ = run_cli("check-dose", "--db", ward, "--plan", plan, "--video", src, "--allow-uncalibrated")
    assert rc == 1 and "REFUSED: no face in any of 3 frames" in out
    assert _audit(ward) == before
