"""The robot's whole frame on the board: the bundle carries the YuNet detector (issue 27), and
`run_on_board.py --frame [PHOTO]` repeats `compress bench --frame` (detect, align, embed with flip, match) with
numpy and OpenCV only. The runner runs as a separate process with the compress package made unimportable
(tests/test_bundle.py's run_board). No timing figure is asserted, only the record's shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compress.bench.frame import CANVAS_GREY, DEFAULT_TEMPLATES, FRAME_SIZE, STAGES
from compress.data.align import frame_config
from compress.data.detectors import ROBOT_DETECTOR, YUNET_FILE, YUNET_NMS, YUNET_SCORE, YUNET_TOP_K, template_for
from compress.export import board_runner
from compress.export.bundle import CONFIG_FILE, SUMS_FILE

from .conftest import SHARED
from .test_bundle import QUICK, bundles, images, model, result, run_board  # noqa: F401  (fixtures)

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
ONE_FACE = SHARED / "data" / "lfw" / "lfw-deepfunneled" / "Hal_Sutton" / "Hal_Sutton_0001.jpg"
TWO_FACES = SHARED / "data" / "lfw" / "lfw-deepfunneled" / "Sandy_Smith" / "Sandy_Smith_0001.jpg"
needs_lfw = pytest.mark.skipif(not ONE_FACE.is_file(), reason="../shared LFW photos not present")


@pytest.fixture
def onnx_bundle(bundles, tmp_path) -> Path:
    """A private copy of the onnx fp32 bundle (the runner writes its result into the folder)."""
    folder = tmp_path / "onnx-fp32"
    shutil.copytree(bundles("onnx", "fp32"), folder)
    return folder


def _sums(folder: Path) -> dict[str, str]:
    return {n: d for d, n in (line.split("  ", 1) for line in (folder / SUMS_FILE).read_text().splitlines())}


def test_bundle_carries_the_detector_and_its_sum(onnx_bundle):
    cfg = json.loads((onnx_bundle / CONFIG_FILE).read_text())
    fr, det = cfg["frame"], cfg["frame"]["detector"]
    assert det["name"] == ROBOT_DETECTOR == "yunet-onet"
    lm = det["landmarks"]  # MTCNN ONet, which places the five points
    assert lm["file"] in _sums(onnx_bundle) and lm["sha256"] == _sums(onnx_bundle)[lm["file"]]
    assert (onnx_bundle / det["file"]).read_bytes() == YUNET_FILE.read_bytes()
    assert _sums(onnx_bundle)[det["file"]] == det["sha256"] == board_runner.sha256_file(str(YUNET_FILE))
    assert "MIT License" in (onnx_bundle / det["licence"]).read_text() and det["licence"] in _sums(onnx_bundle)
    # every value is the package's
    align = frame_config(ROBOT_DETECTOR)
    assert (det["score_threshold"], det["nms_threshold"], det["top_k"]) == (YUNET_SCORE, YUNET_NMS, YUNET_TOP_K)
    assert (fr["detect_max_side"], fr["pad_frac"]) == (align.detect_max_side, align.pad_frac)
    assert np.array_equal(fr["template"], template_for(ROBOT_DETECTOR))
    assert (tuple(fr["frame_size"]), fr["canvas_grey"], fr["templates"]) == (FRAME_SIZE, CANVAS_GREY, DEFAULT_TEMPLATES)
    assert fr["flip"] is True and tuple(fr["stages"]) == STAGES
    assert "run_on_board.py --frame PHOTO" in (onnx_bundle / "BOARD.md").read_text()


def test_runner_similarity_is_the_aligners():
    from compress.data.align import similarity_transform

    rng = np.random.default_rng(0)
    for _ in range(5):
        src = rng.uniform(0, 300, (5, 2))
        assert np.allclose(board_runner.similarity_transform(src, template_for("yunet")),
                           similarity_transform(src, template_for("yunet")), atol=1e-9)


@needs_lfw
def test_runner_frame_path_crops_as_the_host(onnx_bundle):
    """The same frame, boxes, landmarks and 112x112 crops as compress bench --frame's FaceFinder."""
    from compress.bench.frame import place_in_frame
    from compress.identify.pipeline import FaceFinder, read_image

    cfg = json.loads((onnx_bundle / CONFIG_FILE).read_text())
    backend = board_runner.load_backend("onnxruntime", str(onnx_bundle), cfg, 1)
    path = board_runner.FramePath(cv2, str(onnx_bundle), cfg["frame"], backend, cfg)
    frame = place_in_frame(read_image(ONE_FACE))
    assert np.array_equal(frame, board_runner.place_in_frame(cv2, board_runner.read_photo(cv2, str(ONE_FACE)),
                                                             cfg["frame"]))
    finder = FaceFinder(config=frame_config(ROBOT_DETECTOR))
    boxes, lms, scores = finder.detect(frame)
    b2, l2, s2 = path.detect(frame)
    assert len(boxes) == len(b2) == 1 and np.allclose(boxes, b2)
    # ONet runs in torch on the host and in OpenCV's dnn on the board: the points agree to float32 rounding
    assert np.abs(np.asarray(lms) - l2).max() < 1e-3
    host = finder.align(frame, boxes, lms, scores)[0].crop.astype(int)
    board = path.align(frame, l2)[0].astype(int)
    assert np.abs(host - board).max() <= 1 and (host != board).mean() < 0.01


@needs_lfw
def test_frame_record_has_the_stages_and_the_report_shows_them(onnx_bundle, tmp_path):
    from compress.report.render import tables

    from .test_bundle import merged

    r = run_board(onnx_bundle, "--frame", str(ONE_FACE), *QUICK)
    assert r.returncode == 0, r.stderr
    assert "frame 640x480 (Hal_Sutton_0001.jpg" in r.stdout
    rec = result(onnx_bundle)
    f = rec["frame"]
    assert rec["median_ms"] > 0 and rec["parity"]["n"] > 0  # the model's own timing and parity are still there
    assert list(f["stages"]) == list(STAGES) and f["runs"] >= 5 and f["threads"] == 1 == rec["threads"]
    assert all(f["stages"][s]["median_ms"] > 0 and {"p90_ms", "min_ms"} <= set(f["stages"][s]) for s in STAGES)
    assert f["total"]["median_ms"] >= f["stages"]["detect"]["median_ms"]
    assert f["detector"]["sha256"] == _sums(onnx_bundle)[f["detector"]["file"]]
    assert f["templates"] == DEFAULT_TEMPLATES and f["flip"] is True
    assert set(f["stage_runtime"]) == set(STAGES) and "onnxruntime" in f["stage_runtime"]["embed"]
    assert isinstance(f["cpu_flags"], list)
    report, variant = merged(onnx_bundle, tmp_path / "run")
    assert variant["latency"]["board"]["frame"]["total"] == f["total"]
    rows = next(rows for title, _, _, rows in tables(report) if title == "Robot frame measured on board")
    assert len(rows) == 1 and rows[0][0] == variant["key"] and "Hal_Sutton_0001.jpg" in rows[0][1]


def test_frame_without_photo_uses_a_parity_face(onnx_bundle):
    r = run_board(onnx_bundle, "--frame", *QUICK)
    if r.returncode == 2:  # no parity face found alone: the one line says to pass a photo
        assert r.stderr.count("\n") == 1 and "pass --frame PHOTO" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert result(onnx_bundle)["frame"]["photo"].startswith("parity face ")


def _one_line_error(r: subprocess.CompletedProcess, folder: Path, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("run_on_board.py: error: "), r.stderr
    assert all(w in r.stderr for w in words), r.stderr
    assert not list(folder.glob("onnx-fp32.json")), "nothing written on bad input"


def test_unreadable_photo_is_one_line(onnx_bundle, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_text("not an image")
    _one_line_error(run_board(onnx_bundle, "--frame", str(bad), *QUICK), onnx_bundle, "not a readable image")
    _one_line_error(run_board(onnx_bundle, "--frame", str(tmp_path / "none.jpg"), *QUICK), onnx_bundle, "no such file")


def test_photo_without_a_face_is_one_line(onnx_bundle, tmp_path):
    grey = tmp_path / "wall.png"
    cv2.imwrite(str(grey), np.full((200, 300, 3), 90, np.uint8))
    _one_line_error(run_board(onnx_bundle, "--frame", str(grey), *QUICK), onnx_bundle, "0 faces found",
                    "exactly one face")


@needs_lfw
def test_photo_with_two_faces_is_one_line(onnx_bundle):
    _one_line_error(run_board(onnx_bundle, "--frame", str(TWO_FACES), *QUICK), onnx_bundle, "2 faces found")


def test_no_opencv_is_one_line(onnx_bundle, tmp_path):
    """A board without cv2: the runner says how to install it (a cv2 that fails to import, first on PYTHONPATH,
    which the runner keeps)."""
    stub = tmp_path / "nocv2"
    (stub / "cv2").mkdir(parents=True)
    (stub / "cv2" / "__init__.py").write_text("raise ImportError('No module named cv2')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{stub}{os.pathsep}{Path(__file__).parent / 'data' / 'no_compress'}")
    r = subprocess.run([sys.executable, "run_on_board.py", "--frame", *QUICK], cwd=onnx_bundle, env=env,
                       capture_output=True, text=True, timeout=120)
    _one_line_error(r, onnx_bundle, "pip install opencv-python-headless")


def test_bundle_without_a_detector_is_one_line(onnx_bundle):
    cfg = json.loads((onnx_bundle / CONFIG_FILE).read_text())
    del cfg["frame"]
    (onnx_bundle / CONFIG_FILE).write_text(json.dumps(cfg))
    sums = _sums(onnx_bundle)
    sums[CONFIG_FILE] = board_runner.sha256_file(str(onnx_bundle / CONFIG_FILE))
    (onnx_bundle / SUMS_FILE).write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    _one_line_error(run_board(onnx_bundle, "--frame", *QUICK), onnx_bundle, "carries no face detector")


@needs_lfw
@pytest.mark.slow
@pytest.mark.parametrize("target,precision,runtime", [("intel-nuc", "fp16", "openvino"),
                                                      ("raspberry-pi-4", "fp32", "litert"),
                                                      ("jetson-nano", "fp16", "tensorrt")])
def test_frame_in_every_runtime(bundles, tmp_path, target, precision, runtime):
    """--frame embeds through the runner's own backend of each runtime (TensorRT: the fake bindings)."""
    from .test_bundle import FAKE_TRT

    pytest.importorskip({"openvino": "openvino", "litert": "ai_edge_litert", "tensorrt": "onnxruntime"}[runtime])
    folder = tmp_path / target
    shutil.copytree(bundles(target, precision), folder)
    fake = "10" if runtime == "tensorrt" else None
    if fake:
        log = tmp_path / "trtexec.log"
        log.write_text("")
        r = run_board(folder, "--frame", str(ONE_FACE), "--trtexec-log", str(log), *QUICK)
        assert r.returncode == 2 and "Python bindings" in r.stderr and r.stderr.count("\n") == 1
        env = {**os.environ, "PYTHONPATH": str(FAKE_TRT), "FAKE_TRT_API": fake}
        b = subprocess.run([sys.executable, "build_engine.py", "model.onnx", "model.engine", "--precision", precision],
                           cwd=folder, env=env, capture_output=True, text=True, timeout=120)
        assert b.returncode == 0, b.stderr
    r = run_board(folder, "--frame", str(ONE_FACE), *QUICK, fake_trt_api=fake)
    assert r.returncode == 0, r.stderr
    f = result(folder)["frame"]
    assert f["stage_runtime"]["embed"].startswith(runtime) and all(f["stages"][s]["median_ms"] > 0 for s in STAGES)
