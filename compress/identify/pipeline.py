"""One camera frame to answers: detect every face (MTCNN or YuNet, compress.data.detectors), align each to 112x112, embed, match 1:N.

The detector and aligner are the project's own (compress.data.align: MTCNN P/R/O nets, border padding,
5-point similarity warp), so a face is cropped exactly as it was at enrolment and in the LFW benchmarks.
Unlike the data aligner, which picks one face per photo, this keeps every face: the robot must not guess
which person in the frame is the patient.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .embedder import EmbedModel

if TYPE_CHECKING:
    from ..data.align import AlignConfig


@dataclass
class Face:
    crop: np.ndarray  # (112, 112, 3) uint8 RGB, aligned
    box: list[float]  # x1, y1, x2, y2 in the image
    score: float  # the detector's score (MTCNN: ONet probability)


@dataclass
class Match:
    """Top-k people for one face; ``person`` is None ("unknown") when the best score is not above threshold."""

    ranked: list[tuple[str, float]]
    threshold: float

    @property
    def best(self) -> tuple[str, float]:
        return self.ranked[0]

    @property
    def person(self) -> str | None:
        return self.ranked[0][0] if self.ranked and self.ranked[0][1] > self.threshold else None

    def margin(self) -> float:
        """Top-1 minus top-2 score (1.0 with a single enrolled person): small means two people look alike."""
        return self.ranked[0][1] - self.ranked[1][1] if len(self.ranked) > 1 else 1.0


@dataclass
class FrameResult:
    faces: list[Face]
    embeddings: np.ndarray
    matches: list[Match]
    timings_ms: dict[str, float] = field(default_factory=dict)


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), or a one-line UserError for a missing or undecodable file."""
    import cv2

    from ..data.image_limits import check_bytes

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read image {p} ({e.strerror or type(e).__name__}); pass an existing image file"
                        ) from None
    check_bytes(data, p)  # a 20000x20000 PNG of 400 KB is refused here, before it decodes to 1.2 GB
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:  # e.g. OpenCV's own pixel limit on a format PIL cannot read the header of
        img = None
    if img is None or img.size == 0:
        raise UserError(f"{p} is not a readable image (JPEG, PNG, BMP or WebP expected)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FaceFinder:
    """Every face in an image, aligned. ``config`` picks the detector and its settings (compress.data.align:
    photo_config, frame_config); ``detector`` replaces MTCNN's nets' runtime (see detector.py)."""

    def __init__(self, detector: object | None = None, config: "AlignConfig | None" = None) -> None:
        from ..data.align import AlignConfig, get_aligner

        self.config = config or AlignConfig()
        self.aligner = get_aligner(self.config)
        self.detector = detector or self.aligner.detector

    def detect(self, img: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        # The aligner's own preparation (border padding, size cap) keeps crops identical to enrolment's.
        padded, f, px, py = self.aligner._prepare(img)
        det = self.detector.detect([padded])[0]

        def to_src(p: np.ndarray) -> np.ndarray:
            p = (p.astype(np.float64) + 0.5) / f - 0.5 if f != 1.0 else p.astype(np.float64)
            return p - np.array([px, py], dtype=np.float64)

        boxes = to_src(det.boxes.reshape(-1, 2)).reshape(-1, 4) if len(det) else np.zeros((0, 4))
        landmarks = [to_src(det.landmarks[k]) for k in range(len(det))]
        return boxes, landmarks, det.scores

    def align(self, img: np.ndarray, boxes: np.ndarray, landmarks: list, scores: np.ndarray) -> list[Face]:
        from ..data.align import warp_to_template

        return [Face(warp_to_template(img, lm, template=self.aligner.template)[0], [round(float(v), 1) for v in b],
                     float(s))
                for b, lm, s in zip(boxes, landmarks, scores)]

    def faces(self, img: np.ndarray) -> list[Face]:
        return self.align(img, *self.detect(img))


class AlignedFinder:
    """For images that are already aligned 112x112 crops (`compress data align` output): the crop is the face."""

    def faces(self, img: np.ndarray, name: str = "") -> list[Face]:
        from ..data.align import CROP_SIZE

        check_aligned_crop(img, name)
        return [Face(img, [0.0, 0.0, float(CROP_SIZE), float(CROP_SIZE)], 1.0)]


def check_aligned_crop(img: np.ndarray, name: str = "") -> None:
    """--aligned: the image must be a 112x112 crop; the error names the file when `name` is given."""
    from ..data.align import CROP_SIZE

    if img.shape[:2] != (CROP_SIZE, CROP_SIZE):
        raise UserError(f"{name + ': ' if name else ''}not a {CROP_SIZE}x{CROP_SIZE} aligned crop "
                        f"({img.shape[1]}x{img.shape[0]}); leave out --aligned to detect and align faces")


def match(embeddings: np.ndarray, names: list[str], templates: np.ndarray, threshold: float,
          top_k: int = 3) -> list[Match]:
    """Cosine scores of each embedding against every template, best first."""
    scores = np.asarray(embeddings, np.float32) @ templates.T
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:max(1, top_k)]
        out.append(Match([(names[j], round(float(row[j]), 4)) for j in order], threshold))
    return out


def embed(model: EmbedModel, crops: list[np.ndarray] | np.ndarray, flip: bool) -> np.ndarray:
    if len(crops) == 0:
        return np.zeros((0, 0), np.float32)
    return model.embedder.embed(np.stack(list(crops)), flip=flip)


def run_frame(img: np.ndarray, finder: FaceFinder, model: EmbedModel, names: list[str], templates: np.ndarray,
              threshold: float, flip: bool, top_k: int = 3) -> FrameResult:
    """The whole chain on one frame, timed per step (perf_counter, milliseconds)."""
    t0 = time.perf_counter()
    boxes, landmarks, scores = finder.detect(img)
    t1 = time.perf_counter()
    faces = finder.align(img, boxes, landmarks, scores)
    t2 = time.perf_counter()
    emb = embed(model, [f.crop for f in faces], flip)
    t3 = time.perf_counter()
    matches = match(emb, names, templates, threshold, top_k) if len(faces) else []
    t4 = time.perf_counter()
    ms = {"detect": t1 - t0, "align": t2 - t1, "embed": t3 - t2, "match": t4 - t3}
    return FrameResult(faces, emb, matches, {k: round(1000 * v, 3) for k, v in ms.items()})
