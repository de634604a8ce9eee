"""BlazeFace short range (issue 27): the packaged model, its decoding on real and face-free images, four-point
alignment onto its template, and its cache key."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from compress.data.align import AlignConfig, align_image, frame_config
from compress.data.blazeface import BLAZEFACE_FILE, BLAZEFACE_SHA256, BlazeFaceDetector, anchors, weighted_nms
from compress.data.detectors import DETECTORS, TEMPLATE_112, template_for

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "lfw-deepfunneled"
needs_lfw = pytest.mark.skipif(not LFW.is_dir(), reason="../shared/data/lfw absent")
BLAZE = AlignConfig(detector="blazeface")


def test_the_packaged_blazeface_is_the_documented_file():
    from compress.artifacts import file_sha256

    assert "blazeface" in DETECTORS
    assert BLAZEFACE_FILE.is_file() and file_sha256(BLAZEFACE_FILE) == BLAZEFACE_SHA256
    assert "Apache" in (BLAZEFACE_FILE.parent / "README.md").read_text()


def test_anchors_match_the_models_outputs():
    a = anchors()
    assert a.shape == (896, 2)  # 16x16 cells x 2 + 8x8 cells x 6
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    rows = np.zeros((3, 16), np.float32)
    rows[0, :4] = [0, 0, 10, 10]
    rows[1, :4] = [1, 1, 11, 11]
    rows[2, :4] = [50, 50, 60, 60]
    kept, s = weighted_nms(rows, np.array([0.9, 0.6, 0.8], np.float32), 0.3)
    assert len(kept) == 2 and s.tolist() == pytest.approx([0.9, 0.8])
    assert kept[0, 0] == pytest.approx(0.6 / 1.5)  # score-weighted mean of the two overlapping boxes


@needs_lfw
@pytest.mark.parametrize("name", ["Colin_Powell/Colin_Powell_0001.jpg", "Serena_Williams/Serena_Williams_0001.jpg"])
def test_blazeface_finds_and_aligns_real_faces(name):
    img = cv2.cvtColor(cv2.imread(str(LFW / name)), cv2.COLOR_BGR2RGB)
    det = BlazeFaceDetector().detect([img])[0]
    assert len(det) >= 1 and det.scores[0] > 0.5 and det.landmarks.shape[1:] == (4, 2)
    lm = det.landmarks[0]
    assert lm[0, 0] < lm[2, 0] < lm[1, 0] and lm[:2, 1].max() < lm[2, 1] < lm[3, 1]  # eyes, nose, mouth centre
    res = align_image(img, config=BLAZE)
    assert res is not None and res.crop.shape == (112, 112, 3)
    assert np.abs(res.landmarks_crop - template_for("blazeface")).max() < 8
    assert np.abs(template_for("blazeface")[:3] - TEMPLATE_112[:3]).max() < 3  # MTCNN-matched, near ArcFace's
    # in the robot's 640x480 frame too (the photo centred on grey)
    from compress.bench.frame import place_in_frame
    from compress.identify.pipeline import FaceFinder

    assert len(FaceFinder(config=frame_config("blazeface")).faces(place_in_frame(img))) == 1


def test_blazeface_finds_no_face_in_a_face_free_image():
    y, x = np.mgrid[0:240, 0:240].astype(np.float32)
    img = np.clip(np.stack([x, y, (x + y) / 2], 2) + np.random.default_rng(0).normal(0, 4, (240, 240, 3)), 0, 255)
    assert align_image(img.astype(np.uint8), config=BLAZE) is None


def test_cache_key_names_blazeface():
    assert BLAZE.tag().startswith("blazeface") and BLAZE.tag() != AlignConfig(detector="yunet").tag()
