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


def with_unlabelled(faces: FaceSet, folders: list, progress: bool = True) -> FaceSet:
    """Append aligned faces from `folders` with label -1 (used by distillation only, not by the margin loss)."""
    images, labels, skipped = [faces.images], [faces.labels], list(faces.skipped)
    for folder in folders:
        extra = read_image_folder(folder, progress=progress)
        images.append(extra.images)
        labels.append(np.full(len(extra), -1, np.int64))
        skipped += extra.skipped
    n_extra = sum(len(x) for x in labels[1:])
    src = f"{faces.source} + {n_extra} unlabelled from {', '.join(str(f) for f in folders)}"
    return FaceSet(np.concatenate(images), np.concatenate(labels), faces.classes, src, faces.synthetic, skipped,
                   faces.resized)
