"""Where OpenVINO's CPU time goes, per layer type and per kernel, for each IR given (PERF_COUNT, 1 thread,
batch 1, 300 timed inferences after 50 warm-up), and whether the host's x86 int8 dot products saturate (no VNNI).
Shares of the summed layer time are what to read; absolute microseconds move with the host's load.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/openvino_profile.py A/model.xml B/model.xml [--out F.json]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import file_sha256, host_description, now_iso, versions, write_json  # noqa: E402
from compress.export.runtimes import host_int8_saturates  # noqa: E402


def profile(path: Path, runs: int = 300) -> dict:
    import openvino as ov

    request = ov.Core().compile_model(str(path), "CPU", {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1}) \
        .create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, 112, 112)).astype(np.float32)
    for _ in range(50):
        request.infer({0: x})
    by_type, by_kernel = collections.Counter(), collections.Counter()
    for _ in range(runs):
        request.infer({0: x})
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                us = p.real_time.total_seconds() * 1e6
                by_type[p.node_type] += us
                by_kernel[p.exec_type] += us
    total = sum(by_type.values())
    share = lambda c: {k: round(100 * v / total, 1) for k, v in c.most_common()}
    return {"model": str(path), "model_sha256": file_sha256(path.with_suffix(".bin")),
            "layer_time_us_per_inference": round(total / runs, 1), "share_by_layer_type_pct": share(by_type),
            "share_by_kernel_pct": share(by_kernel)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "int8-speed" / "openvino_profile.json")
    args = ap.parse_args()
    rows = [profile(m) for m in args.models]
    for r in rows:
        print(r["model"], r["layer_time_us_per_inference"], "us;", r["share_by_kernel_pct"])
    write_json(args.out, {"created": now_iso(), "host": host_description(), "load_average": os.getloadavg(),
                          "host_int8_saturates": host_int8_saturates(), "versions": versions(),
                          "command": "benchmarks/openvino_profile.py " + " ".join(sys.argv[1:]), "models": rows})


if __name__ == "__main__":
    main()
