"""Issue 26 item 1: the imported MobileFaceNet vs onnxruntime on the first 256 LFW pair images (sorted), aligned
by the project's aligner (MTCNN, cached). Writes reports/mfn/import_parity.json.

    .venv/bin/python benchmarks/mfn_import_parity.py [ONNX] [LFW_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from compress.artifacts import file_sha256, host_description, write_json
from compress.data.transforms import to_float
from compress.evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images
from compress.model.onnx_import import import_onnx, parity_cosine

onnx = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx")
lfw = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/lfw")
t0 = time.perf_counter()
model = import_onnx(onnx)
pairs_path, root = locate_lfw(lfw)
names = unique_images(parse_pairs(pairs_path))[:256]
images, info = align_benchmark_images([root / n for n in names], None, progress=False)
x = to_float(torch.from_numpy(images)).numpy()
cos = parity_cosine(model, onnx, x)
with torch.no_grad():
    mine = model(torch.from_numpy(x)).numpy()
out = {"onnx": str(onnx), "onnx_sha256": file_sha256(onnx), "schedule": model.schedule.name,
       "images": f"first 256 of the {len(unique_images(parse_pairs(pairs_path)))} LFW pair images (sorted), "
                 "MTCNN-aligned by compress.evaluate.lfw.align_benchmark_images",
       "cosine_min_vs_onnxruntime": cos, "embedding_norm_mean": float(np.linalg.norm(mine, axis=1).mean()),
       "runtime": "torch (imported FaceMobileNet, eval) vs onnxruntime CPUExecutionProvider, batch 1",
       "host": host_description(), "seconds": round(time.perf_counter() - t0, 1)}
write_json("reports/mfn/import_parity.json", out)
print(json.dumps(out, indent=1))
