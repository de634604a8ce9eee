"""The LFW View-2 benchmark: parse pairs.txt, align and embed the pair images, run the 10-fold protocol.

Protocol (the standard one): LFW's ``pairs.txt`` holds 10 folds of 300 matched + 300 mismatched pairs, in
contiguous blocks of 600 lines. Pairs are scored by the cosine similarity of L2-normalised embeddings; for each
fold the threshold is chosen on the other 9 folds and accuracy is measured on the held-out fold (mean +- std
over the 10 folds, see :mod:`compress.evaluate.verification`). TAR@FAR and the ROC are over all 6000 pairs.

Images are detected and 5-point aligned to 112x112 by the project's aligner (:mod:`compress.data.align`).
An image the aligner finds no face in falls back to a centre crop of the unaligned image (the central
128/250 of the shorter side, resized to 112x112: on deep-funneled LFW that is the face region) and is counted
under ``alignment`` in the result; a "haar_reject" (aligned, but the Haar cascade saw no face) keeps its aligned
crop and is counted too; an unreadable image is an error.
"""

from __future__ import annotations

import json

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from compress.artifacts import host_description
from compress.errors import UserError
from compress.evaluate.embed import execution_notes
from compress.evaluate.verification import VerificationResult, cosine_scores, kfold_verification, plot_roc

__all__ = ["LfwPairs", "parse_pairs", "unique_images", "locate_lfw", "evaluate_lfw", "centre_crop"]

FARS = (1e-3, 1e-2)
# Centre-crop fallback: the central 128 px of a 250 px deep-funneled LFW image, resized to 112.
_CROP_FRACTION = 128 / 250
_SIZE = 112


@dataclass
class LfwPairs:
    """Pairs from a View-2 ``pairs.txt``: relative image paths (``Name/Name_0001.jpg``), labels, fold ids."""

    left: list[str]
    right: list[str]
    issame: np.ndarray  # bool, one per pair
    folds: np.ndarray  # int, one per pair: 0..n_folds-1, contiguous blocks in file order
    n_folds: int
    pairs_per_fold: int  # matched pairs per fold (= mismatched pairs per fold), the header's second number

    def __len__(self) -> int:
        return len(self.left)


def _image_name(name: str, number: str, path: Path, lineno: int) -> str:
    try:
        idx = int(number)
    except ValueError:
        idx = -1
    if idx < 1:
        raise UserError(f"{path} line {lineno}: image number {number!r} is not a positive integer")
    return f"{name}/{name}_{idx:04d}.jpg"


def parse_pairs(path: str | Path) -> LfwPairs:
    """Parse LFW's View-2 ``pairs.txt``.

    Header ``<folds> <pairs>``; then, per fold, ``<pairs>`` matched lines ``Name i j`` followed by ``<pairs>``
    mismatched lines ``Name1 i Name2 j`` (fields separated by tabs or spaces). Blank lines are ignored. The
    counts are checked against the header; a malformed line raises UserError naming its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"LFW pairs file {path} not found; pass the folder that holds pairs.txt")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not a text file (byte {e.start} is not UTF-8); pass LFW's View-2 pairs.txt") from None
    lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), start=1)]
    lines = [(i, f) for i, f in lines if f]
    if not lines:
        raise UserError(f"{path} is empty; expected a header line like '10 300'")
    head_no, head = lines[0]
    try:
        if len(head) != 2:
            raise ValueError
        n_folds, per_fold = int(head[0]), int(head[1])
        if n_folds < 1 or per_fold < 1:
            raise ValueError
    except ValueError:
        raise UserError(f"{path} line {head_no}: expected a header '<folds> <pairs per fold>' like '10 300', "
                        f"got {' '.join(head)!r}") from None

    left, right, issame, line_nos = [], [], [], []
    for lineno, f in lines[1:]:
        if len(f) == 3:
            left.append(_image_name(f[0], f[1], path, lineno))
            right.append(_image_name(f[0], f[2], path, lineno))
            issame.append(True)
        elif len(f) == 4:
            left.append(_image_name(f[0], f[1], path, lineno))
            right.append(_image_name(f[2], f[3], path, lineno))
            issame.append(False)
        else:
            raise UserError(f"{path} line {lineno}: expected 'Name i j' (matched) or 'Name1 i Name2 j' "
                            f"(mismatched), got {len(f)} fields")
        line_nos.append(lineno)

    block = 2 * per_fold
    expected = n_folds * block
    if len(left) != expected:
        raise UserError(f"{path}: header says {n_folds} folds x {block} pairs = {expected} pairs, "
                        f"but the file has {len(left)}")
    same = np.array(issame, dtype=bool)
    for k in range(n_folds):
        blk = same[k * block:(k + 1) * block]
        # Each fold: per_fold matched lines, then per_fold mismatched lines.
        bad = np.flatnonzero(blk != np.r_[np.ones(per_fold, bool), np.zeros(per_fold, bool)])
        if bad.size:
            first = k * block + int(bad[0])
            want = "matched 'Name i j'" if bad[0] < per_fold else "mismatched 'Name1 i Name2 j'"
            raise UserError(f"{path} line {line_nos[first]}: fold {k + 1} should have {per_fold} matched then "
                            f"{per_fold} mismatched pairs; expected a {want} line here")
    folds = np.repeat(np.arange(n_folds), block)
    return LfwPairs(left=left, right=right, issame=same, folds=folds, n_folds=n_folds, pairs_per_fold=per_fold)


def unique_images(pairs: LfwPairs) -> list[str]:
    """Every image referenced by the pairs, once, sorted."""
    return sorted(set(pairs.left) | set(pairs.right))


def locate_lfw(lfw_dir: str | Path) -> tuple[Path, Path]:
    """(pairs.txt, image root) for an LFW folder: ``lfw_dir/pairs.txt`` and ``lfw_dir/lfw-deepfunneled``
    (or ``lfw_dir/lfw``, or ``lfw_dir`` itself when the person folders sit next to pairs.txt)."""
    lfw_dir = Path(lfw_dir)
    pairs = lfw_dir / "pairs.txt"
    if not pairs.is_file():
        raise UserError(f"no pairs.txt in {lfw_dir}; pass the LFW folder that holds pairs.txt and the images")
    for candidate in (lfw_dir / "lfw-deepfunneled", lfw_dir / "lfw"):
        if candidate.is_dir():
            return pairs, candidate
    return pairs, lfw_dir


def centre_crop(path: str | Path, size: int = _SIZE, fraction: float = _CROP_FRACTION) -> np.ndarray:
    """The alignment fallback: the central ``fraction`` of the shorter side, resized to size x size, RGB uint8."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = max(1, round(min(w, h) * fraction))
        x0, y0 = (w - side) // 2, (h - side) // 2
        im = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _status_name(status) -> str:
    value = getattr(status, "value", status)
    return str(getattr(value, "name", value)).lower()


def _align_files(paths: list[Path], cache_dir, progress: bool, config=None):
    """The project's aligner (a seam tests replace); returns (images, statuses, description). ``config``: an
    AlignConfig (its detector: compress.data.detectors), None for the default (MTCNN)."""
    from compress.data import align

    config = config or align.AlignConfig()
    images, statuses = align.align_files(paths, cache_dir=cache_dir, progress=progress, config=config)
    first_line = (align.__doc__ or "compress.data.align").strip().splitlines()[0].rstrip(".,")
    return images, statuses, f"{first_line} [{config.version}]"


# Statuses whose crop is a real aligned face ("haar_reject": aligned, but the Haar cascade saw no face).
_ALIGNED = ("ok", "aligned", "haar_reject")


def align_benchmark_images(paths: list[Path], cache_dir: Path | None, progress: bool,
                           config=None) -> tuple[np.ndarray, dict]:
    """Aligned uint8 crops of every image (the benchmark protocol: an image without a detected face gets the
    centre-crop fallback, counted in the returned info; an unreadable one is an error) and that info.
    ``config``: the aligner's AlignConfig (which detector), None for the default."""
    images, statuses, description = (_align_files(paths, cache_dir, progress) if config is None
                                     else _align_files(paths, cache_dir, progress, config))
    images = np.asarray(images)
    if images.shape != (len(paths), _SIZE, _SIZE, 3) or images.dtype != np.uint8:
        raise RuntimeError(f"aligner returned {images.shape} {images.dtype}, expected "
                           f"({len(paths)}, {_SIZE}, {_SIZE}, 3) uint8")
    names = [_status_name(s) for s in statuses]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    unreadable = [str(p) for p, n in zip(paths, names) if n == "unreadable"]
    if unreadable:
        raise UserError(f"{len(unreadable)} LFW image(s) could not be read, e.g. {unreadable[0]}; "
                        f"the benchmark needs every pair image")
    failed = [i for i, n in enumerate(names) if n not in _ALIGNED]
    if failed:
        images = images.copy()
        for i in failed:
            images[i] = centre_crop(paths[i])
    info = {
        "aligner": description,
        "images": len(paths),
        "aligned": sum(counts.get(n, 0) for n in _ALIGNED),
        "haar_reject": counts.get("haar_reject", 0),
        "failures": len(failed),
        "status_counts": counts,
        "failure_handling": "haar_reject (aligned, Haar cascade saw no face): the aligned crop is used; "
                            "no face found: centre crop of the unaligned image (central 128/250 of the shorter "
                            "side, resized to 112x112), kept in the evaluation and counted here",
        "failed_images": [paths[i].name for i in failed][:50],
    }
    return images, info


def _read_aligned(paths: list[Path], marker: Path) -> tuple[np.ndarray, dict]:
    """The crops of an LFW folder aligned beforehand (its aligned.json says by what), read as they are."""
    from PIL import Image

    images = np.zeros((len(paths), _SIZE, _SIZE, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                if im.size != (_SIZE, _SIZE):  # checked on the header: a crop of another size is not decoded
                    raise ValueError(f"{im.size[0]}x{im.size[1]}")
                images[i] = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"pre-aligned LFW image {p} is unreadable or not {_SIZE}x{_SIZE} ({e}); unpack the "
                            f"snapshot again") from None
    how = json.loads(marker.read_text())
    info = {"aligner": f"pre-aligned ({marker.name}: {json.dumps(how, sort_keys=True)})", "images": len(paths),
            "aligned": len(paths), "haar_reject": 0, "failures": 0, "status_counts": {"pre_aligned": len(paths)},
            "failure_handling": "as when the crops were made", "failed_images": []}
    return images, info


def evaluate_lfw(embedder, lfw_dir: str | Path, *, flip: bool | Literal["both"] = "both", cache_dir=None,
                 progress: bool = True, roc_path: str | Path | None = None, align_config=None) -> dict:
    """Run the LFW View-2 benchmark for ``embedder`` and return a JSON-friendly report.

    ``embedder``: ``.name``, ``.runtime`` and ``.embed(images uint8 [N,112,112,3] RGB, flip=...)`` returning
    L2-normalised [N, D] embeddings. ``flip``: False = plain embeddings, True = flip fusion (the embedder's
    ``flip=True``), "both" = report both. ``cache_dir`` is handed to the aligner (aligned crops are reused on
    the next run; None = the aligner's default cache, False = no cache). ``roc_path``: also write a PNG of
    the ROC curves there. ``align_config``: the aligner's AlignConfig (which detector; None = MTCNN).
    """
    if flip not in (True, False, "both"):
        raise UserError(f"flip must be True, False or 'both', got {flip!r}")
    t_start = time.perf_counter()
    pairs_path, root = locate_lfw(lfw_dir)
    pairs = parse_pairs(pairs_path)
    names = unique_images(pairs)
    paths = [root / n for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} of {len(paths)} LFW images named in {pairs_path} are missing, "
                        f"e.g. {missing[0]}")

    t0 = time.perf_counter()
    marker = Path(lfw_dir) / "aligned.json"  # written by `compress data snapshot` unpack: crops aligned already
    images, align_info = (_read_aligned(paths, marker) if marker.is_file() else
                          align_benchmark_images(paths, cache_dir, progress, config=align_config))
    align_s = time.perf_counter() - t0

    index = {n: i for i, n in enumerate(names)}
    li = np.array([index[n] for n in pairs.left])
    ri = np.array([index[n] for n in pairs.right])

    variants = {"both": (False, True), True: (True,), False: (False,)}[flip]
    results: dict[str, VerificationResult] = {}
    embed_s: dict[str, float] = {}
    dim = None
    for use_flip in variants:
        key = "flip" if use_flip else "no_flip"
        t0 = time.perf_counter()
        emb = np.asarray(embedder.embed(images, flip=use_flip, progress=progress), dtype=np.float32)
        embed_s[key] = time.perf_counter() - t0
        if emb.ndim != 2 or emb.shape[0] != len(names):
            raise RuntimeError(f"embedder returned shape {emb.shape}, expected ({len(names)}, D)")
        dim = int(emb.shape[1])
        scores = cosine_scores(emb[li], emb[ri])
        results[key] = kfold_verification(scores, pairs.issame, folds=pairs.folds, fars=FARS)

    n_pairs = len(pairs)
    folder = root.name
    kind = "deep-funneled" if "deepfunneled" in folder.replace("-", "") else f"images from {folder}/"
    out = {
        "dataset": f"LFW {kind}, View 2, {n_pairs} pairs",
        "protocol": f"{pairs.n_folds}-fold cross-validation over pairs.txt's folds, threshold chosen on "
                    f"{pairs.n_folds - 1} folds, accuracy on the held-out fold (mean +- population std); "
                    f"TAR@FAR and ROC over all {n_pairs} pairs",
        "score": "cosine similarity of L2-normalised embeddings",
        "flip_fusion": "flip: embedding(image) + embedding(horizontal mirror), L2-normalised (the embedder's "
                       "flip=True); no_flip: embedding(image) alone",
        "model": getattr(embedder, "name", type(embedder).__name__),
        "runtime": getattr(embedder, "runtime", "unknown"),
        **execution_notes(embedder),
        "embedding_dim": dim,
        "host": host_description(),
        "pairs_file": str(pairs_path),
        "images_dir": str(root),
        "n_pairs": n_pairs,
        "n_images": len(names),
        "aligner": align_info["aligner"],
        "alignment": align_info,
        "results": {k: r.to_dict() for k, r in results.items()},
        "summary": {k: r.summary() for k, r in results.items()},
        "timings": {
            "align_s": round(align_s, 3),
            "align_cache": str(cache_dir) if cache_dir is not None else None,
            "embed_s": {k: round(v, 3) for k, v in embed_s.items()},
            "embed_ms_per_image": {k: round(1000 * v / len(names), 3) for k, v in embed_s.items()},
            "total_s": None,
        },
        "roc_path": None,
    }
    if roc_path is not None:
        label = out["model"]
        curves = {f"{label} ({'flip' if k == 'flip' else 'no flip'})": r for k, r in results.items()}
        out["roc_path"] = str(plot_roc(curves, roc_path, title=f"LFW View 2 ROC ({n_pairs} pairs)"))
    out["timings"]["total_s"] = round(time.perf_counter() - t_start, 3)
    return out

