"""Issue 26 item 2: pruned MobileFaceNets compared after the *same* fine-tune, in one table.

Reads finished `compress train` run folders (each distilled from a pruned artifact with the same recipe and
epochs) and writes reports/mfn/finetune-comparison.{json,md}: per run the init model (allocation, MACs, params
from its prune manifest), the augmentation policy, images/s, the final epoch's distillation 1 - cos, and LFW
(10-fold, flip and no flip, TAR@FAR=1e-3) from the run's own evaluation. Runs differing in anything but the
init model and the augmentation policy are refused (they would not be the same fine-tune).

    .venv/bin/python benchmarks/mfn_finetune_table.py runs/aug/mirror runs/aug/mirror-uniform runs/aug/light
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from compress.artifacts import atomic_write_text, write_json  # noqa: E402
from zoo_build import _run_summary  # noqa: E402  (one reading of a train run's manifest)

OUT = ROOT / "reports" / "mfn"
VARIED = ("init_model", "augment_policy", "threads")  # what may differ between compared runs


def _row(run: Path) -> dict[str, Any]:
    m = json.loads((run / "manifest.json").read_text())
    s = _run_summary(run.resolve())
    init = Path(s["init_model"]) if Path(s["init_model"]).is_absolute() else ROOT / s["init_model"]
    p = _run_summary(init)
    lfw = m["metrics"]["lfw"]
    return {"run": str(run), "init_model": s["init_model"], "allocation": p["method"]["budget"]["allocation"],
            "macs": p["macs"]["after"], "params": p["params"]["after"],
            "augment_policy": s["config"]["augment_policy"], "epochs": len(s["images_per_s"]),
            "images_per_s": s["images_per_s"], "train_seconds": s["train_seconds"],
            "distill_1_minus_cos": [round(e["distill_loss"], 4) for e in m["history"]],
            "lfw_flip": lfw["results"]["flip"]["accuracy_mean"], "lfw_flip_std": lfw["results"]["flip"]["accuracy_std"],
            "lfw_no_flip": lfw["results"]["no_flip"]["accuracy_mean"],
            "tar_1e-3_flip": lfw["results"]["flip"]["tar_at_far"]["1e-3"], "host": s["host"],
            "config": {k: v for k, v in s["config"].items() if k not in VARIED}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--name", default="finetune-comparison")
    args = ap.parse_args()
    rows = [_row(r) for r in args.runs]
    for r in rows[1:]:
        diff = {k for k in r["config"] if r["config"][k] != rows[0]["config"].get(k)} - {"init_model"}
        if diff:
            sys.exit(f"{r['run']} differs from {rows[0]['run']} in {sorted(diff)}: not the same fine-tune")
    lines = ["| init (pruned) | allocation | MACs | params | augmentation | epochs | images/s | distill 1 - cos "
             "(last epoch) | LFW flip | LFW no flip | TAR@1e-3 flip |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['init_model']} | {r['allocation']} | {r['macs']:,} | {r['params']:,} | {r['augment_policy']} "
                     f"| {r['epochs']} | {'/'.join(f'{v:g}' for v in r['images_per_s'])} | "
                     f"{r['distill_1_minus_cos'][-1]:.3f} | {100 * r['lfw_flip']:.2f} +- {100 * r['lfw_flip_std']:.2f} "
                     f"| {100 * r['lfw_no_flip']:.2f} | {100 * r['tar_1e-3_flip']:.2f} |")
    cfg = rows[0]["config"]
    head = (f"Same fine-tune for every row: recipe mfn-distill, {cfg['epochs']} epoch(s), lr {cfg['lr']:g} "
            f"({cfg['lr_schedule']}), batch {cfg['batch_size']}, distill weight {cfg['distill_weight']:g}, "
            f"{cfg['teacher_views']} teacher views; host {rows[0]['host']}; LFW View 2 10-fold, MTCNN-aligned, "
            f"pytorch runtime. Produced by `benchmarks/mfn_finetune_table.py {' '.join(map(str, args.runs))}`.\n\n")
    write_json(OUT / f"{args.name}.json", {"rows": rows, "produced_by": "benchmarks/mfn_finetune_table.py"})
    atomic_write_text(OUT / f"{args.name}.md", head + "\n".join(lines) + "\n")
    print(head + "\n".join(lines))


if __name__ == "__main__":
    main()
