"""Collect the prune-vs-scratch LFW figures from the run manifests into reports/prune/ (table, JSON, plot).

Every row names the artifact, the budget in images seen and the measured LFW figure (10-fold View 2, flip
fusion, PyTorch, host as recorded by the run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _json(p: Path) -> dict:
    return json.loads(p.read_text())


def _earlier_training(manifest: dict) -> tuple[int, int]:
    """(epochs, images) of the training runs this one was initialised from, following init_model through
    training manifests only (a pruned artifact's own cost is counted by the caller)."""
    init = manifest.get("config", {}).get("init_model")
    m = Path(init) / "manifest.json" if init else None
    prev = _json(m) if m and m.is_file() else {}
    if prev.get("kind") != "train":
        return 0, 0
    e, n = _earlier_training(prev)
    return e + prev["config"]["epochs"], n + prev["config"]["epochs"] * prev["data"]["images"]


def _train_row(name: str, manifest: dict, path: str) -> dict:
    lfw = manifest.get("metrics", {}).get("lfw") or manifest.get("lfw")
    flip = lfw["results"]["flip"]
    cfg, data = manifest["config"], manifest["data"]
    e0, n0 = _earlier_training(manifest)
    return {"stage": name, "artifact": path, "accuracy": flip["accuracy_mean"], "std": flip["accuracy_std"],
            "tar_1e-3": flip["tar_at_far"]["1e-3"], "images_seen": n0 + cfg["epochs"] * data["images"],
            "epochs": e0 + cfg["epochs"], "schedule": cfg.get("schedule"), "host": manifest.get("host"),
            "train_seconds": manifest.get("metrics", {}).get("train_seconds_this_run")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for k in ("table2", "pruned"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--oneshot", help="the same Table 2 pruned in one shot without fine-tuning (optional row)")
    ap.add_argument("--finetuned", nargs="+", required=True, help="fine-tuned runs from --pruned, shortest first")
    ap.add_argument("--scratch", nargs="+", required=True, help="Table 3 scratch runs (folders or manifest JSONs)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="table2-to-table3", help="file stem of the table, JSON and plot")
    a = ap.parse_args()
    t2 = _json(Path(a.table2) / "manifest.json")
    pr = _json(Path(a.pruned) / "manifest.json")

    rows = [_train_row("Table 2 trained", t2, a.table2)]
    rows[0]["stage"] += f" ({rows[0]['epochs']} epochs)"
    seen = rows[0]["images_seen"]
    per_step = []
    for s in pr["steps"]:
        for key, what in (("lfw_after_pruning", "pruned"), ("lfw_after_finetune", "short fine-tune")):
            if key in s:
                per_step.append({"step": s["step"], "what": what, "accuracy": s[key]["accuracy"],
                                 "std": s[key]["accuracy_std"], "macs": s["macs"]})
    last = pr["steps"][-1]
    if a.oneshot:
        one = _json(Path(a.oneshot) / "manifest.json")
        rows.append({"stage": f"pruned to Table 3 in one shot ({one['method']['criterion']}), no fine-tune",
                     "artifact": a.oneshot, "accuracy": one["accuracy"]["after_pruning"]["accuracy"],
                     "std": one["accuracy"]["after_pruning"]["accuracy_std"], "images_seen": seen})
    ft_images = sum(s.get("finetune", {}).get("steps", 0) * s.get("finetune", {}).get("batch_size", 0) for s in pr["steps"])
    rows.append({"stage": f"pruned to Table 3, after {len(pr['steps'])} steps with "
                          f"{pr['method']['finetune_steps_per_step']} fine-tune steps each", "artifact": a.pruned,
                 "accuracy": last["lfw_after_finetune"]["accuracy"], "std": last["lfw_after_finetune"]["accuracy_std"],
                 "images_seen": seen + ft_images})
    finetuned, scratch = [], []
    for path in a.finetuned:
        ft = _json(Path(path) / "manifest.json")
        views = ft["config"].get("teacher_views", "cached")
        extra = f", online teacher views + {ft['config']['mixup']:.0%} mixup" if views == "online" else ""
        r = _train_row(f"pruned + fine-tuned ({ft['config']['epochs']} epochs, celeba-table3 recipe, distillation "
                       f"weight {ft['config']['distill_weight']:g}{extra})", ft, path)
        r["distill_weight"] = ft["config"]["distill_weight"]
        r["teacher_views"] = views
        r["images_seen"] += seen + ft_images
        finetuned.append(r)
    for path in a.scratch:
        p = Path(path)
        sc = _json(p / "manifest.json" if p.is_dir() else p)
        scratch.append(_train_row(f"Table 3 from scratch ({sc['config']['epochs']} epochs, celeba-table3 recipe)",
                                  sc, path))
    rows += finetuned + scratch

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    proto = "LFW deep-funneled View 2, 6000 pairs, 10-fold, flip fusion, PyTorch on CPU"
    (out / f"{a.name}.json").write_text(json.dumps(
        {"protocol": proto, "rows": rows, "prune_steps": per_step, "macs": pr["macs"], "params": pr["params"]}, indent=1))
    lines = [f"LFW ({proto}); budget = images seen in training (epochs x 7.45 k images).", "",
             "| stage | LFW acc % (flip) | images seen | artifact |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {100 * r['accuracy']:.2f} +- {100 * r['std']:.2f} | {r['images_seen']:,} | "
                     f"`{r['artifact']}` |")
    lines += ["", "Per pruning step (MACs after the step):", "", "| step | after | LFW acc % | MACs |", "|---|---|---|---|"]
    lines += [f"| {p['step']} | {p['what']} | {100 * p['accuracy']:.2f} +- {100 * p['std']:.2f} | {p['macs']:,} |"
              for p in per_step]
    (out / f"{a.name}.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels = ([f"Table 2\ntrained {rows[0]['epochs']} ep"] + [f"step {p['step']}/{len(pr['steps'])}\n{p['what']}" for p in per_step]
              + [f"fine-tuned\n{r['epochs']} ep\ndistill x{r['distill_weight']:g}"
                 + ("\nonline+mixup" if r["teacher_views"] == "online" else "") for r in finetuned])
    accs = [rows[0]["accuracy"]] + [p["accuracy"] for p in per_step] + [r["accuracy"] for r in finetuned]
    stds = [rows[0]["std"]] + [p["std"] for p in per_step] + [r["std"] for r in finetuned]
    if a.oneshot:
        ax.plot([0.5], [100 * rows[1]["accuracy"]], "x", color="C1", label=f"one-shot prune, no fine-tune "
                                                                           f"({100 * rows[1]['accuracy']:.2f}%)")
    ax.errorbar(range(len(accs)), [100 * x for x in accs], yerr=[100 * s for s in stds], marker="o", capsize=3,
                label="Table 2 -> prune -> fine-tune")
    for i, sc in enumerate(scratch):
        ax.axhline(100 * sc["accuracy"], color=f"C{3 + i}", ls="--",
                   label=f"Table 3 from scratch, {sc['epochs']} epochs ({sc['images_seen'] / 1e3:.0f} k images "
                         f"seen): {100 * sc['accuracy']:.2f}%")
    ax.set_xticks(range(len(accs)), labels, fontsize=7)
    ax.set_ylabel("LFW accuracy % (10-fold, flip)")
    ax.set_title("Table 2 -> Table 3 by structured pruning vs Table 3 from scratch (measured, CPU)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{a.name}.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
