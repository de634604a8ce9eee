"""Keep LFW's test people out of training: drop every training face the teacher places too close to an LFW
test-pair image.

Unlabelled sources (UTKFace, web portraits) have no names to check against LFW's, so the check is by face: the
teacher's cosine between a training face and each of the 7,701 LFW test-pair images. The 1:1 verification
threshold is the wrong cut here: a face compared with 7,701 others exceeds it by chance almost always. The
threshold is calibrated for that many comparisons on LFW itself: for every test-pair image, its best match among
the images of *other* LFW people is a chance match against the same gallery, so the q-quantile of those best
matches (q = 0.99 by default) is the cut at which a face of nobody in LFW is dropped with probability ~1 - q.
The record also says how many LFW images of people with several test images find their own person above the cut
(the filter's recall on known leaks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .folder import FaceSet

DEFAULT_QUANTILE = 0.99
_CHUNK = 1024


@dataclass
class LfwGallery:
    """Teacher embeddings of the LFW test-pair images (L2-normalised), with each image's person."""

    embeddings: np.ndarray
    people: np.ndarray
    names: list[str]


def lfw_gallery(teacher: Path, lfw_dir: str | Path, progress: bool = True, device: str = "cpu") -> LfwGallery:
    """Align (cached) and embed every image named in LFW's pairs.txt with the teacher (cached per data)."""
    from ..evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images
    from ..train.distill import teacher_targets

    pairs_path, root = locate_lfw(lfw_dir)
    names = unique_images(parse_pairs(pairs_path))
    images, _ = align_benchmark_images([root / n for n in names], None, progress)
    plain, _, _ = teacher_targets(teacher, images, progress, device=device)
    people = np.array([n.split("/")[0] for n in names])
    return LfwGallery(plain, people, names)


def _best_matches(query: np.ndarray, gallery: LfwGallery, query_people: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best cosine, its gallery index, best cosine to the query's own person or -1) per query row; with
    query_people, a gallery image of the query's person (and the query itself) is excluded from the first."""
    best = np.empty(len(query), np.float32)
    arg = np.empty(len(query), np.int64)
    own = np.full(len(query), -1.0, np.float32)
    for i in range(0, len(query), _CHUNK):
        sim = query[i:i + _CHUNK] @ gallery.embeddings.T
        if query_people is not None:
            same = query_people[i:i + _CHUNK, None] == gallery.people[None, :]
            rows = np.arange(sim.shape[0])
            sim_own = np.where(same, sim, -1.0)
            sim_own[rows, i + rows] = -1.0  # the image itself
            own[i:i + _CHUNK] = sim_own.max(axis=1)
            sim = np.where(same, -1.0, sim)
        arg[i:i + _CHUNK] = sim.argmax(axis=1)
        best[i:i + _CHUNK] = sim[np.arange(sim.shape[0]), arg[i:i + _CHUNK]]
    return best, arg, own


def calibrate(gallery: LfwGallery, quantile: float = DEFAULT_QUANTILE) -> dict[str, Any]:
    """The cut: the `quantile` of each LFW test image's best match among other LFW people; with its evidence."""
    if not 0.5 <= quantile < 1:
        raise UserError(f"leakage quantile must be in [0.5, 1), got {quantile}; 0.99 drops ~1% of unrelated faces")
    other, _, own = _best_matches(gallery.embeddings, gallery, gallery.people)
    threshold = float(np.quantile(other, quantile))
    has_own = own > -1.0
    return {
        "threshold": round(threshold, 4),
        "how": (f"q{quantile:g} of the best cosine of each of the {len(other)} LFW test-pair images to the images "
                f"of every other LFW person in the pairs (chance matches against a gallery of that size): an "
                f"unrelated face is dropped with probability ~{1 - quantile:.3g}"),
        "quantile": quantile,
        "best_other_person": {f"p{q:g}": round(float(np.quantile(other, q / 100)), 4) for q in (50, 90, 99, 99.9)},
        "own_person_recall": round(float((own[has_own] > threshold).mean()), 4) if has_own.any() else None,
        "own_person_recall_of": int(has_own.sum()),
    }


def part_ranges(faces: FaceSet) -> list[tuple[str, int, int]]:
    """(source, start, end) for each part of a FaceSet built by data.sources.with_unlabelled (else one part)."""
    parts = faces.parts or [(faces.source, len(faces))]
    out, start = [], 0
    for name, n in parts:
        out.append((name, start, start + n))
        start += n
    return out


def drop_near_lfw(faces: FaceSet, embeddings: np.ndarray, gallery: LfwGallery, threshold: float
                  ) -> tuple[FaceSet, np.ndarray, dict[str, Any]]:
    """(kept faces, kept index, record): drop the faces whose teacher `embeddings` reach `threshold` against
    any LFW test-pair image. The record counts drops per source and names the closest cases."""
    best, arg, _ = _best_matches(embeddings, gallery)
    drop = best >= threshold
    per_source = {}
    for name, a, b in part_ranges(faces):
        per_source[name] = {"images": b - a, "dropped": int(drop[a:b].sum()),
                            "fraction": round(float(drop[a:b].mean()), 4) if b > a else 0.0}
    order = np.argsort(-best)[:20]
    closest = [{"index": int(i), "class": faces.classes[faces.labels[i]] if faces.labels[i] >= 0 else None,
                "lfw_image": gallery.names[arg[i]], "cosine": round(float(best[i]), 4)} for i in order]
    keep = np.flatnonzero(~drop)
    kept = faces.subset(keep, f"{faces.source}, {int(drop.sum())} near LFW test people dropped")
    record = {"threshold": threshold, "dropped": int(drop.sum()), "kept": int(len(keep)),
              "per_source": per_source, "closest": closest}
    return kept, keep, record


def drop_lfw_leaks(faces: FaceSet, teacher: Path, lfw_dir: Path, quantile: float = DEFAULT_QUANTILE,
                   device: str = "cpu", progress: bool = True
                   ) -> tuple[FaceSet, tuple[np.ndarray, np.ndarray, str], dict[str, Any]]:
    """The faces far enough from every LFW test-pair image, the teacher's (plain, mirror, sha256) targets of
    those faces (distillation reuses them), and the filter's record for a manifest."""
    from ..train.distill import teacher_targets

    # Per source, so each source's teacher embeddings are cached once for every mix of sources.
    per_part = [teacher_targets(teacher, faces.images[a:b], progress, device=device) for _, a, b in part_ranges(faces)]
    plain, mirror = np.concatenate([p[0] for p in per_part]), np.concatenate([p[1] for p in per_part])
    t_hash = per_part[0][2]
    gallery = lfw_gallery(teacher, lfw_dir, progress, device)
    cut = calibrate(gallery, quantile)
    kept, keep, record = drop_near_lfw(faces, plain, gallery, cut["threshold"])
    if progress:
        print(f"LFW leakage filter: {record['dropped']} of {len(faces)} training faces dropped at cosine >= "
              f"{cut['threshold']:.3f} (teacher {t_hash[:12]}, {cut['how'].split(':')[0]})")
    record = {"lfw": str(lfw_dir), "teacher_sha256": t_hash, "calibration": cut, **record}
    return kept, (plain[keep], mirror[keep], t_hash), record
