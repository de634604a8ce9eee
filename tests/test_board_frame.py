"""The robot's whole frame on the board: the bundle carries the YuNet detector (issue 27), and
`run_on_board.py --frame [PHOTO]` repeats `compress bench --frame` (detect, align, embed with flip, match) with
numpy, OpenCV and (for the detector, by default) onnxruntime only. The runner runs as a separate process with the
compress package made unimportable (tests/test_bundle.py's run_board). No timing figure is asserted, only the
record's shape."""

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
from compress.data.yunet_onnx import STRIDES, decode, pad_hw
from compress.export import board_runner
from compress.export.bundle import CONFIG_FILE, SUMS_FILE

from .conftest import SHARED
from .test_bundle import QUICK, bundles, images, model, result, run_board  # noqa: F401  (fixtures)

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
ONE_FACE = SHARED / "data" / "lfw" / "lfw-deepfunneled" / "Hal_Sutton" / "Hal_Sutton_0001.jpg"
TWO_FACES = SHARED / "data" / "lfw" / "lfw-deepfunneled" / "Sandy_Smith" / "Sandy_Smith_0001.jpg"
LFW_PHOTOS = [ONE_FACE, TWO_FACES] + [SHARED / "data" / "lfw" / "lfw-deepfunneled" / n for n in (
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
    "Serena_Williams/Serena_Williams_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg")]
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


def _frame_path(folder: Path, runtime: str, cv: object = cv2) -> board_runner.FramePath:
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    backend = board_runner.load_backend("onnxruntime", str(folder), cfg, 1)
    return board_runner.FramePath(cv, str(folder), cfg["frame"], backend, cfg, runtime, 1)


def _without_face_detector_yn() -> object:
    """An OpenCV older than 4.8 as the runner sees it: cv2 without FaceDetectorYN (JetPack 4.6 ships 4.1)."""
    import types

    old = types.ModuleType("cv2")
    old.__dict__.update({k: v for k, v in vars(cv2).items() if k != "FaceDetectorYN"})
    return old


def test_runner_yunet_decode_is_the_hosts():
    """The runner's re-implemented YuNet decoding (padding, per-stride decode, sqrt(cls * obj), NMS, top-k) gives
    the host's rows, bit for bit, on random graph outputs with many overlapping faces."""
    rng = np.random.default_rng(0)
    for (h, w), top_k in (((240, 320), 50), ((250, 190), 50), ((480, 640), 3)):
        ph, pw = pad_hw(h, w)
        assert board_runner.yunet_pad_hw(h, w) == (ph, pw)
        out = {}
        for s in STRIDES:
            n = (ph // s) * (pw // s)
            out[f"cls_{s}"], out[f"obj_{s}"] = (rng.uniform(0, 1.1, (1, n, 1)).astype(np.float32) for _ in "co")
            out[f"bbox_{s}"] = rng.normal(0, 1, (1, n, 4)).astype(np.float32)
            out[f"kps_{s}"] = rng.normal(0, 1, (1, n, 10)).astype(np.float32)
        host = decode(out, ph, pw, 0.6, 0.3, top_k)
        assert len(host) == top_k or len(host) > 5
        assert np.array_equal(board_runner.yunet_decode(out, ph, pw, 0.6, 0.3, top_k), host)
        assert np.array_equal(board_runner.yunet_decode(out, ph, pw, 1.01, 0.3, top_k), decode(out, ph, pw, 1.01, 0.3,
                                                                                             top_k))


@needs_lfw
@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_runner_frame_path_crops_as_the_host(onnx_bundle, runtime):
    """The same frame, boxes, landmarks and 112x112 crops as compress bench --frame's FaceFinder, with the detector
    in onnxruntime (the host's own way) or in OpenCV's FaceDetectorYN and dnn."""
    from compress.bench.frame import place_in_frame
    from compress.identify.pipeline import FaceFinder, read_image

    path = _frame_path(onnx_bundle, runtime)
    assert path.runtime == runtime
    assert path.detect_how.startswith({"onnxruntime": "onnxruntime ", "opencv": "OpenCV "}[runtime])
    assert path.detect_how.endswith("MTCNN ONet ({})".format({"onnxruntime": "onnxruntime",
                                                               "opencv": "OpenCV dnn"}[runtime]))
    frame = place_in_frame(read_image(ONE_FACE))
    assert np.array_equal(frame, board_runner.place_in_frame(cv2, board_runner.read_photo(cv2, str(ONE_FACE)),
                                                             path.fr))
    finder = FaceFinder(config=frame_config(ROBOT_DETECTOR))
    boxes, lms, scores = finder.detect(frame)
    b2, l2, s2 = path.detect(frame)
    assert len(boxes) == len(b2) == 1 and np.allclose(boxes, b2)
    # ONet runs in onnxruntime on the host and in onnxruntime or OpenCV's dnn on the board: float32 rounding
    assert np.abs(np.asarray(lms) - l2).max() < 1e-3
    host = finder.align(frame, boxes, lms, scores)[0].crop.astype(int)
    board = path.align(frame, l2)[0].astype(int)
    assert np.abs(host - board).max() <= 1 and (host != board).mean() < 0.01


@needs_lfw
def test_runner_onnxruntime_detector_is_the_hosts_on_photos(onnx_bundle):
    """With onnxruntime the runner's detector is the host's yunet-onet: on real photos, one face and two, the same
    boxes, scores and five points (to 1e-3 px; the same graphs, inputs and decoding)."""
    from compress.bench.frame import place_in_frame
    from compress.identify.pipeline import FaceFinder, read_image

    path = _frame_path(onnx_bundle, "onnxruntime")
    finder = FaceFinder(config=frame_config(ROBOT_DETECTOR))
    worst = 0.0
    for photo in [p for p in LFW_PHOTOS if p.is_file()]:
        frame = place_in_frame(read_image(photo))
        boxes, lms, scores = finder.detect(frame)
        b2, l2, s2 = path.detect(frame)
        assert len(boxes) == len(b2) >= 1, photo.name
        assert np.abs(np.asarray(scores) - s2).max() < 1e-5, photo.name
        worst = max(worst, np.abs(np.asarray(boxes) - b2).max(), np.abs(np.asarray(lms) - l2).max())
    assert worst < 1e-3, worst


def test_auto_falls_back_to_onnxruntime_without_face_detector_yn(onnx_bundle):
    """OpenCV 4.1 (JetPack 4.6): no FaceDetectorYN; auto detects with onnxruntime, and OpenCV does the rest."""
    old = _without_face_detector_yn()
    assert board_runner.import_cv2() is cv2  # import_cv2 asks nothing of FaceDetectorYN
    assert board_runner.detector_runtime(old, "auto") == board_runner.detector_runtime(old, "onnxruntime") \
        == "onnxruntime"
    path = _frame_path(onnx_bundle, "auto", old)
    assert path.runtime == "onnxruntime" and path.detect_how.startswith("onnxruntime ")
    if ONE_FACE.is_file():
        frame = board_runner.place_in_frame(old, board_runner.read_photo(old, str(ONE_FACE)), path.fr)
        _, landmarks, _ = path.detect(frame)
        assert len(landmarks) == 1 and path.align(frame, landmarks)[0].shape == (112, 112, 3)


def test_detector_runtime_choices_and_their_errors(monkeypatch):
    old = _without_face_detector_yn()
    with pytest.raises(board_runner.BundleError) as e:
        board_runner.detector_runtime(old, "opencv")
    assert "has no FaceDetectorYN" in str(e.value) and "4.8+" in str(e.value) and "\n" not in str(e.value)
    assert board_runner.detector_runtime(cv2, "opencv") == "opencv"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert board_runner.detector_runtime(cv2, "auto") == "opencv"  # no onnxruntime: FaceDetectorYN
    with pytest.raises(board_runner.BundleError, match="pip3 install onnxruntime"):
        board_runner.detector_runtime(cv2, "onnxruntime")
    with pytest.raises(board_runner.BundleError) as e:
        board_runner.detector_runtime(old, "auto")
    msg = str(e.value)
    assert "neither" in msg and "pip3 install onnxruntime" in msg and "opencv-python-headless" in msg
    assert "\n" not in msg


def _cv2_without_face_detector_yn(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH whose cv2 is the real one less FaceDetectorYN."""
    stub = tmp_path / "oldcv2"
    (stub / "cv2").mkdir(parents=True)
    (stub / "cv2" / "__init__.py").write_text(
        "import os\nimport sys\n"
        "_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))\n"
        "sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _here]\n"
        "del sys.modules['cv2']\n"
        "import cv2 as _real  # noqa: E402\n"
        "del _real.FaceDetectorYN\n")
    return stub


def test_runtime_errors_are_one_line(onnx_bundle, tmp_path):
    """The runner as run: --detector-runtime opencv on an OpenCV without FaceDetectorYN, and auto with neither it
    nor onnxruntime, each one line and exit 2 before any timing."""
    old = _cv2_without_face_detector_yn(tmp_path)
    no_ort = tmp_path / "noort"
    (no_ort / "onnxruntime").mkdir(parents=True)
    (no_ort / "onnxruntime" / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    no_compress = Path(__file__).parent / "data" / "no_compress"

    def run(*paths: Path, args: tuple = ()) -> subprocess.CompletedProcess:
        env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(map(str, (*paths, no_compress))))
        return subprocess.run([sys.executable, "run_on_board.py", "--frame", *args, *QUICK], cwd=onnx_bundle,
                              env=env, capture_output=True, text=True, timeout=120)

    _one_line_error(run(old, args=("--detector-runtime", "opencv")), onnx_bundle, "has no FaceDetectorYN",
                    "--detector-runtime opencv needs 4.8+", "--detector-runtime onnxruntime")
    _one_line_error(run(old, no_ort), onnx_bundle, "needs onnxruntime or OpenCV 4.8+", "pip3 install onnxruntime",
                    "opencv-python-headless")
    r = run_board(onnx_bundle, "--detector-runtime", "opencv", *QUICK)
    _one_line_error(r, onnx_bundle, "--detector-runtime is for --frame")


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
    # the detector's runtime by default: onnxruntime, YuNet decoded in numpy, ONet in onnxruntime too
    assert f["stage_runtime"]["detect"].startswith("onnxruntime ") and "numpy decode" in f["stage_runtime"]["detect"]
    assert f["stage_runtime"]["detect"].endswith("MTCNN ONet (onnxruntime)")
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
