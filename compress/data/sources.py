"""Where training and evaluation faces come from: the built-in synthetic generator or an image folder."""

from __future__ import annotations

import numpy as np

from .folder import FaceSet, read_image_folder

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
               first_identity: int = 0, progress: bool = True) -> FaceSet:
    """`spec` is "synthetic" (built-in generator, parameters as given) or a folder of aligned crops."""
    if spec == "synthetic":
        return synthetic_faces(identities, per_identity, seed, first_identity, progress)
    return read_image_folder(spec, progress=progress)
