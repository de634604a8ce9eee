"""Getting the MTCNN weights without installing facenet-pytorch.

The P/R/O-Net weights (the original Caffe MTCNN of Zhang et al. 2016, as converted by facenet-pytorch) ship
inside the PyPI wheel `facenet-pytorch==2.6.0` as `facenet_pytorch/data/{pnet,rnet,onet}.pt`. That package
pins an old torch, so it is never installed or imported: `fetch_weights` downloads the wheel with
`pip download --no-deps`, takes the three files out with zipfile, checks their sha256 and moves them into
`weights_dir()` atomically. The files are plain state dicts of tensors, so they load with
`torch.load(weights_only=True)` (no pickled code runs).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..artifacts import atomic_write
from ..errors import UserError

WHEEL_SPEC = "facenet-pytorch==2.6.0"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
NETS = ("pnet", "rnet", "onet")
SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
ENV_VAR = "COMPRESS_MTCNN_DIR"


def weights_dir() -> Path:
    """Where the weights live: $COMPRESS_MTCNN_DIR, else ~/.cache/facecompress/mtcnn."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "facecompress" / "mtcnn"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_present(directory: Path | None = None, verify: bool = False) -> bool:
    d = Path(directory) if directory is not None else weights_dir()
    for n in NETS:
        p = d / f"{n}.pt"
        if not p.is_file():
            return False
        if verify and _sha256(p) != SHA256[n]:
            return False
    return True


def fetch_weights(force: bool = False, directory: Path | None = None) -> Path:
    """Download the facenet-pytorch wheel from PyPI and extract the three MTCNN weight files.

    Returns the weights directory. Does nothing when the files are already there with the right hashes,
    unless force is set.
    """
    d = Path(directory) if directory is not None else weights_dir()
    if not force and weights_present(d, verify=True):
        return d
    with tempfile.TemporaryDirectory(prefix="facecompress-mtcnn-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--no-deps", "--only-binary=:all:",
               "-d", tmp, "--disable-pip-version-check", "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("facenet_pytorch-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {WHEEL_SPEC} from PyPI ({last}); check network access to "
                            f"PyPI or copy pnet.pt/rnet.pt/onet.pt into {d}")
        wheel = wheels[0]  # its own hash is WHEEL_SHA256 today; the per-file hashes below are what count
        with zipfile.ZipFile(wheel) as zf:
            data = {}
            for n in NETS:
                member = f"facenet_pytorch/data/{n}.pt"
                try:
                    data[n] = zf.read(member)
                except KeyError:
                    raise UserError(f"{wheel.name} has no {member}; the MTCNN weights cannot be extracted") from None
                got = hashlib.sha256(data[n]).hexdigest()
                if got != SHA256[n]:
                    raise UserError(f"{member} in {wheel.name} has sha256 {got}, expected {SHA256[n]}; "
                                    f"refusing to use unverified weights")
    d.mkdir(parents=True, exist_ok=True)
    for n in NETS:
        atomic_write(d / f"{n}.pt", lambda p, b=data[n]: p.write_bytes(b))
    return d


def load_weights(directory: Path | None = None, verify: bool = True) -> dict[str, dict]:
    """Load the three state dicts {'pnet': ..., 'rnet': ..., 'onet': ...} (weights_only, CPU)."""
    import torch

    d = Path(directory) if directory is not None else weights_dir()
    missing = [f"{n}.pt" for n in NETS if not (d / f"{n}.pt").is_file()]
    if missing:
        raise UserError(f"MTCNN weights not found in {d} (missing {', '.join(missing)}); run "
                        f"`compress data fetch-mtcnn` (downloads the facenet-pytorch wheel from PyPI)")
    out = {}
    for n in NETS:
        p = d / f"{n}.pt"
        if verify and _sha256(p) != SHA256[n]:
            raise UserError(f"MTCNN weight file {p} has the wrong sha256; run `compress data fetch-mtcnn "
                            f"--force` to download it again")
        out[n] = torch.load(p, map_location="cpu", weights_only=True)
    return out
