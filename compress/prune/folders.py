"""`compress prune`: a model artifact in, a pruned model artifact out, with the record users check.

The output folder holds model.pt (the pruned network; its schedule travels with it) and manifest.json with
the stage mapping, per-layer widths before/after, params and MACs before/after, and LFW accuracy before
pruning, right after each pruning step and after each fine-tuning when an LFW folder is given. With --data and
--finetune-steps, every step is followed by a short fine-tuning (margin loss + distillation from the unpruned
model); a long final fine-tuning is `compress train --init-model P --teacher M`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from ..artifacts import artifact_dir, check_out, file_sha256, host_description, now_iso, versions, write_json
from ..errors import UserError
from ..limits import field_range
from ..model.complexity import MAC_SOURCE, count_macs
from ..model.io import load_model, resolve_model_file, save_model
from ..model.network import FaceMobileNet
from ..recipe import PruneConfig
from .in_memory import prune_to_schedule, ratio_schedule
from .measure import lfw_record, model_size, taylor_loss
from .plan import format_plan, plan_pruning, round_schedule

CLI_CRITERIA = ("l1", "l2", "bn", "taylor")  # taylor needs --data: the loss whose change it estimates


def _ratio_target(src: Any, ratio: float, round_to: int | None) -> Any:
    """ratio_schedule of `src`, or, when the ratio leaves layers too narrow for the network's structure, one
    line saying so and the smallest ratio that works (found by bisection over the cheap schedule plan)."""
    def problem(r: float) -> str | None:
        try:
            plan_pruning(src, ratio_schedule(src, r, round_to), layers=False)
            return None
        except UserError as e:
            return str(e).split("; ")[0]

    why = problem(ratio)
    if why is None:
        return ratio_schedule(src, ratio, round_to)
    lo, hi = ratio, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if problem(mid) is None else (mid, hi)
    raise UserError(f"--ratio {ratio:g} leaves layers of {src.name} too narrow for its block structure ({why}); "
                    f"pass --ratio {hi:.3g} or larger")


_P = PruneConfig  # the defaults ([prune] in a recipe)


def prune_artifact(model_path: str | Path, out: str | Path, schedule: str | None = None, ratio: float | None = None,
                   criterion: str = _P.criterion, round_to: int | None = None, steps: int = _P.steps,
                   depth: str = _P.depth, lfw: str | Path | None = None, overwrite: bool = False,
                   data: str | None = None, align: bool = _P.align, finetune_steps: int = _P.finetune_steps,
                   finetune_lr: float = _P.finetune_lr,
                   batch_size: int = 32, progress: bool = True, macs: str | None = None,
                   latency: float | None = None, board: str | None = None,
                   allocation: str = "importance", reconstruct: bool = False, min_keep: float = 0.0
                   ) -> dict[str, Any]:
    if sum(x is not None for x in (schedule, ratio, macs, latency)) != 1:
        raise UserError("pass exactly one of --schedule (a channel schedule), --ratio (keep this fraction), "
                        "--macs (a MAC budget) or --latency with --target (an estimated-latency budget)")
    if (latency is None) != (board is None):
        raise UserError("--latency MS and --target BOARD go together (the budget is the board's estimated latency)")
    if (macs is not None or latency is not None) and steps != 1:
        raise UserError("--macs / --latency prune in one step; drop --steps (fine-tune afterwards with "
                        "`compress train --init-model`)")
    if criterion not in CLI_CRITERIA:
        raise UserError(f"unknown criterion '{criterion}'; choose one of {', '.join(CLI_CRITERIA)}")
    if finetune_steps < 0:
        raise UserError(f"--finetune-steps must be >= 0, got {finetune_steps}")
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if not finetune_lr > 0:
        raise UserError(f"--finetune-lr must be > 0, got {finetune_lr}")
    if round_to is not None and round_to < 1:
        raise UserError(f"--round-to must be >= 1 (a channel multiple such as 8), got {round_to}")
    if (criterion == "taylor" or finetune_steps) and not data:
        raise UserError("--criterion taylor and --finetune-steps need training faces: pass --data 'synthetic' or a "
                        "folder of faces (--align for raw photos)")
    if ratio is not None and not 0 < ratio <= 1:
        raise UserError(f"--ratio must be in (0, 1], got {ratio}")
    for name, v, key in (("--steps", steps, "steps"), ("--finetune-steps", finetune_steps, "finetune_steps"),
                         ("--finetune-lr", finetune_lr, "finetune_lr"), ("--round-to", round_to, "round_to")):
        if v is not None:
            field_range(PruneConfig, key).check(v, name)  # the caps (and finiteness) the checks above leave open
    if reconstruct and (data is None or (macs is None and latency is None)):
        raise UserError("--reconstruct re-fits a --macs/--latency pruning on real faces: add --data FACES (and "
                        "--macs or --latency), or drop --reconstruct")
    if min_keep and macs is None and latency is None:
        raise UserError("--min-keep floors the widths a --macs/--latency budget derives; add --macs or --latency, "
                        "or drop --min-keep")
    out = Path(out)
    check_out(out, "prune", overwrite)  # before minutes of work, not after
    model = load_model(model_path)
    src = model.schedule
    if macs is not None or latency is not None:
        from .budget import budget_prune

        return budget_prune(model, model_path, out, macs=macs, latency=latency, board=board, allocation=allocation,
                            criterion=criterion, round_to=round_to, lfw=lfw, overwrite=overwrite, data=data,
                            align=align, finetune_steps=finetune_steps, progress=progress, reconstruct=reconstruct,
                            min_keep=min_keep)
    target = (_ratio_target(src, ratio, round_to) if ratio is not None
              else plan_pruning(src, schedule, layers=False).target)
    if round_to and ratio is None:
        exact_macs = count_macs(FaceMobileNet(target).eval(), (3, target.input_size, target.input_size))
        target = round_schedule(target, round_to, limit=src)
    plan = plan_pruning(src, target)  # validates before any work
    click.echo(format_plan(plan))
    before = model_size(model)
    record: dict[str, Any] = {"lfw": {}}
    if lfw:
        record["lfw"]["before_pruning"] = lfw_record(model, Path(lfw), f"{src.name} (unpruned)")
        click.echo(f"LFW before pruning: {record['lfw']['before_pruning']['summary']}")
    faces = None
    if data:
        from ..data.sources import load_faces

        faces = load_faces(data, progress=progress, align=align)
    loss_fn, batch = taylor_loss(model, faces) if criterion == "taylor" else (None, None)
    step_log: list[dict[str, Any]] = []

    def tune(m: FaceMobileNet, k: int) -> None:
        entry: dict[str, Any] = {"step": k, "schedule": m.schedule.to_dict(), **model_size(m)}
        if lfw:
            entry["lfw_after_pruning"] = lfw_record(m, Path(lfw), f"step {k} (pruned, not fine-tuned)")
            click.echo(f"step {k}: LFW right after pruning {entry['lfw_after_pruning']['summary']}")
        if finetune_steps:
            from ..train.finetune import finetune

            history: list[dict[str, Any]] = []
            finetune(m, faces, model, steps=finetune_steps, lr=finetune_lr, batch_size=batch_size,
                     progress=progress, desc=f"fine-tune after step {k}", history=history)
            entry["finetune"] = {"steps": finetune_steps, "lr": finetune_lr, "batch_size": batch_size,
                                 "reference": "unpruned model (distillation) + ArcFace-w at the data's class centres",
                                 "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"],
                                 "last_distill": history[-1]["distill"]}
            if lfw:
                entry["lfw_after_finetune"] = lfw_record(m, Path(lfw), f"step {k} (fine-tuned)")
                click.echo(f"step {k}: LFW after fine-tuning {entry['lfw_after_finetune']['summary']}")
        step_log.append(entry)

    counter = iter(range(1, steps + 1))
    pruned = prune_to_schedule(model, target, criterion=criterion, steps=steps, depth=depth, loss_fn=loss_fn,
                               example_batch=batch, between_steps=lambda m: tune(m, next(counter)))
    tune(pruned, steps)  # the last step gets the same treatment as the ones before it
    after = model_size(pruned)
    if lfw:
        record["lfw"]["after_pruning"] = step_log[-1]["lfw_after_pruning"]
        if finetune_steps:
            record["lfw"]["after_finetune"] = step_log[-1]["lfw_after_finetune"]
    manifest = {
        "kind": "prune", "created": now_iso(), "model": "model.pt",
        "source_model": {"path": str(resolve_model_file(model_path)), "sha256": file_sha256(resolve_model_file(model_path))},
        "source_schedule": src.to_dict(), "schedule": pruned.schedule.to_dict(),
        "method": {"criterion": criterion, "steps": steps, "depth": depth, "round_to": round_to, "ratio": ratio,
                   "target": schedule or f"ratio {ratio}", "finetune_steps_per_step": finetune_steps,
                   "data": faces.describe() if faces is not None else None},
        "steps": step_log,
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
    with artifact_dir(out, "prune", overwrite=overwrite) as stage:
        save_model(pruned, stage / "model.pt", {"pruned_from": str(model_path)})
        write_json(stage / "manifest.json", manifest)
    click.echo(f"params {before['params']:,} -> {after['params']:,}; MACs {before['macs']:,} -> {after['macs']:,}"
               + (f" (exact widths: {exact_macs:,})" if round_to and ratio is None else "") + f"; wrote {out}")
    return manifest
