"""Enrolment (a folder per person -> gallery rows) and the open-set threshold.

Threshold protocol: impostor probes are faces of people who are not enrolled (the calibration set); each is
scored against every enrolled template and its best score is what would be accepted as "someone". The
threshold is the smallest one letting through at most floor(FAR * n) of them (accept iff score > threshold),
so the stated FAR is the open-set false-accept rate of this gallery. It is recomputed from the stored
calibration embeddings whenever the gallery changes (more people, more chances to be mistaken for one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.align import IMAGE_EXTS
from ..errors import UserError
from .embedder import EmbedModel
from .gallery import Gallery, Templates, has_control, nfc, shown

DEFAULT_FAR = 1e-3
DEFAULT_CALIBRATION = "synthetic"
# What the threshold was set on (gallery meta "calibration_kind"): only "real" faces of people who are not
# enrolled measure a real ward's false-accept rate; check-dose refuses any other gallery unless told.
REAL, SYNTHETIC = "real", "synthetic"
LFW_SINGLETONS = "lfw-singletons:"
# Synthetic impostors come from an identity range no other part of the project uses.
CALIBRATION_IDENTITY_OFFSET = 3_000_000


@dataclass
class EnrolReport:
    enrolled: dict[str, int] = field(default_factory=dict)  # person -> photos used
    not_enrolled: dict[str, list[str]] = field(default_factory=dict)  # person -> why (every photo's reason)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason) of enrolled people
    threshold: dict[str, Any] = field(default_factory=dict)
    model: str = ""  # the model that computed the embeddings: name, runtime, precision, sha256


def scan_gallery(folder: str | Path) -> dict[str, list[Path]]:
    """One sub-folder per person, images inside; a person folder without images is kept (and reported)."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"gallery folder {root} not found; pass a folder with one sub-folder of photos per person")
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    people: dict[str, list[Path]] = {}
    for d in folders:
        if has_control(d.name):
            raise UserError(f"person folder {shown(repr(d.name))} has a control character in its name; rename "
                            "the folder to the person's name")
        name = nfc(d.name)  # one person whatever the Unicode form the file system gave
        if name in people:
            raise UserError(f"two person folders in {root} are both {name!r} (in two Unicode forms); merge them")
        people[name] = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    if not people:
        raise UserError(f"{root} has no person folders; put each person's photos in {root}/NAME/")
    return people


def face_crops(paths: list[Path], finder: Any) -> tuple[list[np.ndarray], list[float], list[str],
                                                        list[tuple[str, str]]]:
    """(crops, face scores, used paths, rejected (path, reason)). A photo with several faces is rejected, not
    guessed from; so is an unreadable one, or one without a face."""
    from .pipeline import read_image

    crops, scores, used, rejected = [], [], [], []
    for p in paths:
        try:
            faces = finder.faces(read_image(p))
        except UserError as e:
            rejected.append((str(p), str(e).split("; ")[0].replace(str(p), "").strip()))
            continue
        if len(faces) != 1:
            rejected.append((str(p), "no face found" if not faces else f"{len(faces)} faces (one expected)"))
            continue
        crops.append(faces[0].crop)
        scores.append(faces[0].score)
        used.append(str(p))
    return crops, scores, used, rejected


def calibration_kind(meta: dict[str, str]) -> str:
    """"real" or "synthetic"; galleries from before the kind was recorded are judged by their source line."""
    kind = meta.get("calibration_kind")
    if kind in (REAL, SYNTHETIC):
        return kind
    source = meta.get("calibration_source", "")
    return REAL if source and "SYNTHETIC" not in source else SYNTHETIC


def calibration_faces(spec: str, n: int, exclude: set[str], aligned: bool, progress: bool, config: Any = None
                      ) -> tuple[np.ndarray, str]:
    """Faces of people who are not enrolled, and a description of where they came from."""
    if n < 10:
        raise UserError(f"--calibration-images {n} is too few to set a threshold; pass at least 10 (1000 resolves "
                        "FAR 1e-3)")
    if spec == "synthetic":
        from ..data.synthetic import generate

        images, _ = generate(n, 1, seed=0, first_identity=CALIBRATION_IDENTITY_OFFSET)
        return images, (f"{n} SYNTHETIC faces (built-in generator, identities {CALIBRATION_IDENTITY_OFFSET}.., one "
                        "image each): a threshold for synthetic faces only; pass --calibration with real faces of "
                        "people not enrolled (a folder, or lfw-singletons:LFW_DIR) for a real ward")
    if spec.startswith(LFW_SINGLETONS):
        files = lfw_singletons(spec[len(LFW_SINGLETONS):], exclude)
        what = f"LFW people with exactly one image ({len(files)} available, not enrolled)"
    else:
        from ..data.align import find_images

        root = Path(spec)
        if not root.is_dir():
            raise UserError(f"calibration folder {root} not found; pass 'synthetic', lfw-singletons:LFW_DIR or a "
                            "folder of face photos of people who are not enrolled")
        files = [f for f in find_images(root) if f.parent.name not in exclude]
        what = f"faces under {root} (people not enrolled)"
    rng = np.random.default_rng(0)
    files = [files[i] for i in sorted(rng.permutation(len(files))[:n])]
    crops = _aligned_files(files, aligned, progress, config)
    if len(crops) < 10:
        raise UserError(f"only {len(crops)} usable calibration faces in {spec}; pass a folder with more faces")
    return np.stack(crops), f"{len(crops)} {what}, aligned by the project's aligner" + (
        "" if not aligned else " (given as aligned crops)")


def lfw_singletons(lfw_dir: str | Path, exclude: set[str] = frozenset()) -> list[Path]:
    from ..evaluate.lfw import locate_lfw

    _, root = locate_lfw(lfw_dir)
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name not in exclude:
            imgs = sorted(d.glob("*.jpg"))
            if len(imgs) == 1:
                out.append(imgs[0])
    if not out:
        raise UserError(f"no LFW person with exactly one image under {root}; pass the LFW folder")
    return out


def _aligned_files(files: list[Path], aligned: bool, progress: bool, config: Any = None) -> list[np.ndarray]:
    if aligned:
        from .pipeline import AlignedFinder

        return face_crops(files, AlignedFinder())[0]  # unusable calibration faces only shrink the set (reported)
    from ..data.align import align_files

    crops, statuses = align_files(files, progress=progress, **({"config": config} if config else {}))
    return [c for c, s in zip(crops, statuses) if s in ("ok", "haar_reject")]


def threshold_at_far(impostor_best: np.ndarray, far: float) -> dict[str, Any]:
    """Accept iff score > threshold; at most floor(far * n) impostors score above it."""
    s = np.sort(np.asarray(impostor_best, np.float64))[::-1]
    n = len(s)
    if n == 0:
        raise UserError("no calibration impostors to set a threshold from")
    k = math.floor(far * n)
    t = float(s[min(k, n - 1)])
    return {"threshold": t, "far": far, "impostors": n, "false_accepts_allowed": k,
            "false_accepts": int((s > t).sum()), "resolved": k >= 1,
            "note": "" if k >= 1 else f"{n} impostors cannot resolve FAR {far:g} (needs >= {math.ceil(1 / far)}): "
                                      "threshold = the highest impostor score"}


def recalibrate(g: Gallery, c: Any, t: Templates, model: EmbedModel, far: float, flip: bool) -> dict[str, Any]:
    cal = g.calibration(model.sha256)
    best = (cal @ t.vectors.T).max(axis=1)
    info = threshold_at_far(best, far)
    info["calibration"] = g.meta().get("calibration_source", "")
    info["calibration_kind"] = calibration_kind(g.meta())
    g.set_meta(c, {"threshold": info["threshold"], "threshold_info": info})
    return info
