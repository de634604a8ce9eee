"""Selectable face detectors (issue 27): YuNet on real and face-free images, the cache key per detector, the
--detector option everywhere photos are detected, and the frame benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from compress.cli import main
from compress.data.align import ALIGN_VERSION, TEMPLATE_112, AlignConfig, align_files, align_image
from compress.data.align import frame_config
from compress.data.detectors import DETECTORS, YUNET_FILE, YUNET_SHA256, YunetDetector, template_for
from compress.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared"
LFW = SHARED / "data" / "lfw" / "lfw-deepfunneled"
SAMPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
          "Serena_Williams/Serena_Williams_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"]
needs_lfw = pytest.mark.skipif(not LFW.is_dir(), reason="../shared/data/lfw absent")
YUNET = AlignConfig(detector="yunet")


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _face_free(size: int = 240) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([x / size * 255, y / size * 255, (x + y) / (2 * size) * 255], axis=2)
    return np.clip(base + np.random.default_rng(0).normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def test_the_packaged_yunet_is_the_documented_file():
    from compress.artifacts import file_sha256

    assert YUNET_FILE.is_file() and file_sha256(YUNET_FILE) == YUNET_SHA256
    assert (YUNET_FILE.parent / "README.md").is_file()


@needs_lfw
@pytest.mark.parametrize("name", SAMPLE)
def test_yunet_finds_and_aligns_real_faces(name):
    img = _rgb(LFW / name)
    det = YunetDetector().detect([img])[0]
    assert len(det) >= 1 and det.scores[0] > 0.6
    lm = det.landmarks[0]
    assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # image-left eye, nose, image-right eye: MTCNN's order
    assert lm[3, 0] < lm[4, 0] and lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()
    res = align_image(img, config=YUNET)
    assert res is not None and res.crop.shape == (112, 112, 3)
    # the five points land on YuNet's template (a similarity fit of five points: a turned head moves the nose)
    assert np.abs(res.landmarks_crop - template_for("yunet")).max() < 8
    assert np.abs(template_for("yunet") - TEMPLATE_112).max() < 3  # near ArcFace's: MTCNN-matched, not another crop


@needs_lfw
def test_yunet_onnxruntime_gives_opencvs_faces():
    """The numpy decoding of the onnxruntime path is FaceDetectorYN's: same faces, same points, on real photos at
    sizes that need padding to 32 and at the robot's downscaled frame."""
    ort_det, cv_det = YunetDetector(), YunetDetector(runtime="opencv")
    for name in SAMPLE:
        for size in (None, (250, 190), (320, 240)):
            img = _rgb(LFW / name)
            img = img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            a, b = ort_det.detect([img])[0], cv_det.detect([img])[0]
            assert len(a) == len(b) >= 1
            assert np.abs(a.boxes - b.boxes).max() < 1e-2 and np.abs(a.landmarks - b.landmarks).max() < 1e-2
            assert np.abs(a.scores - b.scores).max() < 1e-4


def test_yunet_decode_places_a_cell_and_suppresses_its_overlap():
    from compress.data.yunet_onnx import STRIDES, decode, nms, pad_hw

    assert pad_hw(240, 320) == (256, 320) and pad_hw(480, 640) == (480, 640)
    ph, pw = 64, 64
    out = {}
    for s in STRIDES:
        n = (ph // s) * (pw // s)
        out[f"cls_{s}"], out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32), np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"], out[f"kps_{s}"] = np.zeros((1, n, 4), np.float32), np.zeros((1, n, 10), np.float32)
    cols = pw // 8
    # a face at stride 8, row 2, column 3: centre (3.5, 2.5) cells, size e^1 cells, score sqrt(0.81 * 1) = 0.9
    out["cls_8"][0, 2 * cols + 3], out["obj_8"][0, 2 * cols + 3] = 0.81, 1.5  # obj clipped to 1
    out["bbox_8"][0, 2 * cols + 3] = [0.5, 0.5, 1.0, 1.0]
    out["kps_8"][0, 2 * cols + 3] = np.arange(10) / 10
    # its neighbour overlaps it almost entirely, scoring lower: suppressed
    out["cls_8"][0, 2 * cols + 4], out["obj_8"][0, 2 * cols + 4] = 0.64, 1.0
    out["bbox_8"][0, 2 * cols + 4] = [-0.3, 0.5, 1.0, 1.0]
    faces = decode(out, ph, pw, score=0.6, iou=0.3, top_k=50)
    w = np.exp(1.0) * 8
    assert faces.shape == (1, 15)
    np.testing.assert_allclose(faces[0, :4], [3.5 * 8 - w / 2, 2.5 * 8 - w / 2, w, w], rtol=1e-5)
    np.testing.assert_allclose(faces[0, 4:14].reshape(5, 2), (np.arange(10).reshape(5, 2) / 10 + [3, 2]) * 8,
                               rtol=1e-5)
    assert faces[0, 14] == pytest.approx(0.9)
    assert len(decode(out, ph, pw, score=0.95, iou=0.3, top_k=50)) == 0  # under the score threshold
    assert len(decode(out, ph, pw, score=0.6, iou=0.99, top_k=50)) == 2  # a looser NMS keeps both
    boxes = np.array([[0, 0, 10, 10], [20, 20, 10, 10], [1, 1, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.8]), 0.3, 50).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.8]), 0.3, 1).tolist() == [1]


def test_yunet_runtime_is_checked():
    with pytest.raises(UserError, match="unknown YuNet runtime 'tvm'"):
        YunetDetector(runtime="tvm")


@needs_lfw
def test_yunet_onet_puts_mtcnns_points_on_yunets_faces():
    """ONet on YuNet's box: the faces (boxes, scores) are YuNet's, the points land where MTCNN's do (its crops
    were what the models learnt), much nearer than YuNet's own, and on MTCNN's template."""
    from compress.data.detectors import make_detector

    hybrid, yunet, mtcnn = make_detector("yunet-onet"), YunetDetector(), make_detector("mtcnn")
    assert template_for("yunet-onet") is TEMPLATE_112
    own, onet = [], []
    for name in SAMPLE:
        img = _rgb(LFW / name)
        h, y, m = hybrid.detect([img])[0], yunet.detect([img])[0], mtcnn.detect([img])[0]
        assert len(h) == len(y) >= 1 and np.array_equal(h.boxes, y.boxes) and np.array_equal(h.scores, y.scores)
        eye = np.linalg.norm(m.landmarks[0, 0] - m.landmarks[0, 1])
        own.append(np.linalg.norm(y.landmarks[0] - m.landmarks[0], axis=1).mean() / eye)
        onet.append(np.linalg.norm(h.landmarks[0] - m.landmarks[0], axis=1).mean() / eye)
    assert np.mean(onet) < 0.06 and np.mean(onet) < 0.6 * np.mean(own), (onet, own)
    assert len(hybrid.detect([_face_free()])[0]) == 0


def test_yunet_finds_no_face_in_a_face_free_image():
    assert len(YunetDetector().detect([_face_free()])[0]) == 0
    assert align_image(_face_free(), config=YUNET) is None


def test_cache_key_names_the_detector_and_keeps_mtcnns(tmp_path):
    mt, yu = AlignConfig().tag(), YUNET.tag()
    assert mt.startswith(ALIGN_VERSION + "|") and "detector" not in mt  # existing MTCNN cache entries stay valid
    assert yu != mt and yu.startswith("yunet")
    # a crop cached for one detector is never served to the other
    f = tmp_path / "a.png"
    cv2.imwrite(str(f), _face_free())
    align_files([f], cache_dir=tmp_path / "cache", progress=False, config=YUNET)
    from compress.data.align import iter_align

    rec = next(iter_align([f], cache_dir=tmp_path / "cache", progress=False, config=YUNET))
    assert rec.cache_hit and rec.meta["version"] == YUNET.version
    keys = {p.name for p in (tmp_path / "cache").rglob("*.json")}
    assert len(keys) == 1


def test_unknown_detector_is_a_user_error():
    with pytest.raises(UserError, match="unknown detector 'nope'"):
        AlignConfig(detector="nope").version
    with pytest.raises(UserError, match="choose one of mtcnn, yunet, yunet-onet, blazeface"):
        frame_config("nope")
    assert DETECTORS == ("mtcnn", "yunet", "yunet-onet", "blazeface")


@pytest.mark.parametrize("args", [
    ["data", "align", "SRC", "DST", "--detector", "nope"],
    ["identify", "--db", "W.db", "--detector", "nope", "IMG"],
    ["enrol", "--gallery", "SRC", "--db", "W.db", "--detector", "nope"],
    ["check-dose", "--db", "W.db", "--plan", "P.toml", "--image", "IMG", "--detector", "nope"],
    ["evaluate", "--lfw", "SRC", "--detector", "nope"],
    ["bench", "--frame", "IMG", "--detector", "nope"],
])
def test_unknown_detector_is_one_line_exit_2_before_any_work(args, tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "SRC").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["compress", *args])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "unknown detector 'nope'" in err
    assert not (tmp_path / "W.db").exists() and not (tmp_path / "DST").exists()


@needs_lfw
def test_bench_frame_writes_per_stage_medians_and_names_what_ran(tmp_path, monkeypatch, capsys):
    import sys

    out = tmp_path / "frame.json"
    monkeypatch.setattr(sys, "argv", ["compress", "bench", "--frame", str(LFW / SAMPLE[0]), "--threads", "1",
                                      "--seconds", "0.2", "--templates", "50", "--json", str(out)])
    main()
    r = json.loads(out.read_text())
    assert r["measured"] and r["detector"]["name"] == "yunet-onet" and r["detector"]["sha256"] == YUNET_SHA256
    assert r["detector"]["detect_max_side"] == 320 and r["templates"] == 50 and r["flip"] is True
    assert set(r["stages"]) == {"detect", "align", "embed", "match"} and r["total"]["median_ms"] > 0
    assert len(r["model"]["sha256"]) == 64 and r["host"] and "cpu_flags" in r
    assert "total median" in capsys.readouterr().out


def test_yunet_onet_exports_onet_elsewhere_when_the_weights_folder_is_read_only(tmp_path, monkeypatch):
    """ONet's ONNX lives beside the MTCNN weights; a folder it cannot write gets a per-process copy instead."""
    import compress.data.mtcnn as mtcnn
    from compress.data.detectors import YunetOnetDetector
    from compress.data.mtcnn_weights import weights_dir

    src = weights_dir()
    for f in ("pnet.pt", "rnet.pt", "onet.pt"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    real = mtcnn.write_onet_onnx

    def refuse_there(path, wd=None):
        if Path(path).parent == tmp_path:
            raise PermissionError(13, "read-only", str(path))
        return real(path, wd)

    monkeypatch.setattr(mtcnn, "write_onet_onnx", refuse_there)
    det = YunetOnetDetector(weights_dir=tmp_path)
    assert not (tmp_path / "onet-opset11.onnx").exists()
    assert det._onet.run(["pts"], {"x": np.zeros((1, 3, 48, 48), np.float32)})[0].shape == (1, 10)
