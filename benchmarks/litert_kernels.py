"""LiteRT (XNNPACK) int8 vs fp32 per kernel: the per-op view the installed ai-edge-litert cannot give for a whole
model (its Python interpreter has no op profiler, and litert-benchmark has no per-op option).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/litert_kernels.py [--rounds 15] [--seconds 0.2]
        [--out reports/int8-speed/litert_kernels.json]

Each kernel is one conv (+ ReLU6 where the network has one) at a shape of zoo:table3's costliest layers, plus
wide reference layers of the same kinds, converted by litert-torch to a float .tflite and to an int8 one through
the export's own PT2E quantizer (compress.export.formats._pt2e_quantizer, calibrated on random inputs: timing
only). All variants are timed interleaved, 1 thread, round by round; the ratio int8 / fp32 is per round.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compress.artifacts import host_description, now_iso, write_json
from compress.bench.timing import measure

# name, (cin, cout, kernel, stride, groups, spatial, relu6); the first six are table3's costliest convs by MACs
KERNELS = {
    "stem 3x3 s2, 3->32 @112": (3, 32, 3, 2, 1, 112, True),
    "expand 1x1, 8->48 @56": (8, 48, 1, 1, 1, 56, True),
    "depthwise 3x3, 32 @56": (32, 32, 3, 1, 32, 56, True),
    "project 1x1, 32->8 @56": (32, 8, 1, 1, 1, 56, False),
    "expand 1x1, 12->72 @28": (12, 72, 1, 1, 1, 28, True),
    "head 1x1, 128->1280 @4": (128, 1280, 1, 1, 1, 4, True),
    "wide 1x1, 256->256 @14 (reference)": (256, 256, 1, 1, 1, 14, True),
    "wide depthwise 3x3, 256 @14 (reference)": (256, 256, 3, 1, 256, 14, True),
}


class _Kernel(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, groups: int, relu6: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups)
        self.act = nn.ReLU6() if relu6 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC in and out: the converter then needs no TRANSPOSE
        return self.act(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


def convert(spec: tuple, int8: bool, path: Path) -> Path:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from compress.export.formats import _pt2e_quantizer

    cin, cout, k, s, groups, hw, relu6 = spec
    torch.manual_seed(0)
    model = _Kernel(cin, cout, k, s, groups, relu6).eval()
    x = torch.randn(1, hw, hw, cin)
    if not int8:
        litert_torch.convert(model, (x,)).export(str(path))
        return path
    wrapper = nn.Sequential()  # _pt2e_quantizer's keep-float prefixes are "model.*": nothing is kept float
    wrapper.model = model
    ep = torch.export.export(wrapper.eval(), (x,)).module()
    quantizer, _ = _pt2e_quantizer([])
    prepared = quantize_pt2e.prepare_pt2e(ep, quantizer)
    with torch.no_grad():
        for _ in range(8):
            prepared(torch.randn(1, hw, hw, cin))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(converted, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return path


def invoker(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    shape, dtype = inp["shape"], inp["dtype"]
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if dtype != np.float32:
        data = np.clip(np.round(data / inp["quantization"][0]) + inp["quantization"][1], -128, 127).astype(dtype)
    it.set_tensor(inp["index"], data)
    ops = sorted({o["op_name"] for o in it._get_ops_details()})
    return it.invoke, ops


def time_call(call, seconds: float) -> float:
    """Median microseconds of `call` over `seconds` (after a warm-up), by compress.bench.timing.measure."""
    return measure(call, warmup=5, min_runs=5, min_seconds=seconds, max_seconds=seconds)["median_ms"] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=Path("reports/int8-speed/litert_kernels.json"))
    args = ap.parse_args()
    calls, ops = {}, {}
    with tempfile.TemporaryDirectory() as td:
        for i, (name, spec) in enumerate(KERNELS.items()):
            for prec in ("fp32", "int8"):
                path = convert(spec, prec == "int8", Path(td) / f"k{i}-{prec}.tflite")
                calls[(name, prec)], ops[(name, prec)] = invoker(path)
        us = {key: [] for key in calls}
        for r in range(args.rounds):
            for key, call in calls.items():
                us[key].append(time_call(call, args.seconds))
            print(f"round {r + 1}/{args.rounds}", flush=True)
    rows = []
    for name, spec in KERNELS.items():
        f, q = np.array(us[(name, "fp32")]), np.array(us[(name, "int8")])
        cin, cout, k, s, groups, hw, _ = spec
        macs = (hw // s) ** 2 * cout * (cin // groups) * k * k
        ratio = q / f
        rows.append({"kernel": name, "macs": int(macs), "fp32_us": round(float(np.median(f)), 2),
                     "int8_us": round(float(np.median(q)), 2), "int8_over_fp32": round(float(np.median(ratio)), 3),
                     "ratio_iqr": [round(float(np.percentile(ratio, 25)), 3), round(float(np.percentile(ratio, 75)), 3)],
                     "fp32_gmacs": round(macs / np.median(f) / 1e3, 2), "int8_gmacs": round(macs / np.median(q) / 1e3, 2),
                     "ops_fp32": ops[(name, "fp32")], "ops_int8": ops[(name, "int8")]})
        print(f"{name:42s} fp32 {rows[-1]['fp32_us']:8.1f} us  int8 {rows[-1]['int8_us']:8.1f} us  "
              f"int8/fp32 {rows[-1]['int8_over_fp32']:.2f}  ({rows[-1]['fp32_gmacs']} / {rows[-1]['int8_gmacs']} GMAC/s)")
    write_json(args.out, {"created": now_iso(), "measured_on": host_description(), "runtime": "ai-edge-litert "
               "Interpreter (XNNPACK), 1 thread, invoke() on a set input", "rounds": args.rounds,
               "seconds_per_round": args.seconds, "kernels": rows,
               "how": "one conv (+ ReLU6) per .tflite, float and PT2E int8 (the export's quantizer), interleaved "
                      "rounds; median per variant, ratio per round (median and interquartile range)"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
