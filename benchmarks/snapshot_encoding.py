"""What a data snapshot's image encoding costs: bytes per face, the teacher's embedding drift, and LFW accuracy
of a model scored on re-encoded LFW crops against the originals (same pairs, same folds).

Writes reports/more-faces/snapshot-encoding.json. Needs ../shared (LFW, the teacher); the aligned crops come
from the aligner's cache. Usage: python benchmarks/snapshot_encoding.py [--model zoo:table3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from compress.artifacts import file_sha256, host_description, now_iso, write_json
from compress.data.snapshot import decode, encode
from compress.evaluate.embed import load_embedder
from compress.evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images
from compress.evaluate.verification import cosine_scores, kfold_verification
from compress.model.io import resolve_model_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models/mobilefacenet-teacher/MobileFaceNet.onnx"
ENCODINGS = [("webp", 75), ("webp", 90), ("jpeg", 90)]


def lfw_accuracy(emb: np.ndarray, names: list[str], pairs) -> dict:
    index = {n: i for i, n in enumerate(names)}
    li, ri = [index[n] for n in pairs.left], [index[n] for n in pairs.right]
    r = kfold_verification(cosine_scores(emb[li], emb[ri]), pairs.issame, folds=pairs.folds)
    return {"accuracy_mean": round(100 * r.accuracy_mean, 3), "accuracy_std": round(100 * r.accuracy_std, 3),
            "fold_accuracies": [round(100 * a, 2) for a in r.fold_accuracies]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:table3")
    ap.add_argument("--out", type=Path, default=ROOT / "reports/more-faces/snapshot-encoding.json")
    args = ap.parse_args()
    pairs_path, root = locate_lfw(SHARED / "data/lfw")
    pairs = parse_pairs(pairs_path)
    names = unique_images(pairs)
    images, _ = align_benchmark_images([root / n for n in names], None, True)
    models = {"teacher (MobileFaceNet, onnxruntime)": load_embedder(TEACHER),
              f"{args.model} (pytorch)": load_embedder(args.model)}
    base = {k: m.embed(images, flip=True) for k, m in models.items()}
    rows = [{"encoding": "original (aligner's lossless crops)", "bytes_per_image": None,
             "lfw_flip": {k: lfw_accuracy(e, names, pairs) for k, e in base.items()}}]
    for enc, q in ENCODINGS:
        t0 = time.perf_counter()
        blobs = [encode(im, enc, q) for im in images]
        coded = np.stack([decode(b) for b in blobs])
        row = {"encoding": f"{enc} q{q}", "bytes_per_image": round(float(np.mean([len(b) for b in blobs])), 1),
               "codec_s": round(time.perf_counter() - t0, 1), "lfw_flip": {}, "cosine_to_original": {}}
        for k, m in models.items():
            e = m.embed(coded, flip=True)
            cos = (e * base[k]).sum(1)
            row["cosine_to_original"][k] = {"mean": round(float(cos.mean()), 5), "p1": round(float(np.quantile(cos, 0.01)), 5)}
            row["lfw_flip"][k] = lfw_accuracy(e, names, pairs)
        rows.append(row)
        print(row["encoding"], row["bytes_per_image"], {k: v["accuracy_mean"] for k, v in row["lfw_flip"].items()})
    write_json(args.out, {"created": now_iso(), "host": host_description(), "images": len(names),
                          "model": args.model, "model_sha256": file_sha256(resolve_model_file(args.model)),
                          "teacher_sha256": file_sha256(TEACHER),
                          "protocol": "LFW View 2, 6000 pairs, 10-fold, flip fusion; the same aligned crops "
                                      "encoded and decoded once, against the originals",
                          "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
