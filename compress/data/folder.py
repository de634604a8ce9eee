"""ImageFolder reader for aligned face crops: one sub-folder per identity, images inside.

Everything is decoded once into one uint8 array (6k faces at 112x112 is 240 MB), which makes a CPU epoch
cost only the network. Unreadable images are skipped and counted, never a crash; images that are not the
expected size are resized and counted, since they were probably not aligned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import UserError
from .image_limits import too_large

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FaceSet:
    """Aligned faces in memory: images uint8 [N,H,W,3] RGB, labels int64 [N], one class name per label."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    synthetic: bool = False
    skipped: list[str] = field(default_factory=list)
    resized: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)  # cleaning: reason -> files
    parts: list[tuple[str, int]] = field(default_factory=list)  # (source, count) in order when concatenated

    def subset(self, index: np.ndarray, source: str) -> "FaceSet":
        """The faces at `index` (classes kept, so labels stay valid); parts recounted."""
        index = np.asarray(index, np.int64)
        parts, start = [], 0
        for name, n in self.parts:
            parts.append((name, int(((index >= start) & (index < start + n)).sum())))
            start += n
        return FaceSet(self.images[index], self.labels[index], self.classes, source, self.synthetic, self.skipped,
                       self.resized, self.dropped, parts)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Content hash of pixels and labels: two runs used the same data iff this matches."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).data)
        h.update(np.ascontiguousarray(self.labels).data)
        return h.hexdigest()[:16]

    def describe(self) -> str:
        kind = "SYNTHETIC faces (built-in generator)" if self.synthetic else "image folder"
        extra = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        extra += f", {self.resized} resized" if self.resized else ""
        for reason, files in self.dropped.items():
            extra += f", {len(files)} dropped ({reason})"
        return f"{kind} {self.source}: {len(self)} images of {self.num_classes} identities{extra}"


def read_image_folder(root: str | Path, size: int = 112, progress: bool = True, min_images: int = 1,
                      align: bool = False) -> FaceSet:
    """Read an ImageFolder. With align=True the images are raw photos: each is detected and 5-point aligned
    by MTCNN (crops cached by content), and the paper's cleaning drops images with no face or whose aligned
    crop the Haar cascade rejects; both are counted in `skipped`/`dropped` and listed by describe()."""
    files, classes = scan_image_folder(root, min_images)
    return read_files(files, classes, str(root), size=size, progress=progress, align=align)


def scan_image_folder(root: str | Path, min_images: int = 1) -> tuple[list[tuple[Path, int]], list[str]]:
    """([(image file, label)], class names) of an ImageFolder, without decoding anything."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass an ImageFolder of aligned faces "
                        "(one sub-folder per identity) or --data synthetic")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    files: list[tuple[Path, int]] = []
    classes: list[str] = []
    for d in class_dirs:
        imgs = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if len(imgs) < min_images:
            continue
        files += [(p, len(classes)) for p in imgs]
        classes.append(d.name)
    if not files:
        raise UserError(f"{root} holds no images in identity sub-folders; expected {root}/<identity>/<image>.jpg")
    return files, classes


def read_files(files: list[tuple[Path, int]], classes: list[str], source: str, size: int = 112,
               progress: bool = True, align: bool = False) -> FaceSet:
    """Decode (or align) a list of (path, label) into a FaceSet; see read_image_folder."""
    if align:
        return _read_aligned(source, files, classes, progress)
    images = np.empty((len(files), size, size, 3), np.uint8)
    labels = np.empty(len(files), np.int64)
    skipped: list[str] = []
    resized = 0
    n = 0
    for p, y in tqdm(files, desc=f"reading {Path(source).name}", unit="img", disable=not progress, leave=False):
        try:
            with Image.open(p) as im:
                if too_large(*im.size, p):  # checked on the header, before the pixels are decoded
                    raise ValueError
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                    resized += 1
                images[n] = np.asarray(im)
        except Exception:  # any decoder failure (OSError, SyntaxError from a broken PNG, ...) = unreadable
            skipped.append(str(p))
            continue
        labels[n] = y
        n += 1
    if n == 0:
        raise UserError(f"none of the {len(files)} images of {source} could be read; check the files are images")
    return FaceSet(images[:n], labels[:n], classes, source, skipped=skipped, resized=resized)


def _read_aligned(source: str, files: list[tuple[Path, int]], classes: list[str], progress: bool) -> FaceSet:
    from .align import align_files

    crops, statuses = align_files([p for p, _ in files], progress=progress)
    keep = np.array([st == "ok" for st in statuses])
    dropped: dict[str, list[str]] = {}
    for (p, _), st in zip(files, statuses):
        if st in ("no_face", "haar_reject"):
            dropped.setdefault(st, []).append(str(p))
    skipped = [str(p) for (p, _), st in zip(files, statuses) if st == "unreadable"]
    labels = np.array([y for _, y in files], np.int64)
    return FaceSet(crops[keep], labels[keep], classes, f"{source} (MTCNN-aligned, Haar-cleaned)", skipped=skipped,
                   dropped=dropped)
