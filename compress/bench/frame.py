"""The robot's frame, timed: a 640x480 camera frame with one face -> detect -> align -> embed (flip) -> match
against N templates. Per stage: median and p90 over repeated runs of the same frame, one thread by default.

A photo smaller than the frame is placed at the frame's centre on a grey canvas (a larger one is shrunk to fit
first), so every detector sees the same 640x480 input whatever the photo's size.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

FRAME_SIZE = (640, 480)  # width, height
CANVAS_GREY = 114
DEFAULT_TEMPLATES = 1000
STAGES = ("detect", "align", "embed", "match")
FRAME_WARMUP = 3  # untimed frames first: the first calls allocate
FRAME_MIN_RUNS = 20  # timed frames at least, however short --seconds


def place_in_frame(img: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """An RGB uint8 frame of ``size`` (w, h) with ``img`` at its centre (shrunk to fit when larger)."""
    import cv2

    fw, fh = size
    h, w = img.shape[:2]
    if w > fw or h > fh:
        f = min(fw / w, fh / h)
        img = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    frame = np.full((fh, fw, 3), CANVAS_GREY, np.uint8)
    y0, x0 = (fh - h) // 2, (fw - w) // 2
    frame[y0:y0 + h, x0:x0 + w] = img
    return frame


def cpu_flags() -> list[str]:
    """The host CPU's SIMD flags that matter to these runtimes (from /proc/cpuinfo; empty where absent)."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
              "asimd", "asimddp", "neon")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in have]
    return []


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    # min: the least-disturbed run, telling on a shared host (the median is what the robot should plan for)
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "min_ms": round(float(a.min()), 3)}


def bench_frame(photo: str | Path, detector: str, model_spec: str, *, templates: int = DEFAULT_TEMPLATES,
                threads: int = 1, seconds: float = 3.0, detect_side: int | None = None, flip: bool = True
                ) -> dict[str, Any]:
    """Time the whole frame; returns the JSON-ready result (per stage and total: median, p90)."""
    import cv2
    import torch

    from ..artifacts import host_description, now_iso, versions
    from ..data.align import frame_config
    from ..identify.embedder import load_embed_model
    from ..identify.pipeline import FaceFinder, read_image, run_frame

    if templates < 1 or threads < 0 or seconds <= 0:
        raise UserError(f"--templates {templates}, --threads {threads}, --seconds {seconds}: need templates >= 1, "
                        "threads >= 0 (0 = runtime default), seconds > 0")
    config = frame_config(detector, detect_side)
    frame = place_in_frame(read_image(photo))
    if threads:
        cv2.setNumThreads(threads)
        torch.set_num_threads(threads)
    model = load_embed_model(model_spec, threads=threads)
    finder = FaceFinder(config=config)
    faces = finder.faces(frame)
    if len(faces) != 1:
        raise UserError(f"{photo}: {len(faces)} faces found by {detector} in the 640x480 frame; the frame benchmark "
                        "needs a photo with exactly one face")
    dim = embed_dim(model, faces[0].crop, flip)
    # random unit templates: matching costs the same whoever is enrolled
    gallery = np.random.default_rng(0).standard_normal((templates, dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    names = [f"person_{i:04d}" for i in range(templates)]
    per: dict[str, list[float]] = {s: [] for s in STAGES}
    totals: list[float] = []
    for _ in range(FRAME_WARMUP):
        run_frame(frame, finder, model, names, gallery, 0.5, flip)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(totals) < FRAME_MIN_RUNS:
        r = run_frame(frame, finder, model, names, gallery, 0.5, flip)
        for s in STAGES:
            per[s].append(r.timings_ms[s])
        totals.append(sum(r.timings_ms.values()))
    det_file = detector_file(detector)
    return {"format": "compress.bench.frame/1", "created": now_iso(), "measured": True,
            "photo": str(photo), "frame": f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]}, the photo centred on grey",
            "detector": {"name": detector, "detect_max_side": config.detect_max_side, "pad_frac": config.pad_frac,
                         **det_file},
            "model": {"name": model.name, "spec": model.spec, "sha256": model.sha256, "runtime": model.runtime,
                      "precision": model.precision},
            "flip": flip, "templates": templates, "threads": threads or "runtime default",
            "runs": len(totals), "stages": {s: _stats(per[s]) for s in STAGES}, "total": _stats(totals),
            "host": host_description(), "cpu_flags": cpu_flags(), "load_average": [round(x, 2) for x in
                                                                                  os.getloadavg()],
            "versions": {**versions(), "opencv": cv2.__version__}}


def embed_dim(model: Any, crop: np.ndarray, flip: bool) -> int:
    return int(model.embedder.embed(crop[None], flip=flip).shape[1])


def detector_file(name: str) -> dict[str, str]:
    """What computes the detections: the file and its sha256 (YuNet's ONNX; MTCNN's torch weights folder)."""
    from ..artifacts import file_sha256
    from ..data.detectors import YUNET_FILE

    if name == "yunet":
        return {"file": YUNET_FILE.name, "sha256": file_sha256(YUNET_FILE),
                "runtime": "onnxruntime + numpy decoding (cv2.FaceDetectorYN's)"}
    if name == "yunet-onet":
        from ..data.mtcnn_weights import weights_dir

        return {"file": YUNET_FILE.name, "sha256": file_sha256(YUNET_FILE), "landmarks": "MTCNN onet (facenet-pytorch "
                f"2.6 weights, {weights_dir()})", "runtime": "onnxruntime (YuNet and ONet)"}
    if name == "blazeface":
        from ..data.blazeface import BLAZEFACE_FILE

        return {"file": BLAZEFACE_FILE.name, "sha256": file_sha256(BLAZEFACE_FILE), "runtime": "LiteRT (XNNPACK)"}
    from ..data.mtcnn_weights import weights_dir

    return {"file": "MTCNN pnet/rnet/onet (facenet-pytorch 2.6 weights)", "weights": str(weights_dir()),
            "runtime": "pytorch"}


def format_frame(r: dict[str, Any]) -> str:
    s = r["stages"]
    parts = ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in s.items())
    return (f"frame {r['frame']}: total median {r['total']['median_ms']:.1f} ms, p90 {r['total']['p90_ms']:.1f} ms "
            f"({parts} ms medians; {r['runs']} runs)\n  detector {r['detector']['name']} at max side "
            f"{r['detector']['detect_max_side']}; model {r['model']['name']} [{r['model']['runtime']}, sha256 "
            f"{r['model']['sha256'][:12]}]; {r['templates']} templates; flip {r['flip']}; threads {r['threads']}\n"
            f"  measured on {r['host']} (CPU flags {' '.join(r['cpu_flags']) or 'unknown'})")
