"""A data snapshot: a recipe's aligned training faces (leakage-filtered) and the aligned LFW test images in one
file small enough to travel to a GPU machine, unpacked there into the folders the recipes read.

Format `compress.snapshot/1`, an .npz holding no pickles (np.load(..., allow_pickle=False) reads it):
  meta         uint8, UTF-8 JSON: format, created, encoding + quality, the leakage filter's record, and
               `parts`: [{name, kind ("labelled" | "unlabelled" | "lfw"), count, classes | names}]
  p<i>_bytes   uint8, part i's encoded images one after another
  p<i>_offsets int64 [count + 1], where each image starts (the last entry = total length)
  p<i>_labels  int64 [count], index into the part's classes (-1 = unlabelled)
The LFW part also carries pairs.txt (in meta). Crops are encoded once, WebP by default: training faces at
quality 75 (about 1.3 KB a face, against 2.9 KB as JPEG 85), the LFW test crops at 90 (2.5 KB), because the
benchmark should see the aligner's crops as closely as fits; what each costs is in reports/more-faces.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..artifacts import atomic_write, now_iso, write_json
from ..errors import UserError
from .folder import FaceSet

FORMAT = "compress.snapshot/1"
ENCODINGS = {"webp": "WEBP", "jpeg": "JPEG", "png": "PNG"}
ALIGNED_MARKER = "aligned.json"  # an LFW folder holding this has aligned crops: evaluate reads them as they are


def encode(img: np.ndarray, encoding: str = "webp", quality: int = 75) -> bytes:
    if encoding not in ENCODINGS:
        raise UserError(f"unknown image encoding '{encoding}'; choose one of: {', '.join(ENCODINGS)}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=ENCODINGS[encoding], quality=quality)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pack(images: np.ndarray, encoding: str, quality: int, what: str = "", progress: bool = True
          ) -> tuple[np.ndarray, np.ndarray]:
    blobs = [encode(im, encoding, quality) for im in tqdm(images, desc=f"encoding {what}", unit="img",
                                                          disable=not progress, leave=False)]
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def write_snapshot(out: Path, faces: FaceSet, lfw: tuple[np.ndarray, list[str], str] | None, *,
                   encoding: str = "webp", quality: int = 75, lfw_quality: int = 90,
                   extra: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Write `faces` (one part per source: FaceSet.parts) and the aligned LFW (images, names, pairs.txt text)
    to the snapshot file `out` atomically; returns its meta."""
    arrays: dict[str, np.ndarray] = {}
    parts_meta = []
    start = 0
    for i, (name, n) in enumerate(faces.parts or [(faces.source, len(faces))]):
        labels = faces.labels[start:start + n]
        kind = "unlabelled" if (labels < 0).all() else "labelled"
        arrays[f"p{i}_bytes"], arrays[f"p{i}_offsets"] = _pack(faces.images[start:start + n], encoding, quality,
                                                               Path(name.split(" (")[0]).name, progress)
        arrays[f"p{i}_labels"] = labels
        parts_meta.append({"name": name, "kind": kind, "count": int(n),
                           "classes": faces.classes if kind == "labelled" else []})
        start += n
    if lfw is not None:
        images, names, pairs_txt = lfw
        i = len(parts_meta)
        arrays[f"p{i}_bytes"], arrays[f"p{i}_offsets"] = _pack(images, encoding, lfw_quality, "lfw", progress)
        arrays[f"p{i}_labels"] = np.full(len(images), -1, np.int64)
        parts_meta.append({"name": "lfw", "kind": "lfw", "count": len(images), "names": names, "pairs_txt": pairs_txt,
                           "quality": lfw_quality})
    meta = {"format": FORMAT, "created": now_iso(), "encoding": encoding, "quality": quality,
            "source": faces.describe(), "parts": parts_meta, **(extra or {})}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(out, write)
    return meta


def read_meta(path: Path) -> tuple[dict[str, Any], Any]:
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path} is not a readable data snapshot ({type(e).__name__}); write it again with "
                        f"`compress data snapshot`") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is a {meta.get('format')!r} file, not {FORMAT}; write it with `compress data snapshot`")
    return meta, z


def _safe(name: str) -> str:
    """A class name as one folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def part_folder(i: int, part: dict[str, Any]) -> str:
    """Stable folder names: `train` (the labelled part), `lfw`, `unlabelled-<i>-<source folder>`."""
    if part["kind"] in ("lfw", "labelled"):
        return "lfw" if part["kind"] == "lfw" else "train"
    path = Path(part["name"].split(":", 1)[-1].split(" (")[0])
    base = path.parent.name if path.name == "faces" else path.name
    if part["name"].startswith("lfw-unpaired:"):
        base = "lfw-unpaired"
    return f"unlabelled-{i}-{_safe(base)}"


def member_name(path: Path, name: Any) -> str:
    """A file name stored in a snapshot, checked to stay inside its folder: relative, no `..`, no empty or
    hidden-drive parts (a hostile snapshot must not write outside DST)."""
    parts = str(name).replace("\\", "/").split("/") if isinstance(name, str) else []
    if (not parts or name.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or c == ":" for c in name)):
        raise UserError(f"{path} names a file {name!r} outside its folder; refusing to unpack it (nothing was "
                        f"written). Use a snapshot written by `compress data snapshot`")
    return name


def unpack_snapshot(path: Path, dst: Path) -> dict[str, Any]:
    """Unpack into `dst` (must not exist or be empty): one folder per part, labelled parts as ImageFolders,
    `lfw/` with pairs.txt and the aligned-crops marker; returns {part name: folder}."""
    meta, z = read_meta(path)
    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst} is not empty; unpack into a new or empty folder")
    if meta.get("encoding") not in ENCODINGS:  # it becomes every file's extension
        raise UserError(f"{path} has an unknown encoding {meta.get('encoding')!r}; refusing to unpack it")
    for part in meta["parts"]:  # every name first: refuse before writing anything
        if part.get("kind") == "lfw":
            for n in part.get("names") or []:
                member_name(path, n)
    folders: dict[str, str] = {}
    for i, part in enumerate(meta["parts"]):
        blob, offsets, labels = z[f"p{i}_bytes"], z[f"p{i}_offsets"], z[f"p{i}_labels"]
        if len(offsets) != part["count"] + 1 or offsets[-1] != len(blob):
            raise UserError(f"{path}: part {part['name']} is truncated or damaged; copy the snapshot again")
        root = dst / part_folder(i, part)
        for k in range(part["count"]):
            data = blob[offsets[k]:offsets[k + 1]].tobytes()
            if part["kind"] == "lfw":
                f = root / part["names"][k]  # LFW's own names (.jpg); the content is the snapshot's encoding
            elif part["kind"] == "labelled":
                f = root / _safe(part["classes"][labels[k]]) / f"{k:06d}.{meta['encoding']}"
            else:
                f = root / "faces" / f"{k:06d}.{meta['encoding']}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
        if part["kind"] == "lfw":
            (root / "pairs.txt").write_text(part["pairs_txt"])
            write_json(root / ALIGNED_MARKER, {"aligned_by": "compress data snapshot", "snapshot": str(path),
                                               "encoding": meta["encoding"], "quality": part.get("quality")})
        folders[part["name"]] = str(root)
    write_json(dst / "snapshot.json", {k: v for k, v in meta.items() if k != "parts"} |
               {"parts": [{k: v for k, v in p.items() if k not in ("names", "pairs_txt")} for p in meta["parts"]],
                "folders": folders})
    return folders


def snapshot_from_recipe(cfg: Any, out: Path, *, encoding: str = "webp", quality: int = 75, lfw_quality: int = 90,
                         lfw: bool = True, progress: bool = True) -> dict[str, Any]:
    """The training faces of a TrainConfig as its run would see them (aligned, with its unlabelled sources and
    its LFW leakage filter) plus, with `lfw`, the aligned images of its eval_lfw pairs: one snapshot file."""
    from ..evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images
    from ..recipe import resolve_path, resolve_sources
    from .sources import load_faces, recipe_extras

    if cfg.data == "synthetic":
        raise UserError("a snapshot holds real faces; the recipe's data is 'synthetic' (built in, nothing to pack)")
    faces = load_faces(", ".join(resolve_sources(cfg.data)), progress=progress, align=cfg.align)
    faces, _, leakage = recipe_extras(faces, cfg, progress=progress)
    extra: dict[str, Any] = {"recipe_config": cfg.to_dict(), **({"lfw_leakage_filter": leakage} if leakage else {})}
    lfw_part = None
    if lfw:
        if not cfg.eval_lfw:
            raise UserError("the recipe names no eval_lfw folder to pack; set eval_lfw or pass --no-lfw")
        pairs_path, root = locate_lfw(resolve_path(cfg.eval_lfw))
        names = unique_images(parse_pairs(pairs_path))
        images, _ = align_benchmark_images([root / n for n in names], None, progress)
        lfw_part = (images, names, pairs_path.read_text())
    return write_snapshot(out, faces, lfw_part, encoding=encoding, quality=quality, lfw_quality=lfw_quality,
                          extra=extra, progress=progress)
