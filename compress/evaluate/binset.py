"""insightface verification sets (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, `calfw.bin`, `cplfw.bin`).

Format (insightface `recognition/arcface_torch/eval/verification.py`, `load_bin`): a pickle of the tuple
`(bins, issame_list)`, where `bins` is a list of 2N encoded images (JPEG/PNG bytes of aligned 112x112 faces)
and `issame_list` N booleans; pair i is (bins[2i], bins[2i+1]). Files written by Python 2 hold `str` images,
so they are loaded with `encoding="bytes"`. Unpickling can run code, so only the built-in containers and numpy
byte arrays these files hold are allowed.

Protocol: the LFW one (compress/evaluate/lfw.py): 10 contiguous folds of the pairs in file order, threshold
chosen on 9 folds, accuracy on the held-out fold, cosine score; TAR@FAR and the ROC over all pairs.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..artifacts import host_description
from ..data.recordio import decode_image
from ..errors import UserError
from .embed import execution_notes
from .verification import VerificationResult, cosine_scores, kfold_verification, plot_roc

FARS = (1e-3, 1e-2)
FOLDS = 10
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("builtins", "bytearray"), ("__builtin__", "bytearray")}


# Real sets hold 6,000-7,000 pairs; 2 x 20,000 decoded 112x112 faces are 1.5 GB.
MAX_PAIRS = 20_000


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol 2 stores Python 3 bytes as _codecs.encode(str, "latin1"): allowed for that use only."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed in a verification .bin only as protocol 2's "
                                     "latin1 encoding of bytes")
    return text.encode("latin1")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # a .bin pickled with protocol 2 by Python 3
            return _latin1_encode
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a verification .bin")


def load_bin(path: str | Path, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [2N,size,size,3] RGB, issame bool [N]) from a verification `.bin`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"verification file {p} not found; pass an insightface .bin such as lfw.bin or cfp_fp.bin")
    try:
        with open(p, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"{p} is not an insightface verification .bin ({type(e).__name__}: {str(e)[:80]}); "
                        f"pass a file like lfw.bin") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise UserError(f"{p}: expected a pickled (images, issame_list) pair, got {type(obj).__name__}; pass a "
                        f"file like lfw.bin")
    bins, issame = obj
    try:
        n, n_bins = len(issame), len(bins)
    except TypeError:
        raise UserError(f"{p}: expected a pickled (images, issame_list) pair of lists; pass a file like lfw.bin"
                        ) from None
    if n == 0 or n_bins < 2 * n:
        raise UserError(f"{p}: {n_bins} images for {n} pairs (2 per pair needed); the file is truncated or "
                        f"damaged, re-download it")
    file_bytes = p.stat().st_size
    # checked before the image array is allocated: a 179-byte file of zero-size arrays can claim 1e9 pairs
    why = (f"a verification set has at most {MAX_PAIRS}" if n > MAX_PAIRS else
           f"its {file_bytes} bytes cannot hold {2 * n} encoded images" if 2 * n > file_bytes else None)
    if why:
        raise UserError(f"{p}: says {n} pairs, but {why}; the file is damaged, re-download it")
    images = np.empty((2 * n, size, size, 3), np.uint8)
    for i in range(2 * n):
        b = bins[i]
        data = b.tobytes() if isinstance(b, np.ndarray) else bytes(b) if isinstance(b, (bytes, bytearray)) else None
        if data is None:
            raise UserError(f"{p}: image {i} is a {type(b).__name__}, not encoded image bytes; pass an insightface "
                            f".bin")
        images[i] = decode_image(data, f"{p} image {i}", size)
    return images, np.asarray([bool(s) for s in issame])


def evaluate_bin(embedder: Any, path: str | Path, *, flip: bool | Literal["both"] = "both", progress: bool = False,
                 roc_path: str | Path | None = None) -> dict[str, Any]:
    """The 10-fold verification report of `embedder` on one `.bin`, in the same layout as evaluate_lfw."""
    t0 = time.perf_counter()
    p = Path(path)
    images, issame = load_bin(p, getattr(embedder, "input_size", 112))
    n = issame.size
    if n < FOLDS:
        raise UserError(f"{p} has {n} pairs; the {FOLDS}-fold protocol needs at least {FOLDS}")
    variants = {"both": (False, True), True: (True,), False: (False,)}[flip]
    results: dict[str, VerificationResult] = {}
    for use_flip in variants:
        emb = np.asarray(embedder.embed(images, flip=use_flip, progress=progress), np.float32)
        scores = cosine_scores(emb[0::2], emb[1::2])
        results["flip" if use_flip else "no_flip"] = kfold_verification(scores, issame, folds=FOLDS, fars=FARS)
    out = {
        "dataset": f"{p.name} (insightface verification set), {n} pairs",
        "protocol": f"{FOLDS}-fold cross-validation over contiguous blocks of the file's pair order, threshold "
                    f"chosen on {FOLDS - 1} folds, accuracy on the held-out fold (mean +- population std); "
                    f"TAR@FAR and ROC over all {n} pairs",
        "score": "cosine similarity of L2-normalised embeddings",
        "flip_fusion": "flip: embedding(image) + embedding(horizontal mirror), L2-normalised; no_flip: alone",
        "model": getattr(embedder, "name", type(embedder).__name__),
        "runtime": getattr(embedder, "runtime", "unknown"),
        **execution_notes(embedder),
        "host": host_description(),
        "bin_file": str(p),
        "n_pairs": int(n),
        "results": {k: r.to_dict() for k, r in results.items()},
        "summary": {k: r.summary() for k, r in results.items()},
        "roc_path": None,
    }
    if roc_path is not None:
        curves = {f"{out['model']} ({'flip' if k == 'flip' else 'no flip'})": r for k, r in results.items()}
        out["roc_path"] = str(plot_roc(curves, roc_path, title=f"{p.name} ROC ({n} pairs)"))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
