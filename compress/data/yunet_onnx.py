"""YuNet run by onnxruntime, decoded in numpy: the same network and post-processing as OpenCV's
``cv2.FaceDetectorYN``, ~2.5x faster on one CPU thread (reports/detectors/: 320x240 frame).

The graph (libfacedetection's YuNet, OpenCV model zoo) takes a BGR float image, unnormalised, padded with zeros
on the right and bottom to a multiple of 32, and returns per stride (8, 16, 32) and per grid cell: a class and an
objectness score (already sigmoid), a box (centre offset in cells, log size in cells) and five landmarks (offsets
in cells). FaceDetectorYN keeps sqrt(cls * obj) >= the score threshold, then non-maximum suppression; so does
:func:`decode`, and tests/test_detectors.py checks both give the same faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)


def pad_hw(height: int, width: int, stride: int = STRIDES[-1]) -> tuple[int, int]:
    """The (H, W) the graph runs at: each side rounded up to a multiple of the deepest stride."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, top_k: int) -> np.ndarray:
    """Greedy non-maximum suppression over (N, 4) x, y, w, h boxes; indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    while order.size and len(keep) < top_k:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode(outputs: dict[str, np.ndarray], pad_h: int, pad_w: int, score: float, iou: float,
           top_k: int) -> np.ndarray:
    """The graph's outputs to FaceDetectorYN's rows: (N, 15) x, y, w, h, five (x, y) landmarks, score."""
    rows = []
    for s in STRIDES:
        cols, nrow = pad_w // s, pad_h // s
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
        conf = np.sqrt(cls * obj)
        idx = np.nonzero(conf >= score)[0]
        if not idx.size:
            continue
        c, r = (idx % cols).astype(np.float32), (idx // cols).astype(np.float32)
        assert cols * nrow == cls.size, "YuNet output grid does not match the padded input"
        box = outputs[f"bbox_{s}"].reshape(-1, 4)[idx]
        kps = outputs[f"kps_{s}"].reshape(-1, 10)[idx]
        cx, cy = (c + box[:, 0]) * s, (r + box[:, 1]) * s
        w, h = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
        pts = (kps.reshape(-1, 5, 2) + np.stack([c, r], 1)[:, None, :]) * s
        rows.append(np.concatenate([np.stack([cx - w / 2, cy - h / 2, w, h], 1), pts.reshape(-1, 10),
                                    conf[idx, None]], 1))
    if not rows:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(rows).astype(np.float32)
    return faces[nms(faces[:, :4], faces[:, 14], iou, top_k)]


class YunetOnnx:
    """One onnxruntime session of the YuNet graph; ``detect(bgr)`` returns FaceDetectorYN's rows."""

    def __init__(self, model: Path, score: float, iou: float, top_k: int, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = max(1, threads)
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.score, self.iou, self.top_k = score, iou, top_k

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ph, pw = pad_hw(h, w)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(self.names, self.session.run(self.names, {self.input: x})))
        return decode(out, ph, pw, self.score, self.iou, self.top_k)
