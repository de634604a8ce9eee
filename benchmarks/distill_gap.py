"""How well a student matches its teacher on training faces vs unseen test faces (the distillation gap).

Mean cosine between student and teacher embeddings, and the correlation of their pairwise-similarity matrices,
on N random aligned CelebA training photos, N LFW images of people in no pair (trained on, distillation only:
same domain as the test) and N LFW test-pair images (never trained on). A large gap
means the student memorised the teacher's targets on the training images rather than learning its function;
no gap with a low match means the student lacks capacity. PyTorch / onnxruntime on this host's CPU.

    .venv/bin/python benchmarks/distill_gap.py runs/celeba-table3 [--n 800]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from compress.artifacts import host_description
from compress.data.align import align_files
from compress.data.sources import lfw_unpaired_images, load_faces
from compress.evaluate.embed import load_embedder
from compress.evaluate.lfw import locate_lfw, parse_pairs, unique_images

TEACHER = "../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx"


def gap(student, teacher, images: np.ndarray) -> dict[str, float]:
    a, b = student.embed(images), teacher.embed(images)
    iu = np.triu_indices(len(a), 1)
    return {"mean_cos_to_teacher": float((a * b).sum(1).mean()),
            "pairwise_similarity_corr": float(np.corrcoef((a @ a.T)[iu], (b @ b.T)[iu])[0, 1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--teacher", default=TEACHER)
    ap.add_argument("--train-data", default="../shared/data/celeba-299")
    ap.add_argument("--lfw", default="../shared/data/lfw")
    ap.add_argument("--n", type=int, default=800)
    a = ap.parse_args()
    student, teacher = load_embedder(a.model), load_embedder(a.teacher)
    faces = load_faces(a.train_data, align=True, progress=False)
    train = faces.images[np.random.default_rng(0).choice(len(faces.images), a.n, replace=False)]
    pairs_path, images_dir = locate_lfw(a.lfw)
    names = unique_images(parse_pairs(pairs_path))[: a.n]
    test, _ = align_files([images_dir / n for n in names], progress=False)
    unpaired, _ = align_files(lfw_unpaired_images(a.lfw)[: a.n], progress=False)
    out = {"model": a.model, "teacher": a.teacher, "host": host_description(), "n": a.n,
           "train (CelebA-299, aligned, trained on)": gap(student, teacher, train),
           "train, distillation only (LFW people in no pair)": gap(student, teacher, np.asarray(unpaired)),
           "test (LFW pair images, never trained on)": gap(student, teacher, np.asarray(test))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
