"""Face detectors with five landmarks, behind one small interface, so alignment can use either.

- ``mtcnn``: the reference (compress.data.mtcnn; 9-scale pyramid, P/R/O nets in torch). Training data, the LFW
  benchmarks and the zoo models were aligned with it.
- ``yunet``: YuNet (libfacedetection, Shiqi Yu et al.; MIT licence), the ONNX file shipped in
  compress/data/yunet/, run by onnxruntime and decoded as OpenCV's ``cv2.FaceDetectorYN`` does (which stays
  selectable as the reference). One pass at one resolution, so it is cheap on a
  downscaled camera frame; docs/identify.md has its measured quality and frame latency against MTCNN.
- ``yunet-onet``: YuNet's faces, their five points placed by MTCNN's output net (ONet, one 48x48 pass per face)
  on YuNet's box: MTCNN's landmark convention and precision at YuNet's cost + ~1 ms (reports/detectors/).
- ``blazeface``: MediaPipe BlazeFace short range (Apache-2.0; compress/data/blazeface.py), a 128x128 input run by
  LiteRT. Four points (eyes, nose tip, mouth centre), warped onto their own MTCNN-matched template.

All return :class:`compress.data.mtcnn.Detections` (0-based pixels; landmarks left eye, right eye, nose,
left and right mouth corner, "left" meaning the image's left; BlazeFace: eyes, nose, mouth centre), and the
similarity fit onto the detector's template (template_for) is the same.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import UserError

DETECTORS = ("mtcnn", "yunet", "yunet-onet", "blazeface")
# Photos that become training or benchmark data keep the reference aligner.
DATA_DETECTOR = "mtcnn"
# The robot's path (enrol, identify, check-dose, video, the frame benchmark): chosen by measurement,
# reports/detectors/ (quality vs MTCNN on LFW and CelebA, frame latency on one thread); docs/identify.md says
# why: YuNet's speed, and with ONet's points the teacher's LFW accuracy within 0.02 pp of MTCNN-aligned.
ROBOT_DETECTOR = "yunet-onet"
YUNET_FILE = Path(__file__).parent / "yunet" / "face_detection_yunet.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
YUNET_SCORE = 0.6  # lower than OpenCV's demo (0.9): alignment wants every real face; picking handles the rest
YUNET_NMS = 0.3
YUNET_TOP_K = 50


# Where YuNet's five points fall, on average, in MTCNN-aligned 112x112 crops (benchmarks/yunet_template.py, fitted
# on LFW images outside pairs.txt; reports/detectors/yunet_template.json): warping YuNet's points here gives the
# crops the models were trained and benchmarked on, instead of ones ~1-2 px off (its eyes sit wider apart and its
# mouth corners higher than MTCNN's).
# ArcFace / insightface reference landmarks for a 112x112 crop: left eye, right eye, nose, mouth corners.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
YUNET_TEMPLATE_112 = np.array([[38.2534, 52.1371], [74.9051, 52.4964], [56.0315, 73.2279], [40.7639, 89.7663],
                               [71.9643, 90.0491]], dtype=np.float64)


# Where BlazeFace's eyes, nose tip and mouth centre fall, on average, in MTCNN-aligned crops (the same fit:
# benchmarks/yunet_template.py --detector blazeface; reports/detectors/blazeface_template.json).
BLAZEFACE_TEMPLATE_112 = np.array([[37.9203, 53.3239], [74.0883, 53.3382], [55.5766, 74.0751],
                                   [55.5366, 92.4005]], dtype=np.float64)


def template_for(name: str) -> np.ndarray:
    """The 112x112 template a detector's points are warped onto."""
    return {"yunet": YUNET_TEMPLATE_112, "blazeface": BLAZEFACE_TEMPLATE_112}.get(check_detector(name), TEMPLATE_112)


class Detector(Protocol):
    """What the aligner needs: faces with five landmarks in each RGB uint8 image."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list:  # list[Detections]
        ...


def check_detector(name: str) -> str:
    """The name, or a one-line UserError naming the choices."""
    if name not in DETECTORS:
        raise UserError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)} (--detector)")
    return name


YUNET_RUNTIMES = ("onnxruntime", "opencv")


class YunetDetector:
    """YuNet on one image at a time, by onnxruntime with numpy decoding (compress.data.yunet_onnx; the default:
    ~2.5x faster on one thread) or by cv2.FaceDetectorYN (the reference; same faces to 1e-4 px). Not thread-safe
    by itself: one lock serialises callers, as the aligner does."""

    name = "yunet"

    def __init__(self, score: float = YUNET_SCORE, nms: float = YUNET_NMS, top_k: int = YUNET_TOP_K,
                 model: Path = YUNET_FILE, runtime: str = "onnxruntime", threads: int = 1) -> None:
        if not Path(model).is_file():
            raise UserError(f"YuNet model {model} is missing from the installed package; reinstall compress, "
                            "or pass --detector mtcnn")
        if runtime not in YUNET_RUNTIMES:
            raise UserError(f"unknown YuNet runtime {runtime!r}; choose one of {', '.join(YUNET_RUNTIMES)}")
        self.runtime = runtime
        if runtime == "onnxruntime":
            from .yunet_onnx import YunetOnnx

            self._net = YunetOnnx(model, score, nms, top_k, threads)
        else:
            import cv2

            if not hasattr(cv2, "FaceDetectorYN"):
                raise UserError("this OpenCV build has no FaceDetectorYN (needs opencv 4.8+); install the "
                                "opencv-python-headless pinned in pyproject.toml, or use the onnxruntime runtime")
            self._net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score, nms, top_k)
        self._size = (320, 320)
        self._lock = threading.Lock()

    def _rows(self, bgr: np.ndarray) -> np.ndarray | None:
        """FaceDetectorYN's rows (x, y, w, h, five points, score) for one BGR image."""
        if self.runtime == "onnxruntime":
            return self._net.detect(bgr)
        h, w = bgr.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        return self._net.detect(bgr)[1]

    def detect_one(self, rgb: np.ndarray):
        """Detections in one RGB uint8 image, best score first."""
        import cv2

        from .mtcnn import Detections, _empty

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        with self._lock:
            faces = self._rows(bgr)
        if faces is None or len(faces) == 0:
            return _empty()
        faces = faces[np.argsort(-faces[:, 14], kind="stable")]
        x, y, bw, bh = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
        boxes = np.stack([x, y, x + bw, y + bh], 1).astype(np.float32)
        # YuNet's order (subject's right eye first) is already the image's left eye first, as MTCNN's
        return Detections(boxes, faces[:, 14].astype(np.float32), faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32))

    def detect(self, images: Sequence[np.ndarray]) -> list:
        return [self.detect_one(np.ascontiguousarray(im)) for im in images]


class YunetOnetDetector:
    """YuNet finds the faces; MTCNN's ONet places their five points (compress.data.mtcnn.onet_landmarks), run by
    onnxruntime from an ONNX export kept beside the MTCNN weights (torch's per-call overhead doubled its cost).
    YuNet's own points scatter 2-3 px from MTCNN's in the aligned crop; ONet's on YuNet's box 0.9 px, and the
    models were trained and benchmarked on MTCNN crops, so these points go onto MTCNN's template."""

    name = "yunet-onet"

    def __init__(self, weights_dir: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        from .mtcnn import onet_onnx_file

        self.yunet = YunetDetector(threads=threads)
        path = onet_onnx_file(weights_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = max(1, threads)
        self._onet = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def _points(self, x: np.ndarray) -> np.ndarray:
        return self._onet.run(["pts"], {"x": x})[0]

    def detect_one(self, rgb: np.ndarray):
        from .mtcnn import Detections, onet_landmarks

        d = self.yunet.detect_one(rgb)
        if not len(d):
            return d
        return Detections(d.boxes, d.scores, onet_landmarks(self._points, rgb, d.boxes).astype(np.float32))

    def detect(self, images: Sequence[np.ndarray]) -> list:
        return [self.detect_one(np.ascontiguousarray(im)) for im in images]


def make_detector(name: str, **mtcnn_opts) -> Detector:
    """A detector by name; ``mtcnn_opts`` are MTCNN's (min_face_size, thresholds, factor, weights_dir)."""
    check_detector(name)
    if name == "yunet":
        return YunetDetector()
    if name == "yunet-onet":
        return YunetOnetDetector(weights_dir=mtcnn_opts.get("weights_dir"))
    if name == "blazeface":
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector()
    from .mtcnn import MTCNN

    return MTCNN(**mtcnn_opts)
