"""Teacher throughput: onnxruntime (one image per call, the file's fixed batch of 1) vs the converted torch module.

Per-batch latency of each point, measured interleaved (round-robin, several short rounds) in one process so that
load from other jobs falls on all points alike; prints the median latency, images/s and the ratio to
onnxruntime, with the host, the load average and library versions. onnxruntime always runs on the CPU; the torch
module runs on --device.

    .venv/bin/python benchmarks/teacher_speed.py [--threads 2] [--seconds 4] [--device cpu] [--note "shared CPU"]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from compress.artifacts import host_description, versions
from compress.evaluate.embed import OnnxEmbedder
from compress.model.onnx_torch import onnx_to_torch

TEACHER = "../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=TEACHER)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per point, over all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batches", default="1,16,64", help="torch batch sizes")
    ap.add_argument("--device", default="cpu", help="device of the torch module (onnxruntime stays on the CPU)")
    ap.add_argument("--note", default="", help="printed with the results, e.g. that the CPU was shared")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    ort = OnnxEmbedder(a.teacher, threads=a.threads)
    module = onnx_to_torch(a.teacher).to(a.device)
    batches = [int(b) for b in a.batches.split(",")]
    x = np.random.default_rng(0).normal(size=(max(batches), 3, 112, 112)).astype(np.float32)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def run_ort() -> None:
        ort.forward_nchw(x[:1])

    def torch_runner(bs: int):
        xt = torch.from_numpy(x[:bs]).to(a.device)

        @torch.no_grad()
        def run() -> None:
            module(xt)
            sync()
        return run

    points = {"onnxruntime b1 (cpu)": (1, run_ort)}
    points.update({f"torch b{bs} ({a.device})": (bs, torch_runner(bs)) for bs in batches})
    times: dict[str, list[float]] = {k: [] for k in points}
    for _, fn in points.values():  # warm-up
        for _ in range(3):
            fn()
    load = os.getloadavg()
    budget = a.seconds / a.rounds
    for _ in range(a.rounds):
        for name, (_, fn) in points.items():
            end = time.perf_counter() + budget
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    v = versions()
    print(f"teacher {a.teacher}: onnxruntime vs torch module converted by compress.model.onnx_torch")
    print(f"host: {host_description()}; threads {a.threads}; load average {load[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"versions: torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, onnx {v.get('onnx')}, "
          f"numpy {v.get('numpy')}, python {v['python']}")
    if a.device.startswith("cuda"):
        print(f"accelerator: {torch.cuda.get_device_name(a.device)}")
    if a.note:
        print(f"note: {a.note}")
    print(f"{a.rounds} interleaved rounds, {a.seconds:g} s per point in all; median per-batch latency")
    print(f"{'point':<24}{'batches':>8}{'ms/batch':>10}{'images/s':>10}{'vs ort':>8}")
    base = None
    for name, (bs, _) in points.items():
        med = statistics.median(times[name])
        ips = bs / med
        base = base or ips
        print(f"{name:<24}{len(times[name]):>8}{med * 1e3:>10.2f}{ips:>10.1f}{ips / base:>7.2f}x")


if __name__ == "__main__":
    main()
