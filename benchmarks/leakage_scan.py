"""How many faces of each training source the LFW leakage filter drops (compress/data/leakage.py).

Embeds the LFW test-pair images and every source with the MobileFaceNet teacher (cached per source, so the
training runs that follow reuse the embeddings), calibrates the cut on LFW and writes
reports/more-faces/leakage.json. Needs ../shared. Usage: python benchmarks/leakage_scan.py [--quantile 0.99]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from compress.artifacts import file_sha256, host_description, now_iso, write_json
from compress.data import leakage as lk
from compress.data.sources import _read_unlabelled, load_faces
from compress.train.distill import teacher_targets

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models/mobilefacenet-teacher/MobileFaceNet.onnx"
LFW = SHARED / "data/lfw"
SOURCES = {  # name -> (loader, what it is)
    "celeba-299": (lambda: load_faces(str(SHARED / "data/celeba-299"), align=True), "labelled, MTCNN-aligned here"),
    "lfw-unpaired": (lambda: _read_unlabelled(f"lfw-unpaired:{LFW}", True, True), "LFW people in no test pair"),
    "utkface-adult": (lambda: _read_unlabelled(f"aligned:{SHARED / 'data/utkface-adult'}", True, False), "unlabelled"),
    "asianfaces": (lambda: _read_unlabelled(f"aligned:{SHARED / 'data/asianfaces/faces'}", True, False), "728 people"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantile", type=float, default=lk.DEFAULT_QUANTILE)
    ap.add_argument("--out", type=Path, default=ROOT / "reports/more-faces/leakage.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    gallery = lk.lfw_gallery(TEACHER, LFW)
    cut = lk.calibrate(gallery, args.quantile)
    print(f"cut {cut['threshold']:.4f}: {cut['how']}; own-person recall {cut['own_person_recall']}")
    sources = {}
    for name, (load, what) in SOURCES.items():
        faces = load()
        plain, _, _ = teacher_targets(TEACHER, faces.images)
        _, _, rec = lk.drop_near_lfw(faces, plain, gallery, cut["threshold"])
        sources[name] = {"what": what, "images": len(faces), "dropped": rec["dropped"],
                         "fraction": round(rec["dropped"] / len(faces), 4), "closest": rec["closest"][:10]}
        print(f"{name}: {rec['dropped']} of {len(faces)} dropped ({rec['dropped'] / len(faces):.1%})")
    write_json(args.out, {"created": now_iso(), "host": host_description(), "teacher_sha256": file_sha256(TEACHER),
                          "lfw_test_images": len(gallery.names), "calibration": cut, "sources": sources,
                          "wall_s": round(time.perf_counter() - t0, 1),
                          "protocol": "teacher = MobileFaceNet ONNX in onnxruntime, plain (unflipped) embeddings of "
                                      "aligned 112x112 crops; a face is dropped when its best cosine to any LFW "
                                      "test-pair image is >= the cut"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
