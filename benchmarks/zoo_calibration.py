"""Does the offline int8 path cost accuracy? zoo:table3 quantized (NNCF PTQ, same settings) with the built-in
synthetic calibration faces (what `compress quantize` uses without --calibration, so int8 works on a fresh clone
without ../shared) vs 256 aligned CelebA training photos, each int8 model scored on LFW (PyTorch fake-quant,
flip fusion, 10-fold). Writes reports/zoo/table3-int8-calibration.json.
    .venv/bin/python benchmarks/zoo_calibration.py            (needs ../shared; about 5 min on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import host_description, now_iso, versions, write_json  # noqa: E402
from compress.evaluate.embed import TorchEmbedder  # noqa: E402
from compress.evaluate.lfw import evaluate_lfw  # noqa: E402
from compress.quantize import quantize_artifact  # noqa: E402
from compress.quantize.artifact import load_quantized  # noqa: E402
from compress.zoo import load_entry  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
ARMS = {"synthetic (built-in, offline)": dict(calibration_spec=None),
        "CelebA-299 photos (aligned)": dict(calibration_spec=str(SHARED / "celeba-299"), align=True)}


def main() -> None:
    entry = load_entry("table3")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kw) in enumerate(ARMS.items()):
            m = quantize_artifact("zoo:table3", Path(tmp) / f"q{i}", n_calibration=256, threads=1, progress=False, **kw)
            art = load_quantized(Path(tmp) / f"q{i}")
            lfw = evaluate_lfw(TorchEmbedder(art.qmodel, name=f"zoo:table3 int8 ({name})"), SHARED / "lfw", flip=True)
            r = lfw["results"]["flip"]
            rows[name] = {"lfw_flip": {k: r[k] for k in ("accuracy_mean", "accuracy_std", "tar_at_far")},
                          "float_vs_int8_cosine": m.get("metrics", {}).get("cosine"),
                          "calibration": m.get("calibration") or m.get("metrics", {}).get("calibration")}
            print(f"{name}: LFW {lfw['summary']['flip']}")
    out = {"format": "compress.zoo-calibration/1", "created": now_iso(), "model": "zoo:table3",
           "model_sha256": entry.sha256, "float_lfw_flip": entry.manifest["lfw"]["flip"]["accuracy_mean"],
           "quantization": "NNCF PTQ int8, 256 calibration faces, stem and embedding layer kept float",
           "evaluation": "LFW View 2, 6000 pairs, 10-fold, flip fusion, PyTorch NNCF fake-quant model",
           "host": host_description(), "versions": versions(), "arms": rows}
    write_json(ROOT / "reports" / "zoo" / "table3-int8-calibration.json", out)


if __name__ == "__main__":
    main()
