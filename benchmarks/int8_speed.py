"""int8 vs float latency of exported face models, per runtime, interleaved in one run, with per-op profiles.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_speed.py EXPORT_DIR [EXPORT_DIR ...] [--qoperator]
        [--rounds 7] [--seconds 0.5] [--out reports/int8-speed]

EXPORT_DIR: folders written by `compress export` (their manifest names the model file and precision). Every
variant is loaded with 1 thread and timed through the lowest-overhead call of its runtime (compress.bench.latency
CALLS), round by round, so drift on a shared host hits all variants alike; ratios int8/float are per runtime and
per round. Batch 1 and batch 32 (a gallery enrolment): batch 32 reshapes the model where the runtime allows it.

Per-op profiles (where the time goes): onnxruntime's SessionOptions.enable_profiling (per node, with the op types
the optimised graph kept: QLinearConv = fused int8, DequantizeLinear -> Conv -> QuantizeLinear = float conv between
Q/DQ), OpenVINO's PERF_COUNT (per layer: exec type says which kernel ran, e.g. jit_avx512_I8 vs jit_avx512_FP32),
LiteRT's op list (the installed ai-edge-litert exposes no per-op timing; the op list shows QUANTIZE / DEQUANTIZE
islands and what XNNPACK took). Cross-checks: OpenVINO's benchmark_app and litert-benchmark on the same files.

--qoperator: also quantize the fp32 ONNX with onnxruntime.quantization (QOperator format, per-channel, calibrated on
the built-in synthetic faces) and time it as a further onnxruntime int8 variant (an experiment, not an export).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compress.artifacts import file_sha256, host_description, now_iso
from compress.bench.latency import CALLS, _export_manifest, _invoker, _ort_bound_call, _runtime_of
from compress.bench.timing import measure
from compress.export.runtimes import load_runner

BATCHES = (1, 32)


# ---------------------------------------------------------------- variants
def load_variant(model: Path, precision: str, batch: int) -> tuple[Callable[[], Any], str]:
    """(a call running the model on one prepared batch, how batch was achieved)."""
    runtime = _runtime_of(model)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (batch, 112, 112, 3), np.uint8)
    if batch == 1:
        return _invoker(load_runner(model, threads=1, int8="native"), image[:1]), "native batch 1"
    try:
        if runtime == "openvino":
            return _ov_batch(model, image), f"model.reshape to batch {batch}"
        if runtime == "litert":
            return _litert_batch(model, image), f"resize_tensor_input to batch {batch}"
        return _ort_batch(model, image), f"input and output batch dims set to {batch} in a copy of the graph"
    except Exception as e:  # the export is static: its channel-shuffle Reshape hard-codes batch 1
        one = _invoker(load_runner(model, threads=1, int8="native"), image[:1])

        def seq() -> None:
            for _ in range(batch):
                one()
        return seq, (f"{batch} sequential batch-1 calls (reshaping to batch {batch} failed: "
                     f"{str(e).splitlines()[0][:120]})")


def _ov_batch(model: Path, image: np.ndarray) -> Callable[[], Any]:
    import openvino as ov

    from compress.evaluate.embed import normalise_nchw

    core = ov.Core()
    m = core.read_model(str(model))
    m.reshape({m.input(0): [len(image), 3, 112, 112]})
    req = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 1}).create_infer_request()
    req.set_input_tensor(ov.Tensor(np.ascontiguousarray(normalise_nchw(image))))
    return req.infer


def _litert_batch(model: Path, image: np.ndarray) -> Callable[[], Any]:
    from compress.export.runtimes import LiteRtEmbedder, _normalise_nhwc

    r = LiteRtEmbedder(model, threads=1)
    it = r.interpreter
    it.resize_tensor_input(r.inp["index"], [len(image), 112, 112, 3])
    it.allocate_tensors()
    it.set_tensor(r.inp["index"], r.quantize_input(_normalise_nhwc(image)))
    return it.invoke


def _ort_batch(model: Path, image: np.ndarray) -> Callable[[], Any]:
    import onnx
    import onnxruntime as ort

    from compress.evaluate.embed import normalise_nchw

    g = onnx.load(str(model))
    for v in list(g.graph.input) + list(g.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = len(image)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(g.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return _ort_bound_call(sess, sess.get_inputs()[0].name, normalise_nchw(image))


def interleaved(variants: list[dict[str, Any]], rounds: int, seconds: float) -> None:
    """Fill each variant's round medians (ms), all variants timed in every round, in turn."""
    for _ in range(rounds):
        for v in variants:
            runs = 10 if v["batch"] == 1 else 3  # a batch-32 call is 32 faces' worth of work
            r = measure(v["call"], warmup=1, min_runs=runs, min_seconds=seconds, max_seconds=seconds)
            v["rounds_ms"].append(r["median_ms"])


# ---------------------------------------------------------------- profiles
def ort_profile(model: Path, n: int = 300) -> dict[str, Any]:
    """Per op type: total µs over n calls (onnxruntime profiler), and the op types of the optimised graph."""
    import onnx
    import onnxruntime as ort

    from compress.evaluate.embed import normalise_nchw

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.enable_profiling = True
    opt_path = Path("/tmp") / f"ort_opt_{file_sha256(model)[:12]}.onnx"
    opts.optimized_model_filepath = str(opt_path)
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    x = normalise_nchw(np.random.default_rng(0).integers(0, 256, (1, 112, 112, 3), np.uint8))
    name = sess.get_inputs()[0].name
    for _ in range(n):
        sess.run(None, {name: x})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + float(e.get("dur", 0))
    graph_ops: dict[str, int] = {}
    for node in onnx.load(str(opt_path), load_external_data=False).graph.node:
        graph_ops[node.op_type] = graph_ops.get(node.op_type, 0) + 1
    opt_path.unlink(missing_ok=True)
    total = sum(by_op.values()) or 1.0
    return {"tool": "onnxruntime SessionOptions.enable_profiling (per-node kernel time)", "calls": n,
            "us_per_call_by_op": {k: round(v / n, 2) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "share_by_op": {k: round(v / total, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "optimised_graph_op_counts": dict(sorted(graph_ops.items(), key=lambda kv: -kv[1]))}


def ov_profile(model: Path, n: int = 300) -> dict[str, Any]:
    """Per executed-kernel type: µs per call (OpenVINO PERF_COUNT, last call's counters averaged over n)."""
    import openvino as ov

    from compress.evaluate.embed import normalise_nchw

    core = ov.Core()
    c = core.compile_model(str(model), "CPU", {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1})
    req = c.create_infer_request()
    req.set_input_tensor(ov.Tensor(normalise_nchw(np.random.default_rng(0).integers(0, 256, (1, 112, 112, 3),
                                                                                    np.uint8))))
    acc: dict[tuple[str, str], float] = {}
    for _ in range(n):
        req.infer()
        for p in req.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                key = (p.node_type, p.exec_type)
                acc[key] = acc.get(key, 0.0) + p.real_time.total_seconds() * 1e6
    total = sum(acc.values()) or 1.0
    rows = sorted(acc.items(), key=lambda kv: -kv[1])
    return {"tool": "OpenVINO PERF_COUNT (InferRequest.get_profiling_info, executed layers)", "calls": n,
            "us_per_call_by_layer_type_and_kernel": {f"{t} [{e}]": round(v / n, 2) for (t, e), v in rows},
            "share": {f"{t} [{e}]": round(v / total, 3) for (t, e), v in rows}}


def litert_ops(model: Path) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    ops: dict[str, int] = {}
    for o in it._get_ops_details():  # noqa: SLF001 (the only op listing the Python API offers)
        ops[o["op_name"]] = ops.get(o["op_name"], 0) + 1
    return {"tool": "ai_edge_litert Interpreter op list after XNNPACK delegation (no per-op timing in the "
                    "installed Python API)", "op_counts": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}


# ---------------------------------------------------------------- runtimes' own tools
def benchmark_app(model: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "benchmark_app"
    cmd = [str(exe), "-m", str(model), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", "1",
           "-api", "sync", "-t", "5"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    med = re.search(r"Median:\s*([\d.]+)\s*ms", run.stdout)
    out = {"tool": "OpenVINO benchmark_app " + " ".join(cmd[2:]), "median_ms": float(med.group(1)) if med else None}
    if not med:  # say why, not just None
        out["failed"] = f"exit {run.returncode}: " + ((run.stderr or run.stdout).strip().splitlines() or [""])[-1][:200]
    return out


def litert_benchmark(model: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "litert-benchmark"
    js = Path("/tmp") / f"litert_{file_sha256(model)[:12]}.json"
    cmd = [str(exe), "--model", str(model), "--num_threads", "1", "--num_runs", "500", "--warmup_runs", "20",
           "--result_json", str(js)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        res = json.loads(js.read_text())
    except (OSError, ValueError):
        return {"tool": "litert-benchmark", "error": (run.stderr or run.stdout)[-300:]}
    return {"tool": "litert-benchmark " + " ".join(cmd[2:-2]), "result": res}


# ---------------------------------------------------------------- QOperator experiment
def qoperator_variant(fp32_onnx: Path, out: Path) -> Path:
    """fp32 ONNX -> int8 QOperator ONNX (onnxruntime.quantization, per-channel, synthetic calibration faces)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from compress.data.sources import synthetic_faces
    from compress.evaluate.embed import normalise_nchw

    faces = synthetic_faces(8, 8, seed=11, progress=False).images[:64]
    name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: normalise_nchw(faces[i:i + 1])} for i in range(len(faces))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exports", nargs="+", type=Path)
    ap.add_argument("--qoperator", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("reports/int8-speed"))
    ap.add_argument("--no-profiles", action="store_true")
    args = ap.parse_args()
    files: list[tuple[str, str, Path]] = []
    for d in args.exports:
        manifest, model = _export_manifest(d)
        files.append((d.name, manifest.get("precision", "?"), model))
    if args.qoperator:
        fp32 = next((m for _, p, m in files if m.suffix == ".onnx" and p == "fp32"), None)
        if fp32 is not None:
            q = qoperator_variant(fp32, args.out / "table3-int8-qoperator.onnx")
            files.append(("onnx-int8-qoperator (onnxruntime.quantization)", "int8", q))
    variants = []
    for label, prec, model in files:
        for b in BATCHES:
            try:
                call, how = load_variant(model, prec, b)
            except Exception as e:  # a runtime that cannot reshape: recorded, not fatal
                variants.append({"label": label, "precision": prec, "batch": b, "model": model, "error":
                                 str(e).splitlines()[0][:200], "rounds_ms": []})
                continue
            for _ in range(5):
                call()
            variants.append({"label": label, "precision": prec, "batch": b, "model": model, "call": call,
                             "how": how, "rounds_ms": []})
    live = [v for v in variants if "call" in v]
    t0 = time.time()
    interleaved(live, args.rounds, args.seconds)
    rows = []
    for v in variants:
        r = {k: (str(v[k]) if k == "model" else v[k]) for k in ("label", "precision", "batch", "model", "rounds_ms")}
        r.update(runtime=_runtime_of(v["model"]), model_sha256=file_sha256(v["model"]),
                 call=CALLS[_runtime_of(v["model"])], batch_how=v.get("how"), error=v.get("error"))
        if v["rounds_ms"]:
            r["median_ms"] = float(np.median(v["rounds_ms"]))
            r["per_face_ms"] = r["median_ms"] / v["batch"]
        rows.append(r)
    doc: dict[str, Any] = {"format": "compress.int8-speed/1", "created": now_iso(), "measured_on": host_description(),
                           "measured": "measured on this host, 1 thread, variants interleaved round by round",
                           "rounds": args.rounds, "seconds_per_round": args.seconds,
                           "timing_wall_s": round(time.time() - t0, 1), "rows": rows}
    if not args.no_profiles:
        doc["profiles"] = {}
        for label, prec, model in files:
            rt = _runtime_of(model)
            prof = (ort_profile(model) if rt == "onnxruntime" else ov_profile(model) if rt == "openvino"
                    else litert_ops(model))
            tool = (benchmark_app(model) if rt == "openvino" else litert_benchmark(model) if rt == "litert" else None)
            doc["profiles"][label] = {"precision": prec, "runtime": rt, "profile": prof, "runtime_tool": tool}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_speed.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(summary(doc))


def summary(doc: dict[str, Any]) -> str:
    lines = [f"measured on {doc['measured_on']}, 1 thread, median of {doc['rounds']} interleaved rounds",
             f"{'variant':58s}{'prec':6s}{'batch':>6s}{'ms':>10s}{'ms/face':>10s}"]
    for r in doc["rows"]:
        ms = f"{r['median_ms']:10.3f}{r['per_face_ms']:10.3f}" if r.get("median_ms") else f"  {r.get('error')}"
        lines.append(f"{r['label'][:57]:58s}{r['precision']:6s}{r['batch']:>6d}{ms}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
