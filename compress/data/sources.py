"""Where training and evaluation faces come from: the built-in synthetic generator or an image folder."""

from __future__ import annotations

import numpy as np

from pathlib import Path
from typing import Any

from .folder import FaceSet, read_files, read_image_folder

from .prefixes import ALIGNED, LFW_UNPAIRED, PREFIXES  # noqa: F401  (their home; importable from here too)

# Evaluation identities start far above any training range, so held-out faces are never trained on.
EVAL_IDENTITY_OFFSET = 1_000_000


def synthetic_faces(num_identities: int, images_per_identity: int, seed: int = 0, first_identity: int = 0,
                    progress: bool = True) -> FaceSet:
    from . import synthetic

    images, labels = synthetic.generate(num_identities, images_per_identity, seed=seed,
                                        first_identity=first_identity, progress=progress)
    classes = [f"synthetic-{first_identity + i}" for i in range(num_identities)]
    src = (f"(seed {seed}, identities {first_identity}..{first_identity + num_identities - 1}, "
           f"{images_per_identity} per identity)")
    return FaceSet(np.asarray(images), np.asarray(labels, np.int64), classes, src, synthetic=True)


def load_faces(spec: str, *, identities: int = 120, per_identity: int = 20, seed: int = 0,
               first_identity: int = 0, progress: bool = True, align: bool = False) -> FaceSet:
    """`spec` is "synthetic" (built-in generator, parameters as given) or comma-separated ImageFolders (each
    `aligned:FOLDER` for aligned crops, else aligned here when `align`), merged by merge_labelled."""
    if spec == "synthetic":
        return synthetic_faces(identities, per_identity, seed, first_identity, progress)
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    sets = [_read_folder(s, progress, align) for s in specs]
    return sets[0] if len(sets) == 1 else merge_labelled(sets, specs)


def _read_folder(spec: str, progress: bool, align: bool) -> FaceSet:
    if spec.startswith(ALIGNED):
        return read_image_folder(spec[len(ALIGNED):], progress=progress, align=False)
    return read_image_folder(spec, progress=progress, align=align)


def merge_labelled(sets: list[FaceSet], names: list[str]) -> FaceSet:
    """Several labelled sets as one: identities kept apart (class `<source folder>/<name>`), one part each.
    Two folders naming the same person stay two classes: the sets must not share people."""
    images, labels, classes, skipped, dropped, offset = [], [], [], [], {}, 0
    for fs, name in zip(sets, names):
        tag = Path(name.split(":", 1)[-1]).name
        tag = Path(name.split(":", 1)[-1]).parent.name if tag == "faces" else tag
        images.append(fs.images)
        labels.append(np.where(fs.labels >= 0, fs.labels + offset, -1))
        classes += [f"{tag}/{c}" for c in fs.classes]
        offset += fs.num_classes
        skipped += fs.skipped
        for k, v in fs.dropped.items():
            dropped.setdefault(k, []).extend(v)
    src = " + ".join(fs.source for fs in sets)
    return FaceSet(np.concatenate(images), np.concatenate(labels), classes, src, False, skipped,
                   sum(fs.resized for fs in sets), dropped, [(n, len(fs)) for n, fs in zip(names, sets)])


def with_unlabelled(faces: FaceSet, folders: list, progress: bool = True, align: bool = False) -> FaceSet:
    """Append aligned faces from `folders` with label -1 (used by distillation only, not by the margin loss)."""
    images, labels, skipped = [faces.images], [faces.labels], list(faces.skipped)
    parts = list(faces.parts) or [(faces.source, len(faces))]
    dropped = {k: list(v) for k, v in faces.dropped.items()}
    for folder in folders:
        extra = _read_unlabelled(str(folder), progress, align)
        images.append(extra.images)
        labels.append(np.full(len(extra), -1, np.int64))
        parts.append((str(folder), len(extra)))
        skipped += extra.skipped
        for k, v in extra.dropped.items():
            dropped.setdefault(k, []).extend(v)
    n_extra = sum(len(x) for x in labels[1:])
    src = f"{faces.source} + {n_extra} unlabelled from {', '.join(str(f) for f in folders)}"
    return FaceSet(np.concatenate(images), np.concatenate(labels), faces.classes, src, faces.synthetic, skipped,
                   faces.resized, dropped, parts)


def _read_unlabelled(spec: str, progress: bool, align: bool) -> FaceSet:
    """A folder, `aligned:FOLDER` (crops aligned already), or `lfw-unpaired:LFW_DIR`: the LFW images of people who appear in no pair of pairs.txt
    (1,549 images of 1,468 people), the only LFW images that may train a model evaluated on LFW."""
    if not spec.startswith(LFW_UNPAIRED):
        return _read_folder(spec, progress, align)
    files = lfw_unpaired_images(spec[len(LFW_UNPAIRED):])
    return read_files([(p, -1) for p in files], [], spec, progress=progress, align=align)


def lfw_unpaired_images(lfw_dir: str | Path) -> list[Path]:
    from ..evaluate.lfw import locate_lfw, parse_pairs

    pairs_path, root = locate_lfw(lfw_dir)
    pairs = parse_pairs(pairs_path)
    paired_people = {name.split("/")[0] for name in pairs.left + pairs.right}
    return [p for d in sorted(root.iterdir()) if d.is_dir() and d.name not in paired_people
            for p in sorted(d.glob("*.jpg"))]


def recipe_extras(faces: FaceSet, cfg: Any, device: str = "cpu", progress: bool = True
                  ) -> tuple[FaceSet, tuple | None, dict | None]:
    """A recipe's labelled faces plus its `unlabelled` sources, less the faces its LFW leakage filter drops:
    what a training run (and a data snapshot of it) sees. Returns (faces, the teacher's (plain, mirror)
    embeddings of the kept faces when the filter computed them, else None, the filter's record or None)."""
    from ..recipe import resolve_path, resolve_sources
    from ..train.distill import teacher_path

    if cfg.unlabelled:
        faces = with_unlabelled(faces, resolve_sources(cfg.unlabelled), progress=progress, align=cfg.align)
    if not cfg.leakage_lfw:
        return faces, None, None
    from .leakage import drop_lfw_leaks

    return drop_lfw_leaks(faces, teacher_path(cfg.teacher), resolve_path(cfg.leakage_lfw), cfg.leakage_quantile,
                          device, progress)
