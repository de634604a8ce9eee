"""MTCNN (Zhang et al., 2016) face detector with 5 landmarks, reimplemented in torch.

The three networks use the parameter names of the facenet-pytorch state dicts (see mtcnn_weights.py), whose
conversion from the original Caffe model transposed the kernels so that images are fed in their natural
NCHW orientation; the fully connected layers still expect the Caffe (width-major) flattening order, hence the
permute(0, 3, 2, 1) before flattening in RNet and ONet.

The cascade is the standard one: an image pyramid (smallest face `min_face_size`, scale step 0.709) through
PNet, per-scale NMS 0.5, NMS 0.7, box regression and squaring; RNet on 24x24 crops; ONet on 48x48 crops,
which also gives the five landmarks (left eye, right eye, nose, left mouth corner, right mouth corner, "left"
meaning the image's left). Boxes use the original code's 1-based inclusive convention internally; everything
returned is in 0-based pixel coordinates (pixel centres at integers, the cv2.warpAffine convention).

Images of the same size go through PNet as one batch per pyramid scale; RNet and ONet see the candidate
boxes of all images in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from .mtcnn_weights import load_weights


class PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window per output cell, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return prob, self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).flatten(1)  # Caffe's width-major flattening
        x = self.prelu4(self.dense4(x))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box regression and five landmarks (x1..x5, y1..y5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


@dataclass
class Detections:
    """Faces found in one image, best ONet score first. Coordinates are 0-based pixels."""

    boxes: np.ndarray  # (K, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (K,) float32
    landmarks: np.ndarray  # (K, 5, 2) float32 (x, y): left eye, right eye, nose, mouth left, mouth right

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression on (N, 4) inclusive-pixel boxes; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= thresh]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, thresh: float,
                mode: str = "union") -> np.ndarray:
    """NMS within each group (image) at once, by shifting each group's boxes far away from the others."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.abs(boxes).max()) * 2 + 2
    shifted = boxes + (groups.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, thresh, mode)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes (N, 4) to squares around their centres (MTCNN's rerec)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    return np.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                     boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], axis=1)


def _crops(images: Sequence[np.ndarray], img_ids: np.ndarray, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Cut integer boxes (1-based inclusive) out of the images, zero-padding outside, resize to size x size."""
    return _to_input(_crop_boxes(images, img_ids, boxes, size))


def _crop_boxes(images: Sequence[np.ndarray], img_ids: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """_crops' uint8 (N, size, size, 3) crops, before the nets' normalisation."""
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    for k, (i, b) in enumerate(zip(img_ids, boxes.astype(np.int64))):
        img = images[i]
        H, W = img.shape[:2]
        x1, y1, x2, y2 = b[0] - 1, b[1] - 1, b[2] - 1, b[3] - 1  # 0-based inclusive
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw <= 0 or bh <= 0:
            continue
        tmp = np.zeros((bh, bw, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, W - 1), min(y2, H - 1)
        if sx2 >= sx1 and sy2 >= sy1:
            tmp[sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = img[sy1:sy2 + 1, sx1:sx2 + 1]
        out[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _to_input(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> normalised float NCHW tensor, channels-last in memory (about 2x faster convs
    and PReLUs on CPU than the contiguous NCHW layout)."""
    t = torch.from_numpy(batch).permute(0, 3, 1, 2).float()  # permute is a view: already channels-last
    return t.sub_(127.5).mul_(0.0078125)


def onet_landmarks(run_onet: Callable[[np.ndarray], np.ndarray], image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """MTCNN's five points for faces another detector boxed: ONet once on each box (0-based x1, y1, x2, y2),
    squared as MTCNN squares its own; (N, 5, 2) 0-based pixels. The box is not regressed again. ``run_onet``
    maps the (N, 3, 48, 48) float32 input to ONet's (N, 10) points output."""
    b = np.trunc(_square(boxes.astype(np.float64) + 1))  # MTCNN's boxes are 1-based
    crops = _crop_boxes([image], np.zeros(len(b), np.int64), b, 48)
    # _to_input's arithmetic in numpy (float32, same order): no torch call on the robot's per-frame path
    pts = run_onet(np.ascontiguousarray(((crops.astype(np.float32) - np.float32(ONET_MEAN)) * np.float32(ONET_SCALE)
                                         ).transpose(0, 3, 1, 2)))
    bw, bh = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    # as in the cascade's last stage, which gives 0-based points
    return np.stack([bw[:, None] * pts[:, :5] + b[:, 0:1] - 1, bh[:, None] * pts[:, 5:10] + b[:, 1:2] - 1], axis=2)


ONET_ONNX_OPSET = 11  # the board runner's onnxruntime and OpenCV's dnn read it; outputs prob, reg, pts
ONET_MEAN, ONET_SCALE = 127.5, 0.0078125  # _to_input: (pixel - 127.5) / 128, RGB, NCHW


def write_onet_onnx(path: Path, weights_dir: Path | None = None) -> Path:
    """ONet as an ONNX file (input x: N x 3 x 48 x 48 normalised RGB; outputs prob, reg, pts) for runtimes without
    torch: the board runner places yunet-onet's points with it."""
    from ..artifacts import atomic_write

    onet = ONet()
    onet.load_state_dict(load_weights(weights_dir)["onet"])
    onet.eval()
    x = torch.zeros(1, 3, 48, 48)
    atomic_write(path, lambda p: torch.onnx.export(onet, (x,), str(p), input_names=["x"],
                                                   output_names=["prob", "reg", "pts"],
                                                   dynamic_axes={"x": {0: "n"}}, opset_version=ONET_ONNX_OPSET,
                                                   dynamo=False))
    return Path(path)


def onet_onnx_file(weights_dir: Path | None = None) -> Path:
    """ONet's ONNX export kept beside the MTCNN weights, made once; a folder it cannot write gets a copy for this
    process only."""
    from .mtcnn_weights import weights_dir as default_dir

    path = Path(weights_dir or default_dir()) / f"onet-opset{ONET_ONNX_OPSET}.onnx"
    if path.is_file():
        return path
    try:
        return write_onet_onnx(path, weights_dir)
    except OSError:  # a read-only weights folder
        import tempfile

        return write_onet_onnx(Path(tempfile.mkdtemp(prefix="compress-onet-")) / path.name, weights_dir)


def _empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


class MTCNN:
    """The three-stage cascade. `detect(images)` takes RGB uint8 arrays (H, W, 3)."""

    def __init__(self, min_face_size: float = 40.0, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, weights_dir: Path | None = None) -> None:
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        sd = load_weights(weights_dir)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            net.load_state_dict(sd[name])
            net.eval()
            net.requires_grad_(False)

    def scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        out, s = [], m
        while minl >= 12:
            out.append(s)
            s *= self.factor
            minl *= self.factor
        return out

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect faces in each image; images of equal size share PNet batches."""
        images = [np.ascontiguousarray(im) for im in images]
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"MTCNN.detect wants RGB uint8 (H, W, 3) images, got {im.dtype} {im.shape}")
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        out: list[Detections] = [_empty() for _ in images]
        for idx in groups.values():
            for j, det in zip(idx, self._detect_same_size([images[i] for i in idx])):
                out[j] = det
        return out

    def _detect_same_size(self, images: list[np.ndarray]) -> list[Detections]:
        n = len(images)
        h, w = images[0].shape[:2]
        t0, t1, t2 = self.thresholds

        # Stage 1: PNet over the pyramid (area resize in uint8 with OpenCV: much faster than torch's).
        cand, cand_img = [], []
        for s in self.scales(h, w):
            hs, ws = int(h * s + 1), int(w * s + 1)
            xs = np.stack([cv2.resize(im, (ws, hs), interpolation=cv2.INTER_AREA) for im in images])
            prob, reg = self.pnet(_to_input(xs))
            mask = prob >= t0
            if not bool(mask.any()):
                continue
            where = mask.nonzero()  # (K, 3): image, row, col
            score = prob[mask].numpy()
            r = reg.permute(0, 2, 3, 1)[mask].numpy()
            xy = where[:, [2, 1]].numpy().astype(np.float64)
            q1 = np.floor((2 * xy + 1) / s)
            q2 = np.floor((2 * xy + 12) / s)
            b = np.concatenate([q1, q2, score[:, None], r], axis=1)
            ids = where[:, 0].numpy()
            keep = batched_nms(b[:, :4], b[:, 4], ids, 0.5)
            cand.append(b[keep])
            cand_img.append(ids[keep])
        if not cand:
            return [_empty() for _ in range(n)]
        b = np.concatenate(cand)
        ids = np.concatenate(cand_img)
        keep = batched_nms(b[:, :4], b[:, 4], ids, 0.7)
        b, ids = b[keep], ids[keep]
        boxes = np.trunc(_square(_regress(b[:, :4], b[:, 5:9], plus_one=False)))

        # Stage 2: RNet.
        prob, reg = self.rnet(_crops(images, ids, boxes, 24))
        prob, reg = prob.numpy(), reg.numpy()
        keep = prob > t1
        boxes, ids, prob, reg = boxes[keep], ids[keep], prob[keep], reg[keep]
        if len(boxes) == 0:
            return [_empty() for _ in range(n)]
        keep = batched_nms(boxes, prob, ids, 0.7)
        boxes, ids, reg = boxes[keep], ids[keep], reg[keep]
        boxes = np.trunc(_square(_regress(boxes, reg, plus_one=True)))

        # Stage 3: ONet, with landmarks.
        prob, reg, pts = self.onet(_crops(images, ids, boxes, 48))
        prob, reg, pts = prob.numpy(), reg.numpy(), pts.numpy()
        keep = prob > t2
        boxes, ids, prob, reg, pts = boxes[keep], ids[keep], prob[keep], reg[keep], pts[keep]
        if len(boxes) == 0:
            return [_empty() for _ in range(n)]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        lx = bw[:, None] * pts[:, :5] + boxes[:, 0:1] - 1
        ly = bh[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
        lm = np.stack([lx, ly], axis=2)
        boxes = _regress(boxes, reg, plus_one=True)
        keep = batched_nms(boxes, prob, ids, 0.7, mode="min")
        boxes, ids, prob, lm = boxes[keep] - 1, ids[keep], prob[keep], lm[keep]

        res = []
        for i in range(n):
            sel = np.nonzero(ids == i)[0]
            sel = sel[np.argsort(-prob[sel], kind="stable")]
            res.append(Detections(boxes[sel].astype(np.float32), prob[sel].astype(np.float32),
                                  lm[sel].astype(np.float32)))
        return res
