"""Small synthetic galleries for the identification safety tests: aligned 112x112 crops (no detector), so a
gallery is enrolled in seconds. "Real" calibration here means a folder of faces, which is what the product
trusts as real faces of people not enrolled; the faces themselves are synthetic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from compress.cli import cli
from compress.data.synthetic import generate
from compress.errors import UserError

PLAN = """
[[patient]]
name = "P1"
[[patient.medication]]
drug = "Metformin 500 mg"
times = ["08:00", "20:00"]
window_minutes = 30
"""


def run_cli(*args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) the way `compress` ends: a UserError is one line and exit code 2; any other
    exception (a traceback for the user) fails the test."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    if isinstance(r.exception, UserError):
        msg = str(r.exception)
        assert "\n" not in msg, msg
        return 2, r.stdout, msg
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def make_faces(root: Path, people: int = 3, first_identity: int = 700) -> Path:
    """root/gallery/P<i>/<j>.png (two crops each), root/impostors/I<k>/0.png (12 people not enrolled) and
    root/stranger.png."""
    images, labels = generate(people, 2, first_identity=first_identity)
    for k, (img, y) in enumerate(zip(images, labels)):
        save(root / "gallery" / f"P{y}" / f"{k % 2}.png", img)
    others, _ = generate(13, 1, first_identity=first_identity + 5000)
    for k, img in enumerate(others[:12]):
        save(root / "impostors" / f"I{k}" / "0.png", img)
    save(root / "stranger.png", others[12])
    return root


def enrol(root: Path, db: Path, real: bool) -> Path:
    cal = ["--calibration", root / "impostors", "--calibration-images", 12, "--far", 0.1] if real else \
        ["--calibration", "synthetic", "--calibration-images", 20, "--far", 0.1]
    rc, out, err = run_cli("enrol", "--gallery", root / "gallery", "--db", db, "--aligned", *cal)
    assert rc == 0, (out, err)
    return db
