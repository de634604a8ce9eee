"""Per-frame latency of the robot's identification chain on this host, broken down into detect (MTCNN, padded
frame, whole cascade), align (5-point warp), embed (flip fusion, as enrolled) and match (cosine against a
gallery of 1,000 templates), for a 640x480 frame with one face, per runtime. Writes
reports/identify/latency.json.

Runtimes: the detector's three networks run in PyTorch, onnxruntime and OpenVINO (exported by
compress.identify.detector.export_detector into runs/identify/mtcnn; no TFLite detector, see that module);
the embedder is zoo:table3 in PyTorch (fp32) and its int8 exports in their runtimes when present
(runs/exports/zoo-table3-{onnx,intel-nuc,raspberry-pi-4}-int8; the LiteRT one is paired with the onnxruntime
detector). One thread per runtime (the robot boards' small CPUs; this host is shared), median and p90 over the
timed frames after warm-up. The frame: an LFW photo (../shared) resized to 300x300 on a grey 640x480 canvas, or a
synthetic face there when ../shared is absent (the JSON says which).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/identify_latency.py [--frames 30]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import host_description, now_iso, read_manifest, versions, write_json  # noqa: E402

LFW_FACE = ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled" / "Colin_Powell" / "Colin_Powell_0001.jpg"
DETECTOR = ROOT / "runs" / "identify" / "mtcnn"
EXPORTS = {"onnxruntime": "onnx", "openvino": "intel-nuc", "litert": "raspberry-pi-4"}
OUT = ROOT / "reports" / "identify" / "latency.json"
STEPS = ("detect", "align", "embed", "match")


def frame() -> tuple[np.ndarray, str]:
    import cv2

    canvas = np.full((480, 640, 3), 110, np.uint8)
    if LFW_FACE.is_file():
        from compress.identify.pipeline import read_image

        face, what = read_image(LFW_FACE), f"LFW {LFW_FACE.name} resized to 300x300"
    else:
        from compress.data.synthetic import render

        face, what = render(1, 0), "SYNTHETIC face (built-in generator) resized to 300x300"
    canvas[90:390, 170:470] = cv2.resize(face, (300, 300), interpolation=cv2.INTER_AREA)
    return canvas, f"640x480 grey canvas with {what} at (170, 90)"


def chains(threads: int) -> list[tuple[str, str, object]]:
    """(detector runtime, embedder label, EmbedModel) pairs to time."""
    from compress.identify.embedder import load_embed_model

    out = [("pytorch", "pytorch", load_embed_model("zoo:table3"))]
    for runtime, target in EXPORTS.items():
        folder = ROOT / "runs" / "exports" / f"zoo-table3-{target}-int8"
        if (folder / "manifest.json").is_file():
            det = runtime if runtime != "litert" else "onnxruntime"
            model = load_embed_model(folder, threads=threads)
            if runtime == "openvino":  # timed on the kernels this host has (int8 "auto" may emulate them)
                import dataclasses

                from compress.export.runtimes import load_runner

                native = load_runner(folder / read_manifest(folder)["model_file"], threads=threads, int8="native")
                native.name = model.embedder.name
                model = dataclasses.replace(model, embedder=native)
            out.append((det, runtime, model))
        else:
            print(f"skipped {runtime}: {folder} not found", file=sys.stderr)
    out.append(("onnxruntime", "pytorch", out[0][2]))
    out.append(("openvino", "pytorch", out[0][2]))
    return out


def time_chain(img: np.ndarray, det_runtime: str, model, frames: int, threads: int) -> dict:
    from compress.identify.detector import load_detector
    from compress.identify.pipeline import FaceFinder, run_frame

    det = None if det_runtime == "pytorch" else load_detector(DETECTOR, det_runtime, threads)
    finder = FaceFinder(detector=det)
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(1000, 128)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    names = [f"p{i}" for i in range(1000)]
    rows = []
    for i in range(frames + 3):
        r = run_frame(img, finder, model, names, templates, threshold=0.5, flip=True)
        if len(r.faces) != 1:
            raise RuntimeError(f"{det_runtime} detector found {len(r.faces)} faces in the one-face frame")
        if i >= 3:  # warm-up frames are not timed
            rows.append(r.timings_ms)
    t = {s: [row[s] for row in rows] for s in STEPS}
    total = [sum(row[s] for s in STEPS) for row in rows]
    stat = lambda v: {"median_ms": round(float(np.median(v)), 3), "p90_ms": round(float(np.percentile(v, 90)), 3)}
    return {"detector_runtime": det_runtime, "embedder": model.describe(), "embedder_runtime": model.runtime,
            "embedder_precision": model.precision, "embedder_sha256": model.sha256, "frames": frames,
            "embedder_int8_kernels": getattr(model.embedder, "int8", "none"),
            "steps": {s: stat(v) for s, v in t.items()}, "total": stat(total),
            "face_score": round(float(r.faces[0].score), 4)}


class _Counting:
    """Wraps an MTCNN net to record the input shapes the cascade feeds it on one frame."""

    def __init__(self, net) -> None:
        self.net, self.shapes = net, []

    def __call__(self, x):
        self.shapes.append(tuple(x.shape))
        return self.net(x)


def board_estimates(img: np.ndarray) -> dict:
    """Per-board estimates from compress.bench.estimate: the embedder (zoo:table3 at each board's default
    precision, what `compress estimate` prints) and the detector's conv/linear layers at fp32 for the shapes the
    cascade ran on this frame (every PNet pyramid scale; RNet/ONet once per candidate, batch 1). Not modelled:
    PReLU, pooling, NMS, resizes, crops, the warp and Python: the detector figure is a lower bound."""
    from compress.bench.estimate import estimate_latency
    from compress.bench.reference_nets import layer_specs
    from compress.identify.pipeline import FaceFinder
    from compress.model.io import load_model
    from compress.targets import list_targets

    finder = FaceFinder()
    det = finder.aligner.detector
    wrapped = {n: _Counting(getattr(det, n)) for n in ("pnet", "rnet", "onet")}
    try:
        for n, w in wrapped.items():
            setattr(det, n, w)
        finder.detect(img)
    finally:
        for n, w in wrapped.items():
            setattr(det, n, w.net)
    layers = []
    for n, w in wrapped.items():
        for shape in w.shapes:
            one = layer_specs(w.net, tuple(shape[1:]))
            layers += one * int(shape[0])
    model = load_model("zoo:table3")
    out = {"detector_calls": {n: [list(s) for s in w.shapes] for n, w in wrapped.items()},
           "detector_macs": int(sum(layer.macs for layer in layers)), "boards": {}}
    for t in list_targets():
        emb = estimate_latency(model, t)
        d = estimate_latency(layers, t, "fp32") if "fp32" in t.precisions else None
        out["boards"][t.name] = {
            "embed": {k: emb.get(k) for k in ("precision", "status", "estimate_ms", "label")},
            "detect_conv_layers": ({k: d.get(k) for k in ("precision", "status", "estimate_ms", "label")} if d
                                   else {"status": f"no estimate: {t.name} does not run fp32"})}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from compress.identify.detector import export_detector

    m = read_manifest(DETECTOR)
    if m is None or m.get("format") != "compress.detector/1":
        m = export_detector(DETECTOR, overwrite=DETECTOR.exists())
    img, what = frame()
    rows = []
    for det_rt, emb_rt, model in chains(args.threads):
        rows.append(time_chain(img, det_rt, model, args.frames, args.threads))
        r = rows[-1]
        print(f"detector {det_rt:<12} embedder {emb_rt:<12} total {r['total']['median_ms']:.1f} ms "
              + " ".join(f"{s} {r['steps'][s]['median_ms']:.2f}" for s in STEPS), file=sys.stderr)
    report = {"format": "compress.identify.latency/1", "created": now_iso(), "host": host_description(),
              "measured": "on this host (not on a board), batch 1, "
                          f"{args.threads} thread(s) per runtime, perf_counter per step",
              "frame": what, "gallery": "1000 random unit templates (match cost only)",
              "detector": {"folder": str(DETECTOR.relative_to(ROOT)), "files": m.get("files"),
                           "opset": m.get("opset"), "tflite": m.get("tflite")},
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "versions": versions(), "chains": rows}
    write_json(OUT, report)  # the measurements first; the estimates below add to them
    report["estimated_per_board"] = board_estimates(img)
    write_json(OUT, report)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
