from __future__ import annotations

from dataclasses import dataclass
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


def table3_with_bn_statistics(images: np.ndarray):
    """A seeded table3 network whose BatchNorm statistics come from three train-mode passes over `images`, in
    eval mode: real (non-degenerate) embeddings for export and bundle tests without training."""
    import torch

    from compress.data.transforms import to_float
    from compress.model.network import build_model

    torch.manual_seed(0)
    m = build_model("table3")
    x = to_float(torch.from_numpy(images))
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(x)
    return m.eval()


def write_image_folder(root: Path, faces: FaceSet) -> Path:
    """Write a FaceSet as an ImageFolder root/id<label>/<i>.png (what `--data DIR` reads)."""
    from PIL import Image

    for i, (img, y) in enumerate(zip(faces.images, faces.labels)):
        (root / f"id{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"id{y}" / f"{i}.png")
    return root


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: object, check_rc: int | None = 0) -> CliResult:
    """`compress ARGS` in this process (click's CliRunner on compress.cli's group): no fresh interpreter that
    imports torch again per command. A UserError ends as compress.cli.main ends a real run: one line
    `error: ...` on stderr and exit code 2. Tests of the entry point itself start a real process."""
    from click.testing import CliRunner

    from compress.cli import cli
    from compress.errors import UserError

    r = CliRunner().invoke(cli, [str(a) for a in args])
    code, err = r.exit_code, r.stderr
    if isinstance(r.exception, UserError):
        code, err = 2, f"{err}error: {r.exception}\n"
    elif r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    if check_rc is not None:
        assert code == check_rc, (r.stdout[-1500:], err[-1500:])
    return CliResult(code, r.stdout, err)


@pytest.fixture
def faces() -> FaceSet:
    return toy_faces()
