"""Score the runs a GPU machine trained (benchmarks/gpu_runs.sh) on LFW here, where the aligned LFW images are.

Each run folder (or ablation folder of variant runs) whose manifest has no LFW result gets one, measured with the
same protocol and code as a run evaluated where it trained (LFW View 2, 10-fold, flip fusion, PyTorch), plus its
ROC curve; the manifest records that training and LFW scoring ran on different hosts.

Usage: python benchmarks/gpu_collect.py runs/gpu-t3-80-dw500 runs/gpu-ablation-24ep ... [--lfw ../shared/data/lfw]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compress.artifacts import host_description, write_json  # noqa: E402
from compress.evaluate.embed import TorchEmbedder  # noqa: E402
from compress.evaluate.lfw import evaluate_lfw  # noqa: E402
from compress.model.io import load_model  # noqa: E402


def score(run: Path, lfw: Path) -> None:
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if manifest["metrics"].get("lfw"):
        print(f"{run}: already scored")
        return
    model = load_model(run).eval()
    result = evaluate_lfw(TorchEmbedder(model, name=f"{run.name} ({manifest['schedule']['name']})"), lfw,
                          progress=False, roc_path=run / "lfw_roc.png")
    manifest["metrics"]["lfw"] = result
    manifest["lfw_scored_on"] = {"host": host_description(), "by": "benchmarks/gpu_collect.py",
                                 "trained_on": manifest.get("accelerator") or manifest.get("device")}
    write_json(manifest_path, manifest)
    for key, line in result["summary"].items():
        print(f"{run}: LFW View 2 ({'flip fusion' if key == 'flip' else 'no flip'}; pytorch, measured on "
              f"{result['host']}; trained on {manifest['lfw_scored_on']['trained_on']}): {line}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    args = ap.parse_args()
    for run in args.runs:
        runs = [run] if (run / "manifest.json").is_file() else sorted(p.parent for p in run.glob("*/manifest.json"))
        if not runs:
            sys.exit(f"error: {run} holds no finished run (manifest.json); train it first")
        for r in runs:
            score(r, args.lfw)


if __name__ == "__main__":
    main()
