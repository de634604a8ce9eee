from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.data.folder import FaceSet

SHARED = Path(__file__).resolve().parents[2] / "shared"


def toy_faces(classes: int = 6, per_class: int = 12, size: int = 112, seed: int = 0) -> FaceSet:
    """Tiny separable face set (class-specific colour patterns + noise) for fast training tests."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (classes, 8, 8, 3))
    imgs, labels = [], []
    for c in range(classes):
        base = np.kron(protos[c], np.ones((size // 8, size // 8, 1)))
        for _ in range(per_class):
            imgs.append(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))
            labels.append(c)
    return FaceSet(np.stack(imgs), np.array(labels, np.int64), [f"c{i}" for i in range(classes)], "toy")


def write_image_folder(root: Path, faces: FaceSet) -> Path:
    """Write a FaceSet as an ImageFolder root/id<label>/<i>.png (what `--data DIR` reads)."""
    from PIL import Image

    for i, (img, y) in enumerate(zip(faces.images, faces.labels)):
        (root / f"id{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"id{y}" / f"{i}.png")
    return root


@pytest.fixture
def faces() -> FaceSet:
    return toy_faces()
