"""Face detection (MTCNN; or YuNet, see detectors.py), 5-point similarity alignment to 112x112, Haar-cascade cleaning, and a cache.

Paper section 2.4: faces are detected and their five landmarks found with MTCNN (mtcnn.py), the landmarks
are mapped onto the ArcFace 112x112 template by a similarity transform (rotation, uniform scale,
translation; least squares, Umeyama's closed form) and the image is warped with cv2.warpAffine. Before
detection the image is padded by replicating its border (25% of each side by default), so that tightly
cropped photos, whose face touches the frame, still get a full face box and correct landmarks; the warp
replicates the border the same way. When several faces are found the one nearest the image centre,
weighted by its size, is taken (LFW and CelebA centre the subject) and the count is recorded.

Cleaning (section 2.4.3): OpenCV's frontal-face Haar cascade runs on a loose version of the aligned crop
(the same transform with a margin); crops where it finds no face are "haar_reject". The policy is either
"flag" (keep the crop, list it; the default) or "drop" (list it, write no crop).

Results are cached by the sha256 of the source file's bytes plus a tag of the alignment version and
settings, so a second run over the same images, at any path, only reads and hashes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from ..artifacts import atomic_write, atomic_write_text, write_json
from ..errors import UserError
from .detectors import TEMPLATE_112, check_detector, make_detector, template_for
from .image_limits import check_bytes

CROP_SIZE = 112
ALIGN_VERSION = "mtcnn-facenet2.6/arcface112-umeyama/haar-loose/v1"
# Per detector (compress.data.detectors): crops of different detectors never share a cache entry.
ALIGN_VERSIONS = {"mtcnn": ALIGN_VERSION, "yunet": "yunet-ebafce4e-cv2/mtcnn-matched112-umeyama/haar-loose/v2",
                  "yunet-onet": "yunet-ebafce4e+onet-facenet2.6/arcface112-umeyama/haar-loose/v1",
                  "blazeface": "blazeface-sr-3bc182eb-litert/mtcnn-matched112-4pt-umeyama/haar-loose/v1"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
HAAR_POLICIES = ("flag", "drop")
STATUSES = ("ok", "haar_reject", "no_face", "unreadable")


@dataclass(frozen=True)
class AlignConfig:
    min_face_size: float = 40.0  # pixels, in the image MTCNN sees (source, unless detect_max_side shrinks it)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    pad_frac: float = 0.25  # border replicated on each side before detection, as a fraction of that side
    detect_max_side: int = 1280  # larger (padded) images are downscaled for detection only
    haar_margin: int = 28  # the Haar check sees a (112 + 2 * margin)^2 crop around the aligned face
    haar_min_frac: float = 0.35  # smallest Haar face accepted, as a fraction of that crop's side
    haar_min_neighbors: int = 3
    detector: str = "mtcnn"  # compress.data.detectors.DETECTORS

    @property
    def version(self) -> str:
        return ALIGN_VERSIONS[check_detector(self.detector)]

    def tag(self) -> str:
        # the detector is named by the version; left out of the JSON so MTCNN's existing cache keys stay valid
        settings = {k: v for k, v in asdict(self).items() if k != "detector"}
        return self.version + "|" + json.dumps(settings, sort_keys=True)


@dataclass
class AlignResult:
    crop: np.ndarray  # (112, 112, 3) uint8 RGB
    landmarks: np.ndarray  # (5, 2) float, source-image coordinates
    landmarks_crop: np.ndarray  # (5, 2) float, the same points after the transform (112 crop coordinates)
    box: np.ndarray  # (4,) float x1, y1, x2, y2 in source coordinates
    score: float  # the detector's score of the chosen face (MTCNN: ONet probability)
    n_faces: int  # faces the detector found; >1 means one was picked (centre-weighted size)
    picked: int  # index of the chosen face among them (by descending score)
    transform: np.ndarray  # (2, 3) source -> crop similarity transform
    haar_ok: bool | None = None  # None when the Haar check was not run

    @property
    def status(self) -> str:
        return "haar_reject" if self.haar_ok is False else "ok"

    def meta(self) -> dict:
        return {"status": self.status, "landmarks": self.landmarks.round(3).tolist(),
                "landmarks_crop": self.landmarks_crop.round(3).tolist(), "box": self.box.round(2).tolist(),
                "score": round(float(self.score), 5), "n_faces": int(self.n_faces), "picked": int(self.picked),
                "transform": self.transform.round(6).tolist(), "haar_ok": self.haar_ok}


# ----------------------------------------------------------------------------------------------- geometry

def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src to dst.

    Umeyama (1991) closed form. src, dst: (N, 2). Returns the (2, 3) matrix M with dst ~ M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform wants two (N>=2, 2) arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(2)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[1, 1] = -1
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / var_s if var_s > 0 else 1.0
    M = np.zeros((2, 3))
    M[:, :2] = scale * R
    M[:, 2] = mu_d - scale * R @ mu_s
    return M


def apply_transform(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ M[:, :2].T + M[:, 2]


def warp_to_template(img: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE,
                     margin: int = 0, template: np.ndarray = TEMPLATE_112) -> tuple[np.ndarray, np.ndarray]:
    """Warp img so the landmarks land on the 112 template (shifted by margin on a size + 2*margin canvas).
    ``template``: the detector's (compress.data.detectors.template_for; the ArcFace one for MTCNN).

    Outside the image the border is replicated, which equals padding first. Strong downscales are done in
    two steps (area resize, then the warp) to avoid aliasing. Returns (crop, M source->crop).
    """
    tmpl = np.asarray(template, np.float64) * (size / CROP_SIZE) + margin
    M = similarity_transform(landmarks, tmpl)
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    src, lm = img, np.asarray(landmarks, dtype=np.float64)
    if scale < 0.5:
        r = 2.0 * scale
        h, w = img.shape[:2]
        src = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
        rx, ry = src.shape[1] / w, src.shape[0] / h
        # cv2.resize maps pixel centres: x' = (x + 0.5) * r - 0.5
        lm = (lm + 0.5) * np.array([rx, ry]) - 0.5
        Ms = similarity_transform(lm, tmpl)
    else:
        Ms = M
    out = size + 2 * margin
    crop = cv2.warpAffine(src, Ms, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, M


# ----------------------------------------------------------------------------------------------- Haar

_haar_local = threading.local()


def _haar() -> cv2.CascadeClassifier:
    c = getattr(_haar_local, "cascade", None)
    if c is None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise UserError("this OpenCV build has no CascadeClassifier (opencv 5 dropped it); install "
                            "opencv-python-headless 4.x as pinned in pyproject.toml")
        c = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
        if c.empty():
            raise UserError("OpenCV's haarcascade_frontalface_default.xml could not be loaded; reinstall "
                            "opencv-python-headless 4.x")
        _haar_local.cascade = c
    return c


def haar_has_face(img: np.ndarray, landmarks: np.ndarray, config: AlignConfig = AlignConfig()) -> bool:
    """Run the frontal-face Haar cascade on a loose aligned crop around the landmarks."""
    # five points: the ArcFace template, as the cached MTCNN/YuNet checks were made; BlazeFace's four: its own
    tmpl = TEMPLATE_112 if len(landmarks) == len(TEMPLATE_112) else template_for(config.detector)
    loose, _ = warp_to_template(img, landmarks, CROP_SIZE, margin=config.haar_margin, template=tmpl)
    gray = cv2.cvtColor(loose, cv2.COLOR_RGB2GRAY)
    side = loose.shape[0]
    m = int(side * config.haar_min_frac)
    faces = _haar().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=config.haar_min_neighbors,
                                     minSize=(m, m))
    return len(faces) > 0


# ----------------------------------------------------------------------------------------------- aligner

def pick_face(boxes: np.ndarray, h: int, w: int) -> int:
    """Index of the face nearest the image centre, weighted by size: sqrt(area) - 2 * centre distance."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    size = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    dist = np.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)
    return int(np.argmax(size - 2.0 * dist))


class Aligner:
    """A detector (MTCNN or YuNet, config.detector) + template warp + Haar check, on batches of RGB uint8 images."""

    def __init__(self, config: AlignConfig = AlignConfig(), weights_dir: Path | None = None) -> None:
        self.config = config
        self.template = template_for(config.detector)
        self.detector = make_detector(config.detector, min_face_size=config.min_face_size,
                                      thresholds=config.thresholds, factor=config.factor, weights_dir=weights_dir)
        self._lock = threading.Lock()

    def _prepare(self, img: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        c = self.config
        h, w = img.shape[:2]
        py, px = int(round(h * c.pad_frac)), int(round(w * c.pad_frac))
        padded = cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_REPLICATE) if py or px else img
        f = 1.0
        big = max(padded.shape[:2])
        if big > c.detect_max_side:
            f = c.detect_max_side / big
            padded = cv2.resize(padded, (round(padded.shape[1] * f), round(padded.shape[0] * f)),
                                interpolation=cv2.INTER_AREA)
        return padded, f, px, py

    def align_batch(self, images: Sequence[np.ndarray], haar: bool = True) -> list[AlignResult | None]:
        imgs = []
        for img in images:
            img = np.asarray(img)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"align wants RGB uint8 (H, W, 3) images, got {img.dtype} {img.shape}")
            imgs.append(np.ascontiguousarray(img))
        prep = [self._prepare(im) for im in imgs]
        with self._lock:  # torch inference is parallel inside; one batch at a time
            dets = self.detector.detect([p[0] for p in prep])
        out: list[AlignResult | None] = []
        for img, (_, f, px, py), det in zip(imgs, prep, dets):
            if len(det) == 0:
                out.append(None)
                continue
            # detection coordinates -> source coordinates (undo the downscale, then the pad);
            # cv2.resize maps pixel centres x' = (x + 0.5) * f - 0.5
            def to_src(p: np.ndarray) -> np.ndarray:
                p = (p.astype(np.float64) + 0.5) / f - 0.5 if f != 1.0 else p.astype(np.float64)
                return p - np.array([px, py], dtype=np.float64)

            boxes = to_src(det.boxes.reshape(-1, 2)).reshape(-1, 4)
            h, w = img.shape[:2]
            k = pick_face(boxes, h, w) if len(det) > 1 else 0
            lm = to_src(det.landmarks[k])
            crop, M = warp_to_template(img, lm, template=self.template)
            res = AlignResult(crop=crop, landmarks=lm, landmarks_crop=apply_transform(M, lm), box=boxes[k],
                              score=float(det.scores[k]), n_faces=len(det), picked=k, transform=M)
            if haar:
                res.haar_ok = haar_has_face(img, lm, self.config)
            out.append(res)
        return out


@functools.lru_cache(maxsize=4)
def get_aligner(config: AlignConfig = AlignConfig()) -> Aligner:
    """A shared Aligner per config (loading the nets costs ~50 ms; keep one)."""
    return Aligner(config)


def align_image(img: np.ndarray, *, config: AlignConfig = AlignConfig(), haar: bool = True) -> AlignResult | None:
    """Detect, pick and align one face in an RGB uint8 image; None when the detector finds no face."""
    return get_aligner(config).align_batch([img], haar=haar)[0]


# ----------------------------------------------------------------------------------------------- files + cache

def default_cache_dir() -> Path:
    env = os.environ.get("COMPRESS_ALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facecompress" / "aligned"


@dataclass
class AlignRecord:
    """What happened to one file."""

    path: Path
    status: str  # ok | haar_reject | no_face | unreadable
    crop: np.ndarray | None = None  # (112, 112, 3) RGB, for ok and haar_reject
    png: bytes | None = None  # the crop, PNG-encoded
    meta: dict = field(default_factory=dict)
    cache_hit: bool = False
    error: str | None = None


def _read(path: Path) -> tuple[bytes | None, str | None]:
    try:
        return Path(path).read_bytes(), None
    except OSError as e:
        return None, f"{type(e).__name__}: {e.strerror or e}"


def _decode(data: bytes) -> np.ndarray | None:
    if not data:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if img is None or img.size == 0:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _encode_png(crop: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding of an aligned crop failed")
    return buf.tobytes()


def _decode_png(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class _Cache:
    def __init__(self, root: Path, tag: str) -> None:
        self.root = Path(root)
        self.tag = tag.encode()

    def key(self, data: bytes) -> str:
        return hashlib.sha256(self.tag + b"\0" + hashlib.sha256(data).digest()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.json", d / f"{key}.png"

    def get(self, key: str) -> tuple[dict, bytes | None] | None:
        jp, pp = self._paths(key)
        try:
            meta = json.loads(jp.read_text())
            png = pp.read_bytes() if meta.get("status") in ("ok", "haar_reject") else None
        except (OSError, ValueError):
            return None
        return meta, png

    def put(self, key: str, meta: dict, png: bytes | None) -> None:
        jp, pp = self._paths(key)
        if png is not None:
            atomic_write(pp, lambda p: p.write_bytes(png))
        atomic_write_text(jp, json.dumps(meta))  # written last: its presence marks a complete entry


def iter_align(paths: Sequence[Path], *, cache_dir: Path | None | bool = None, batch_size: int = 16,
               progress: bool = True, config: AlignConfig = AlignConfig(), desc: str = "align",
               decode_crops: bool = True) -> Iterator[AlignRecord]:
    """Align files in order, yielding one AlignRecord per path. cache_dir=False turns the cache off.

    Files are read, hashed and decoded by a small thread pool one batch ahead of the detector; images of
    equal size are detected together. Unreadable files and images without a face are records, not errors.
    """
    from tqdm import tqdm

    paths = [Path(p) for p in paths]

    check_detector(config.detector)  # an unknown detector is an error before any file is read
    cache = None if cache_dir is False else _Cache(default_cache_dir() if cache_dir in (None, True)
                                                   else Path(cache_dir), config.tag())
    aligner: Aligner | None = None
    batch_size = max(1, int(batch_size))
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]

    def load(chunk: list[Path]) -> list[tuple]:
        # returns per path: (data, error, key, cached, image)
        out = []
        for p in chunk:
            data, err = _read(p)
            if data is None:
                out.append((None, err, None, None, None))
                continue
            try:
                check_bytes(data, p)  # before decoding: a tiny file can hold a huge image
            except UserError as e:
                out.append((None, str(e).split(": ", 1)[-1], None, None, None))
                continue
            key = cache.key(data) if cache else None
            cached = cache.get(key) if cache else None
            img = None if cached is not None else _decode(data)
            out.append((data, None, key, cached, img))
        return out

    bar = tqdm(total=len(paths), unit="img", desc=desc, disable=not progress, dynamic_ncols=True)
    counts = {s: 0 for s in STATUSES}
    hits = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(load, c) for c in chunks[:2]]
        for ci, chunk in enumerate(chunks):
            loaded = pending[ci].result()
            pending[ci] = None  # free
            if ci + 2 < len(chunks):
                pending.append(pool.submit(load, chunks[ci + 2]))
            records: list[AlignRecord | None] = [None] * len(chunk)
            todo = []
            for j, (p, (data, err, key, cached, img)) in enumerate(zip(chunk, loaded)):
                if data is None:
                    records[j] = AlignRecord(p, "unreadable", error=err)
                elif cached is not None:
                    meta, png = cached
                    crop = _decode_png(png) if (png is not None and decode_crops) else None
                    records[j] = AlignRecord(p, meta["status"], crop=crop, png=png, meta=meta, cache_hit=True)
                    hits += 1
                elif img is None:
                    meta = {"status": "unreadable", "version": config.version}
                    if cache:
                        cache.put(key, meta, None)
                    records[j] = AlignRecord(p, "unreadable", meta=meta, error="not a decodable image")
                else:
                    todo.append((j, key, img))
            if todo:
                if aligner is None:
                    aligner = get_aligner(config)
                results = aligner.align_batch([t[2] for t in todo])
                for (j, key, img), res in zip(todo, results):
                    if res is None:
                        meta = {"status": "no_face", "version": config.version, "src_shape": list(img.shape)}
                        records[j] = AlignRecord(chunk[j], "no_face", meta=meta)
                        png = None
                    else:
                        meta = res.meta() | {"version": config.version, "src_shape": list(img.shape)}
                        png = _encode_png(res.crop)
                        records[j] = AlignRecord(chunk[j], res.status, crop=res.crop, png=png, meta=meta)
                    if cache:
                        cache.put(key, meta, png)
            for r in records:
                counts[r.status] += 1
                yield r
            bar.update(len(chunk))
            bar.set_postfix(ok=counts["ok"], no_face=counts["no_face"], haar=counts["haar_reject"],
                            bad=counts["unreadable"], cached=hits, refresh=False)
    bar.close()


def align_files(paths: Sequence[Path], *, cache_dir: Path | None | bool = None, progress: bool = True,
                batch_size: int = 16, config: AlignConfig = AlignConfig()) -> tuple[np.ndarray, list[str]]:
    """Align a list of files in memory: (N, 112, 112, 3) uint8 RGB crops and one status per file.

    Statuses: "ok", "haar_reject" (aligned, crop returned, but the Haar cascade saw no face), "no_face"
    and "unreadable" (their crops are all zeros).
    """
    paths = list(paths)
    crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    statuses: list[str] = []
    for i, rec in enumerate(iter_align(paths, cache_dir=cache_dir, batch_size=batch_size, progress=progress,
                                       config=config, desc="align")):
        if rec.crop is not None:
            crops[i] = rec.crop
        statuses.append(rec.status)
    return crops, statuses


# ----------------------------------------------------------------------------------------------- trees

@dataclass
class AlignReport:
    src: str
    dst: str
    total: int = 0
    aligned: int = 0  # crops written (includes flagged Haar rejects under the "flag" policy)
    no_face: int = 0
    unreadable: int = 0
    haar_rejected: int = 0
    haar_policy: str = "flag"
    multi_face: int = 0  # images where MTCNN found several faces and one was picked
    cache_hits: int = 0
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    version: str = ALIGN_VERSION
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def find_images(src: Path, exclude: Path | None = None) -> list[Path]:
    """All image files under src (sorted, hidden files and anything under `exclude` skipped)."""
    src = Path(src)
    ex = Path(exclude).resolve() if exclude is not None else None
    out = []
    for root, dirs, files in os.walk(src):
        rootp = Path(root)
        if ex is not None:
            dirs[:] = [d for d in dirs if (rootp / d).resolve() != ex]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTS:
                out.append(rootp / f)
    return out


def _dst_names(rels: list[Path]) -> list[Path]:
    """Output names: the relative path with a .png suffix; a.jpg and a.png both present -> a.jpg.png."""
    names = [r.with_suffix(".png") for r in rels]
    seen: dict[Path, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [r.with_name(r.name + ".png") if seen[n] > 1 and r.suffix.lower() != ".png" else n
            for r, n in zip(rels, names)]


def align_tree(src: str | Path, dst: str | Path, *, batch_size: int = 16, progress: bool = True,
               cache_dir: Path | None | bool = None, haar_policy: str = "flag",
               config: AlignConfig = AlignConfig()) -> AlignReport:
    """Align every image under src into dst (same relative paths, .png), with a report and file lists.

    Writes dst/align_report.json, dst/no_face.txt, dst/unreadable.txt, dst/haar_rejected.txt and
    dst/multi_face.txt (relative paths, one a line). Nothing is dropped silently: every input file is in
    exactly one of the counts.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserError(f"image folder {src} does not exist (or is not a folder); pass the folder of images to align")
    if haar_policy not in HAAR_POLICIES:
        raise UserError(f"unknown Haar policy {haar_policy!r}; choose one of {', '.join(HAAR_POLICIES)}")
    if dst.resolve() == src.resolve():
        raise UserError(f"the output folder {dst} is the input folder; choose another output folder")
    if dst.exists() and (not dst.is_dir() or (any(dst.iterdir()) and not (dst / "align_report.json").is_file())):
        # a new or empty folder, or one an earlier `data align` wrote: its crops and lists are replaced, nothing else
        raise UserError(f"{dst} exists and is not an empty folder or an earlier `compress data align` output; "
                        f"choose a new folder")
    paths = find_images(src, exclude=dst)
    rels = [p.relative_to(src) for p in paths]
    outs = _dst_names(rels)
    report = AlignReport(src=str(src), dst=str(dst), total=len(paths), haar_policy=haar_policy,
                         version=config.version, config=asdict(config))
    lists: dict[str, list[str]] = {"no_face": [], "unreadable": [], "haar_rejected": [], "multi_face": []}
    dst.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as writer:
        futs = []
        for rel, out, rec in zip(rels, outs, iter_align(paths, cache_dir=cache_dir, batch_size=batch_size,
                                                        progress=progress, config=config, desc="align",
                                                        decode_crops=False)):
            report.cache_hits += rec.cache_hit
            r = rel.as_posix()
            if rec.status == "unreadable":
                report.unreadable += 1
                lists["unreadable"].append(r + (f"\t{rec.error}" if rec.error else ""))
                continue
            if rec.status == "no_face":
                report.no_face += 1
                lists["no_face"].append(r)
                continue
            if rec.meta.get("n_faces", 1) > 1:
                report.multi_face += 1
                lists["multi_face"].append(f"{r}\t{rec.meta['n_faces']}")
            if rec.status == "haar_reject":
                report.haar_rejected += 1
                lists["haar_rejected"].append(r)
                if haar_policy == "drop":
                    continue
            report.aligned += 1
            png = rec.png
            futs.append(writer.submit(atomic_write, dst / out, lambda p, b=png: p.write_bytes(b)))
            if len(futs) > 256:
                for f in futs:
                    f.result()
                futs = []
        for f in futs:
            f.result()
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    report.images_per_s = round(report.total / report.elapsed_s, 2) if report.elapsed_s > 0 else 0.0
    for name, items in lists.items():
        atomic_write_text(dst / f"{name}.txt", "".join(i + "\n" for i in items))
    write_json(dst / "align_report.json", report.to_dict())
    return report


# Camera frames, per detector: (border padding, longer side the frame is detected at). MTCNN keeps the photo
# settings (the baseline in reports/identify/latency.json); YuNet sees no padding (a frame is not a tight crop)
# and a half-size 640x480 frame, its speed lever (the quality cost is measured in reports/detectors/).
FRAME_SETTINGS = {"mtcnn": (0.25, 1280), "yunet": (0.0, 320), "yunet-onet": (0.0, 320), "blazeface": (0.0, 640)}  # BlazeFace: 128 inside


def frame_config(detector: str, detect_side: int | None = None) -> "AlignConfig":
    """The AlignConfig for camera frames with ``detector``; ``detect_side`` overrides the detection size."""
    pad, side = FRAME_SETTINGS[check_detector(detector)]
    if detect_side is not None and not 32 <= detect_side <= 4096:
        raise UserError(f"--detect-side {detect_side} must be in 32..4096 pixels (e.g. 320 for a 640x480 frame)")
    return AlignConfig(detector=detector, pad_frac=pad, detect_max_side=detect_side or side)


def photo_config(detector: str) -> "AlignConfig":
    """The AlignConfig for photos (enrolment, LFW, data): the photo defaults, with ``detector``."""
    return AlignConfig(detector=check_detector(detector))
