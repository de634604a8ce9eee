"""`compress prune`: a model artifact in, a pruned model artifact out, with the record users check.

The output folder holds model.pt (the pruned network; its schedule travels with it) and manifest.json with
the stage mapping, per-layer widths before/after, params and MACs before/after, and LFW accuracy before and
right after pruning when an LFW folder is given. Fine-tuning is a separate `compress train --init-model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..artifacts import artifact_dir, file_sha256, host_description, now_iso, versions, write_json
from ..errors import UserError
from ..model.complexity import MAC_SOURCE, count_macs
from ..model.io import load_model, resolve_model_file, save_model
from ..model.network import FaceMobileNet
from .api import prune_to_schedule, ratio_schedule
from .plan import format_plan, plan_pruning, round_schedule

CLI_CRITERIA = ("l1", "l2", "bn")  # taylor needs a loss on data: Python API (prune_to_schedule(loss_fn=...))


def _size(model: FaceMobileNet) -> dict[str, int]:
    s = model.schedule.input_size
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model.eval(), (3, s, s))}


def _lfw(model: FaceMobileNet, lfw: Path, name: str) -> dict[str, Any]:
    from ..evaluate.embed import TorchEmbedder
    from ..evaluate.lfw import evaluate_lfw

    r = evaluate_lfw(TorchEmbedder(model, name=name), lfw, flip=True, progress=False)
    return {"summary": r["summary"]["flip"], "accuracy": r["results"]["flip"]["accuracy_mean"],
            "accuracy_std": r["results"]["flip"]["accuracy_std"], "dataset": r["dataset"], "protocol": r["protocol"]}


def prune_artifact(model_path: str | Path, out: str | Path, schedule: str | None = None, ratio: float | None = None,
                   criterion: str = "l1", round_to: int | None = None, steps: int = 1, depth: str = "first",
                   lfw: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    if (schedule is None) == (ratio is None):
        raise UserError("pass exactly one of --schedule (a channel schedule) or --ratio (keep this fraction)")
    if criterion not in CLI_CRITERIA:
        raise UserError(f"criterion '{criterion}' is not available here; choose one of {', '.join(CLI_CRITERIA)} "
                        "(taylor needs a loss on data: use compress.prune.prune_to_schedule(loss_fn=...))")
    if ratio is not None and not 0 < ratio <= 1:
        raise UserError(f"--ratio must be in (0, 1], got {ratio}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    model = load_model(model_path)
    src = model.schedule
    target = ratio_schedule(src, ratio, round_to) if ratio is not None else plan_pruning(src, schedule, layers=False).target
    if round_to and ratio is None:
        exact_macs = count_macs(FaceMobileNet(target).eval(), (3, target.input_size, target.input_size))
        target = round_schedule(target, round_to, limit=src)
    plan = plan_pruning(src, target)  # validates before any work
    click.echo(format_plan(plan))
    before = _size(model)
    record: dict[str, Any] = {"lfw": {}}
    if lfw:
        record["lfw"]["before_pruning"] = _lfw(model, Path(lfw), f"{src.name} (unpruned)")
        click.echo(f"LFW before pruning: {record['lfw']['before_pruning']['summary']}")
    pruned = prune_to_schedule(model, target, criterion=criterion, steps=steps, depth=depth)
    after = _size(pruned)
    if lfw:
        record["lfw"]["after_pruning"] = _lfw(pruned, Path(lfw), f"{pruned.schedule.name} (pruned, not fine-tuned)")
        click.echo(f"LFW right after pruning (no fine-tuning): {record['lfw']['after_pruning']['summary']}")
    manifest = {
        "kind": "prune", "created": now_iso(), "model": "model.pt",
        "source_model": {"path": str(resolve_model_file(model_path)), "sha256": file_sha256(resolve_model_file(model_path))},
        "source_schedule": src.to_dict(), "schedule": pruned.schedule.to_dict(),
        "method": {"criterion": criterion, "steps": steps, "depth": depth, "round_to": round_to, "ratio": ratio,
                   "target": schedule or f"ratio {ratio}"},
        "stage_mapping": [{"target_stage": i + 1, "source_stage": m.source + 1, "kept_blocks": [k + 1 for k in m.kept]}
                          for i, m in enumerate(plan.stages)],
        "deleted_source_stages": [d + 1 for d in plan.deleted],
        "layers": [{"layer": w.name, "from": w.source_name, "before": list(w.before), "after": list(w.after)}
                   for w in plan.layers],
        "params": {"before": before["params"], "after": after["params"]},
        "macs": {"before": before["macs"], "after": after["macs"], "counted_by": MAC_SOURCE},
        "accuracy": record["lfw"] or "not measured (pass --lfw DIR)",
        "host": host_description(), "versions": versions(),
    }
    if round_to and ratio is None:
        manifest["macs"]["exact_widths"] = exact_macs
    with artifact_dir(out, overwrite=overwrite) as stage:
        save_model(pruned, stage / "model.pt", {"pruned_from": str(model_path)})
        write_json(stage / "manifest.json", manifest)
    click.echo(f"params {before['params']:,} -> {after['params']:,}; MACs {before['macs']:,} -> {after['macs']:,}"
               + (f" (exact widths: {exact_macs:,})" if round_to and ratio is None else "") + f"; wrote {out}")
    return manifest
