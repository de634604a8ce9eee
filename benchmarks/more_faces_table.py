"""Issue 14's table: one row per data change, from the runs of benchmarks/more_faces_runs.sh and the zoo's
LFW record. LFW View 2, 10-fold, flip and no flip, TAR@FAR=1e-3; each row's per-fold gain over the control row
(same folds, so fold difficulty cancels: mean +- std of the 10 paired differences).
Writes reports/more-faces/table.json and prints the Markdown table. Usage: python benchmarks/more_faces_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compress.artifacts import file_sha256, now_iso, write_json

ROOT = Path(__file__).resolve().parents[1]
ROWS = [  # label, run folder (None = the zoo's record)
    ("zoo:table3 as shipped (start of every row)", None),
    ("control: + fine-tune on its own data (CelebA-299 + LFW-unpaired)", "runs/more-faces-ft"),
    ("+ UTKFace adults (unlabelled)", "runs/more-faces-ft-utk"),
    ("+ AsianFaces (unlabelled)", "runs/more-faces-ft-asian"),
    ("+ UTKFace + AsianFaces", "runs/more-faces-ft-both"),
    ("+ UTKFace + AsianFaces, seed 1", "runs/more-faces-ft-both-seed1"),
    ("+ UTKFace, seed 1", "runs/more-faces-ft-utk-seed1"),
    ("+ UTKFace + AsianFaces, AsianFaces' 728 identities also in the margin loss", "runs/more-faces-ft-asian-labels"),
]


def _row(label: str, run: str | None) -> dict | None:
    if run is None:
        lfw = json.loads((ROOT / "reports/zoo/table3-lfw.json").read_text())
        return {"row": label, "run": "compress/zoo/table3", "model_sha256": lfw["model_sha256"], "lfw": lfw,
                "images": 7453, "dropped_near_lfw": None, "epochs": 35}
    m_path = ROOT / run / "manifest.json"
    if not m_path.is_file():
        return None
    m = json.loads(m_path.read_text())
    leak = m["data"].get("lfw_leakage_filter") or {}
    return {"row": label, "run": run, "model_sha256": file_sha256(ROOT / run / "model.pt"), "lfw": m["metrics"]["lfw"],
            "images": m["data"]["images"], "dropped_near_lfw": leak.get("dropped"),
            "dropped_per_source": {k: v["dropped"] for k, v in leak.get("per_source", {}).items()},
            "leakage_cut": leak.get("threshold"), "epochs": m["config"]["epochs"], "seed": m["config"]["seed"],
            "steps": sum(1 for _ in m["history"]) and m["config"]["epochs"] * (m["data"]["images"] // m["config"]["batch_size"]),
            "train_s": m["metrics"].get("train_seconds_this_run")}


def main() -> None:
    rows = [r for r in (_row(*spec) for spec in ROWS) if r is not None]
    control = next((r for r in rows if r["run"] == "runs/more-faces-ft"), None)
    lines = ["| data | images (dropped near LFW) | LFW flip | no flip | TAR@1e-3 | pp over control, paired folds: "
             "flip / no flip (folds better) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        res = r["lfw"]["results"]
        f, nf = res["flip"], res["no_flip"]
        r["flip"], r["no_flip"] = 100 * f["accuracy_mean"], 100 * nf["accuracy_mean"]
        r["tar_1e-3"] = 100 * f["tar_at_far"]["1e-3"]
        gain = ""
        if control is not None and r is not control:
            texts = []
            for key in ("flip", "no_flip"):
                d = 100 * (np.array(res[key]["fold_accuracies"])
                           - np.array(control["lfw"]["results"][key]["fold_accuracies"]))
                r[f"paired_gain_{key}"] = {"mean": round(float(d.mean()), 3), "std": round(float(d.std()), 3),
                                           "folds_better": int((d > 0).sum()), "folds_worse": int((d < 0).sum())}
                texts.append(f"{d.mean():+.2f} +- {d.std():.2f} ({(d > 0).sum()}/10)")
            gain = " / ".join(texts)
        dropped = "" if r["dropped_near_lfw"] is None else f" ({r['dropped_near_lfw']})"
        lines.append(f"| {r['row']} | {r['images']}{dropped} | {r['flip']:.2f}% +- {100 * f['accuracy_std']:.2f} | "
                     f"{r['no_flip']:.2f}% | {r['tar_1e-3']:.2f}% | {gain} |")
    for r in rows:
        r["lfw_results"] = {k: {m: v[m] for m in ("accuracy_mean", "accuracy_std", "fold_accuracies", "tar_at_far")}
                            for k, v in r.pop("lfw")["results"].items()}
    write_json(ROOT / "reports/more-faces/table.json", {"created": now_iso(), "rows": rows,
               "protocol": "LFW deep-funneled View 2, 6000 pairs, 10-fold (threshold on 9 folds), PyTorch float, "
                           "the project's MTCNN aligner; TAR@FAR over all pairs, flip fusion"})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
