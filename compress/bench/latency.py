"""`compress bench`: latency of an exported artifact in its own runtime on the machine it runs on.

Only the runtime call is timed (input already prepared, batch 1), which is what a robot's loop pays per face.
Run on a board (TensorRT on a Jetson, LiteRT on a Pi, OpenVINO on a NUC) the same JSON is the report's
"measured on board" input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifacts import _pkg, file_sha256, host_description, now_iso
from ..errors import UserError
from .timing import measure

BENCH_FORMAT = "compress.bench/1"
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai-edge-litert"}


def _export_manifest(path: Path) -> tuple[dict[str, Any], Path]:
    """(manifest, model file) for an export folder; a bare model file gets a minimal manifest."""
    if path.is_dir():
        mf = path / "manifest.json"
        if not mf.is_file():
            raise UserError(f"{path} is not an export folder (no manifest.json); pass one written by `compress export`")
        try:
            manifest = json.loads(mf.read_text())
        except ValueError:
            raise UserError(f"{mf} is not valid JSON; re-run `compress export`") from None
        model = path / manifest.get("model_file", "")
        if not model.is_file():
            raise UserError(f"{path}: model file {manifest.get('model_file')!r} named in manifest.json is missing")
        return manifest, model
    if path.is_file():
        return {}, path
    raise UserError(f"{path} not found; pass an export folder (from `compress export`) or a .onnx/.xml/.tflite file")


# How each runtime is called when timed: the lowest-overhead call its Python API offers, so the figure is the
# network, not the binding (issue 17 measured ~0.2 ms of Python-side cost per call with the plain APIs).
CALLS = {"openvino": "InferRequest.infer() with the input tensor set once (no per-call dict or copy)",
         "litert": "Interpreter.invoke() with the input tensor set once",
         "onnxruntime": "InferenceSession.run_with_iobinding() with input and output bound once to "
                        "pre-allocated CPU buffers"}


def _invoker(runner, image: np.ndarray) -> Callable[[], Any]:
    """A closure that runs only the runtime on one prepared input (no pre/post-processing, no re-binding)."""
    from ..evaluate.embed import normalise_nchw
    from ..export.runtimes import LiteRtEmbedder, OpenVinoEmbedder, _normalise_nhwc

    if isinstance(runner, OpenVinoEmbedder):
        import openvino as ov

        req = runner.request
        req.set_input_tensor(ov.Tensor(np.ascontiguousarray(normalise_nchw(image))))
        return req.infer
    if isinstance(runner, LiteRtEmbedder):
        runner.interpreter.set_tensor(runner.inp["index"], runner.quantize_input(_normalise_nhwc(image)))
        return runner.interpreter.invoke
    return _ort_bound_call(runner.session, runner.input_name, normalise_nchw(image))


def _ort_bound_call(sess, input_name: str, x: np.ndarray) -> Callable[[], Any]:
    """run_with_iobinding on buffers bound once: the output buffer's shape comes from one plain run."""
    import onnxruntime as ort

    x = np.ascontiguousarray(x)
    out_meta = sess.get_outputs()[0]
    y = sess.run([out_meta.name], {input_name: x})[0]
    io = sess.io_binding()
    io.bind_cpu_input(input_name, x)
    io.bind_ortvalue_output(out_meta.name, ort.OrtValue.ortvalue_from_numpy(np.empty_like(y)))
    keep = (x, io)  # the bound numpy buffers must outlive the closure

    def run() -> None:
        sess.run_with_iobinding(keep[1])
    return run


def _prepared(path: Path, threads: int) -> tuple[dict[str, Any], Path, Any, Callable[[], Any]]:
    """(manifest, model file, runner, a call running only the runtime on one fixed random face)."""
    from ..export.runtimes import load_runner

    manifest, model = _export_manifest(path)
    runner = load_runner(model, threads=threads, int8="native")  # timing: the kernels this host really has
    image = np.random.default_rng(0).integers(0, 256, (1, runner.input_size, runner.input_size, 3), np.uint8)
    return manifest, model, runner, _invoker(runner, image)


def _check_numbers(threads: int, seconds: float, rounds: int = 1) -> None:
    """Meaningless timing settings fail before any model is loaded."""
    from ..limits import SECONDS, THREADS, Range

    THREADS.check(threads, "--threads")
    SECONDS.check(seconds, "--seconds")
    Range(1, 100, integer=True).check(rounds, "--rounds")


def bench_artifact(path: str | Path, threads: int = 0, warmup: int = 20, min_runs: int = 100,
                   min_seconds: float = 3.0, max_seconds: float = 30.0) -> dict[str, Any]:
    """Median / p90 latency (ms, batch 1) of an exported model in its runtime on this machine."""
    _check_numbers(threads=threads, seconds=min_seconds)
    path = Path(path)
    manifest, model, runner, call = _prepared(path, threads)
    stats = measure(call, warmup=warmup, min_runs=min_runs, min_seconds=min_seconds,
                    max_seconds=max_seconds)
    runtime = _runtime_of(model)
    return {
        "format": BENCH_FORMAT,
        "created": now_iso(),
        "artifact": str(path),
        "model_file": model.name,
        "model_sha256": file_sha256(model),
        "model_bytes": sum(f.stat().st_size for f in model.parent.glob(model.stem + ".*")
                           if f.suffix in (".onnx", ".xml", ".bin", ".tflite", ".engine")),
        "target": manifest.get("target", {}).get("name"),
        "precision": manifest.get("precision"),
        "runtime": runtime,
        "runtime_version": _pkg(RUNTIME_PACKAGES[runtime]),
        "measured_on": host_description(),
        "measured": "measured on this host",
        "threads": threads or f"runtime default ({os.cpu_count()} cores visible)",
        "batch": 1,
        "timed": "runtime call only (input prepared beforehand), single face, after warm-up",
        "call": CALLS[runtime],
        **_kernel_note(runner),
        **stats,
    }


def _kernel_note(runner: Any) -> dict[str, str]:
    """An int8 model (OpenVINO IR, QDQ ONNX) timed on a host without VNNI: the time is real, its embeddings are
    not (saturation)."""
    from ..export.runtimes import host_int8_saturates

    if getattr(runner, "int8", "none") == "none" or not host_int8_saturates():
        return {}
    return {"int8_kernels": "this host's x86 int8 kernels without VNNI (int16 sums saturate): the time is the "
                            "kernels' time; the embeddings they give here are not the board's (see parity.json)"}


def format_bench(r: dict[str, Any]) -> str:
    stable = "" if r["stable"] else f" (NOT settled: halves differ by {r['half_drift']:.0%})"
    return (f"{r['model_file']} [{r['target'] or '?'} {r['precision'] or ''}] {r['runtime']} {r['runtime_version']}: "
            f"median {r['median_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms over {r['runs']} runs{stable}; "
            f"measured on {r['measured_on']}, threads {r['threads']}")


def bench_compare(paths: list[str | Path], threads: int = 0, rounds: int = 5, seconds_per_round: float = 1.0,
                  warmup: int = 20) -> dict[str, Any]:
    """Latency of several artifacts measured in one run, interleaved round by round so that the machine's
    drift (other jobs, clocks) hits all of them alike; ratios are against the first artifact."""
    _check_numbers(threads=threads, seconds=seconds_per_round, rounds=rounds)
    loaded = []
    for p in paths:
        manifest, model, _, call = _prepared(Path(p), threads)
        for _ in range(warmup):
            call()
        loaded.append((Path(p), manifest, model, call))
    samples: list[list[float]] = [[] for _ in loaded]
    for _ in range(rounds):
        for i, (_, _, _, call) in enumerate(loaded):
            r = measure(call, warmup=2, min_runs=20, min_seconds=seconds_per_round, max_seconds=seconds_per_round)
            samples[i].append(r["median_ms"])
    rows = []
    base = float(np.median(samples[0]))
    for (p, manifest, model, _), s in zip(loaded, samples):
        med = float(np.median(s))
        rows.append({"artifact": str(p), "model_file": model.name, "target": manifest.get("target", {}).get("name"),
                     "precision": manifest.get("precision"), "runtime": _runtime_of(model),
                     "call": CALLS[_runtime_of(model)], "model_sha256": file_sha256(model),
                     "median_ms": med, "round_medians_ms": [round(v, 4) for v in s],
                     "ratio_to_first": med / base})
    return {"format": BENCH_FORMAT, "created": now_iso(), "measured_on": host_description(),
            "measured": "measured on this host, interleaved rounds in one run", "threads": threads or "runtime default",
            "rounds": rounds, "seconds_per_round": seconds_per_round, "batch": 1, "rows": rows}


def _runtime_of(model: Path) -> str:
    from ..export.runtimes import SUFFIX_RUNTIME

    return SUFFIX_RUNTIME[model.suffix.lower()]


def format_compare(r: dict[str, Any]) -> str:
    lines = [f"{'artifact':<40}{'runtime':<13}{'precision':<10}{'median ms':>10}{'ratio':>8}"]
    for row in r["rows"]:
        lines.append(f"{Path(row['artifact']).name:<40}{row['runtime']:<13}{row['precision'] or '?':<10}"
                     f"{row['median_ms']:>10.3f}{row['ratio_to_first']:>8.2f}")
    lines.append(f"measured on {r['measured_on']}, threads {r['threads']}, batch 1, median of {r['rounds']} "
                 f"interleaved rounds; ratio = median / first row's median")
    return "\n".join(lines)
