"""The `compress` command line: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import UserError
from .limits import FACES, SECONDS, SEED, THREADS, Range, option_type as _t
from .recipe import EvaluateConfig, ExportConfig, PruneConfig, QuantizeConfig
from .zoo import DEFAULT_MODEL, DEFAULT_PRUNE_SOURCE, WARD_MODEL, is_zoo_spec, safe_name
from .data.detectors import ROBOT_DETECTOR


def _say_model(spec: str | Path) -> None:
    """Every command that takes a model says which one it used (stderr, so JSON on stdout stays clean)."""
    from .model.io import describe_model

    click.echo(f"model: {describe_model(spec)}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="compress")
def cli() -> None:
    """facecompress: train, evaluate and prune the paper's MobileNet face recognizer for robot boards."""


# ---------------------------------------------------------------- schedules
@cli.group(invoke_without_command=True)
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """List channel schedules (profiles/*.toml); `schedules show NAME` prints one as the paper's table."""
    if ctx.invoked_subcommand is None:
        from .model import build_model
        from .model.complexity import count_macs
        from .schedules import list_schedules

        click.echo(f"{'name':<10}{'stages':>7}{'params':>12}{'MACs':>14}  description")
        for s in list_schedules():
            m = build_model(s).eval()
            macs = count_macs(m, (3, s.input_size, s.input_size))
            params = sum(p.numel() for p in m.parameters())
            click.echo(f"{s.name:<10}{len(s.stages):>7}{params:>12,}{macs:>14,}  {s.description}")
        click.echo("MACs: ptflops pytorch backend at batch 1; `compress schedules show NAME` for per-layer rows.")


@schedules.command("show")
@click.argument("name")
def schedules_show(name: str) -> None:
    """Per-layer table (input, operator, t, c, n, s, output, params, MACs) of schedule NAME or a .toml file."""
    from .model import build_model
    from .model.complexity import format_table, layer_table
    from .schedules import load_schedule

    s = load_schedule(name)
    title = f"{s.name}: {s.description}  [{s.path}]"
    click.echo(format_table(layer_table(build_model(s)), title))
    blocks = ", ".join(f"stage {i}: ({st.residual})" for i, st in enumerate(s.stages, 1))
    click.echo(f"residual structures: {blocks}")
    if s.prune_from:
        mapping = ", ".join(f"{st.source}->{i}" for i, st in enumerate(s.stages, 1) if st.source)
        click.echo(f"prunes from {s.prune_from}, stage mapping (source->this): {mapping}")


# ---------------------------------------------------------------- targets
@cli.group(invoke_without_command=True)
@click.pass_context
def targets(ctx: click.Context) -> None:
    """List robot boards (targets/*.toml); `targets show NAME` prints one."""
    if ctx.invoked_subcommand is None:
        from .targets import format_target_list, list_targets

        click.echo(format_target_list(list_targets()))


@targets.command("show")
@click.argument("name")
def targets_show(name: str) -> None:
    """Runtime, precisions, opset cap, hardware figures and published reference latencies of board NAME."""
    from .targets import format_target, load_target

    click.echo(format_target(load_target(name)))


# ---------------------------------------------------------------- models
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print the listing as JSON")
def models(as_json: bool) -> None:
    """The model zoo: real-face weights shipped with the package, usable as --model zoo:NAME."""
    import json

    from .zoo import format_table, list_entries, table_rows

    rows = table_rows(list_entries())
    click.echo(json.dumps({"format": "compress.models/1", "models": rows}, indent=2) if as_json else format_table(rows))


# ---------------------------------------------------------------- import-onnx
@cli.command("import-onnx")
@click.argument("onnx_file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="model artifact folder to write")
@click.option("--overwrite", is_flag=True)
def import_onnx_cmd(onnx_file: Path, out: Path, overwrite: bool) -> None:
    """Map an ONNX face model (e.g. MobileFaceNet) onto the project's network: a model artifact with the
    schedule it matches, its weights, and the source file's sha256. Any --model also takes the .onnx itself."""
    from .artifacts import artifact_dir, check_out
    from .model.onnx_import import write_import

    if not onnx_file.is_file():
        raise UserError(f"ONNX model {onnx_file} not found; pass the .onnx file (external weights beside it)")
    check_out(out, "import", overwrite)
    with artifact_dir(out, "import", overwrite) as stage:
        m = write_import(onnx_file, stage)
    click.echo(f"wrote {out}/model.pt: schedule '{m['schedule']['name']}', {m['params']:,} params, {m['macs']:,} MACs "
               f"(ptflops pytorch backend); cosine vs onnxruntime {m['parity']['cosine_min_vs_onnxruntime']:.7f} "
               f"(1 random image); source sha256 {m['source_onnx']['sha256'][:12]}")


# ---------------------------------------------------------------- train
@cli.command()
@click.option("--recipe", help="recipe name in profiles/ or .toml path; options below override it")
@click.option("--schedule", help="schedule name (table2, table3) or .toml file  [table3]")
@click.option("--init-model", help="start from this model artifact, e.g. a pruned network (fine-tuning)")
@click.option("--teacher", help="distil from this ONNX model or model artifact (with --distill-weight)")
@click.option("--distill-weight", type=float, help="weight of the 1 - cos(student, teacher) term")
@click.option("--teacher-views", type=click.Choice(["cached", "online"]),
              help="teacher embeds each image once (cached) or every augmented view the student sees (online)")
@click.option("--augment-policy", type=click.Choice(["light", "strong", "mirror"]), help="training augmentation  [light]")
@click.option("--mixup", type=float, help="online teacher: fraction of each batch made of two-image mixes")
@click.option("--feature-weight", type=float,
              help="online teacher of the same stage widths: weight of block-wise feature distillation  [0]")
@click.option("--data", help="'synthetic' (built-in generator), an ImageFolder of aligned 112x112 crops, or an "
                            "insightface train.rec (streamed)")
@click.option("--stream", is_flag=True, default=None, help="read the folder from disk per batch, not into memory first")
@click.option("--workers", type=int, help="DataLoader workers per process when streaming  [2]")
@click.option("--loss", type=click.Choice(["arcface_w", "arcface", "softmax"]), help="[arcface_w]")
@click.option("--scale", "s", type=float, help="margin-loss scale s  [64]")
@click.option("--margin", "m", type=float, help="additive angular margin m  [0.5]")
@click.option("--terms", type=int, help="ArcFace-w: arcsin series terms N")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--lr-schedule", type=click.Choice(["cosine", "step", "constant"]))
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]))
@click.option("--weight-decay", type=float, help="decoupled (AdamW) or L2 (SGD) weight decay")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda, cuda:1")
@click.option("--threads", type=int, help="torch CPU threads (0 = torch default)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="run folder to write")
@click.option("--resume", type=click.Path(path_type=Path), help="continue the run in this folder / checkpoint")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--no-progress", is_flag=True)
def train(recipe, out, resume, overwrite, no_progress, **opts) -> None:
    """Train a face-embedding network. Under torchrun it runs data-parallel (DDP) with the same code."""
    from .train.config import make_config
    from .train.trainer import train as run

    base = None
    if resume is not None and not recipe:  # resuming: the run's own settings, unless a recipe is named
        from .train.trainer import load_checkpoint

        base = load_checkpoint(resume)["config"]
    cfg = make_config(recipe, base=base, progress=False if no_progress else None, **opts)
    try:
        manifest = run(cfg, out, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:  # click turns it into Abort ("aborted") before main() could give the hint
        from .train.trainer import interrupted_hint

        click.echo(interrupted_hint(out, recipe), err=True)
        sys.exit(130)
    if manifest:
        click.echo(f"wrote {out}/model.pt and {out}/manifest.json (final loss {manifest['metrics']['final_loss']:.3f})")


# ---------------------------------------------------------------- prune
@cli.command()
@click.option("--model", "model_path", default=DEFAULT_PRUNE_SOURCE, show_default=True,
              help="trained model: zoo:NAME, a run folder or model.pt, e.g. a Table 2 network")
@click.option("--schedule", help="target channel schedule: table3 or a .toml file")
@click.option("--ratio", type=_t(PruneConfig, "ratio"),
              help="instead of a schedule: keep this fraction of every layer's channels")
@click.option("--macs", help="instead of a schedule: a MAC budget (e.g. 57M); widths and depth derived, schedule.toml "
                             "written")
@click.option("--latency", type=float, help="instead of a schedule: an estimated-latency budget in ms on --target")
@click.option("--target", "board", help="board for --latency (compress targets)")
@click.option("--allocation", type=click.Choice(["importance", "uniform"]), default="importance", show_default=True,
              help="--macs/--latency: greedy by importance (Taylor on --data faces) or one fraction everywhere")
@click.option("--criterion", type=click.Choice(["l1", "l2", "bn", "taylor"]), default=PruneConfig.criterion,
              show_default=True,
              help="channel importance: weight magnitude (L1/L2), BN scaling factor |gamma|, or first-order "
                   "Taylor estimate of the loss change (needs --data)")
@click.option("--round-to", type=_t(PruneConfig, "round_to"),
              help="round widths up to a multiple (e.g. 8) for accelerators")
@click.option("--steps", default=PruneConfig.steps, show_default=True, type=_t(PruneConfig, "steps"),
              help="prune in this many steps (widths interpolated)")
@click.option("--depth", type=click.Choice(["first", "importance"]), default=PruneConfig.depth, show_default=True,
              help="which blocks a shortened stage keeps")
@click.option("--lfw", type=click.Path(path_type=Path), help="measure LFW accuracy before, and after every step")
@click.option("--data", help="faces for Taylor and fine-tuning: 'synthetic' or an image folder")
@click.option("--align", is_flag=True, help="--data holds raw photos: MTCNN-align them (cached)")
@click.option("--finetune-steps", default=PruneConfig.finetune_steps, show_default=True,
              type=_t(PruneConfig, "finetune_steps"),
              help="optimizer steps of fine-tuning after every pruning step (distillation from the unpruned model)")
@click.option("--finetune-lr", default=PruneConfig.finetune_lr, show_default=True, type=_t(PruneConfig, "finetune_lr"))
@click.option("--reconstruct", is_flag=True,
              help="--macs/--latency: re-fit every pointwise conv to the source's output on --data faces (least "
                   "squares, no training; compress.prune.reconstruct)")
@click.option("--min-keep", type=float, default=0.0, show_default=True,
              help="--macs/--latency: every width keeps at least this fraction of its source width")
@click.option("--out", type=click.Path(path_type=Path), help="pruned artifact folder  [runs/pruned/<model>-<schedule>]")
@click.option("--overwrite", is_flag=True)
@click.option("--no-progress", is_flag=True)
def prune(model_path, schedule, ratio, macs, latency, board, allocation, criterion, round_to, steps, depth, lfw,
          data, align, finetune_steps, finetune_lr, reconstruct, min_keep, out, overwrite, no_progress) -> None:
    """Structured pruning (channels and whole blocks) of a trained model down to a schedule, one-shot or in
    --steps with short fine-tuning between them."""
    from .prune.folders import prune_artifact

    if out is None:
        what = schedule or (f"ratio{ratio}" if ratio is not None else f"{macs}macs" if macs else f"{latency}ms-{board}")
        out = Path("runs") / "pruned" / f"{safe_name(model_path)}-{Path(str(what)).stem}"
    prune_artifact(model_path, out, schedule=schedule, ratio=ratio, criterion=criterion, round_to=round_to,
                   steps=steps, depth=depth, lfw=lfw, overwrite=overwrite, data=data, align=align,
                   finetune_steps=finetune_steps, finetune_lr=finetune_lr, progress=not no_progress, macs=macs,
                   latency=latency, board=board, allocation=allocation, reconstruct=reconstruct, min_keep=min_keep)
    _say_model(model_path)
    if not finetune_steps:
        # the recipe that fine-tunes this network family: MobileFaceNet's (a GDC head) or the paper's networks'
        pruned = json.loads((Path(out) / "manifest.json").read_text())["schedule"]
        recipe = "mfn-distill" if pruned.get("head_pool") == "gdc" else "table2-pruned-ft-online"
        click.echo(f"next: pruning alone costs accuracy; fine-tune it with distillation, e.g. `compress train "
                   f"--recipe {recipe} --init-model {out} --out {out}-ft` (real faces, needs the "
                   f"recipe's data), then `compress evaluate --model {out}-ft --lfw DIR`")


# ---------------------------------------------------------------- quantize
@cli.command()
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              help="model to quantize: zoo:NAME or a train / prune artifact")
@click.option("--out", type=click.Path(path_type=Path), help="quantized artifact folder  [runs/quantized/<model>-<mode>]")
@click.option("--mode", type=click.Choice(["ptq", "qat"]), default=QuantizeConfig.mode, show_default=True,
              help="ptq: calibration only (quick); qat: calibration, then fine-tuning with the training loss")
@click.option("--calibration", "calibration_spec",
              help="calibration faces: 'synthetic', an image folder, or lfw-unpaired:LFW_DIR  [synthetic]")
@click.option("--calibration-images", default=QuantizeConfig.images, show_default=True, type=_t(FACES))
@click.option("--keep-float", default=",".join(QuantizeConfig.keep_float), show_default=True,
              help="comma-separated layers left in float (mixed precision); 'none' = full int8")
@click.option("--align", is_flag=True, help="the data folders hold raw photos: MTCNN-align them (cached)")
@click.option("--train-data", "train_spec", help="QAT training faces: 'synthetic' or an image folder  [synthetic]")
@click.option("--qat-steps", default=QuantizeConfig.qat_steps, show_default=True, type=_t(QuantizeConfig, "qat_steps"))
@click.option("--qat-lr", default=QuantizeConfig.qat_lr, show_default=True, type=_t(QuantizeConfig, "qat_lr"))
@click.option("--overflow-fix", type=click.Choice(["disable", "first_layer_only", "enable"]),
              default=QuantizeConfig.overflow_fix,
              show_default=True, help="NNCF's 7-bit weights for CPUs without VNNI (costs accuracy)")
@click.option("--activations", type=click.Choice(["asymmetric", "symmetric"]), default=QuantizeConfig.activations,
              show_default=True, help="per-tensor activation quantizers: asymmetric (uint8 + zero point: "
              "onnxruntime fuses every conv) or symmetric")
@click.option("--threads", default=QuantizeConfig.threads, type=_t(THREADS),
              help="torch CPU threads (0 = default; 1 is fastest on a busy 2-core host)")
@click.option("--seed", default=0, show_default=True, type=_t(SEED))
@click.option("--overwrite", is_flag=True)
@click.option("--no-progress", is_flag=True)
def quantize(model_path, out, mode, calibration_spec, calibration_images, keep_float, align, train_spec, qat_steps,
             qat_lr, overflow_fix, activations, threads, seed, overwrite, no_progress) -> None:
    """int8 quantization with NNCF (PTQ or QAT); the artifact feeds every int8 export (one calibration set)."""
    from .quantize import quantize_artifact

    out = out or Path("runs") / "quantized" / f"{safe_name(model_path)}-{mode}"
    keep = [] if keep_float.strip().lower() in ("", "none") else [k.strip() for k in keep_float.split(",") if k.strip()]
    m = quantize_artifact(model_path, out, mode=mode, calibration_spec=calibration_spec,
                          n_calibration=calibration_images, keep_float=keep, qat_steps=qat_steps, qat_lr=qat_lr,
                          train_spec=train_spec, align=align, overflow_fix=overflow_fix, threads=threads,
                          activations=activations, progress=not no_progress, overwrite=overwrite, seed=seed)
    cos = m.get("metrics", {}).get("cosine", {})
    if cos:
        from .export.parity import low_int8_warning

        click.echo(f"int8 vs float embeddings (PyTorch fake-quant, {cos.get('n')} held-out faces): "
                   f"cosine mean {cos['mean']:.5f}, min {cos['min']:.5f}")
        warning = low_int8_warning(cos["mean"], "PyTorch fake-quant")
        if warning:
            click.echo(warning, err=True)
    _say_model(model_path)
    click.echo(f"wrote {out}")


# ---------------------------------------------------------------- export
@cli.command()
@click.option("--target", required=True, help="robot board: see `compress targets` (or a .toml file)")
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              help="zoo:NAME, a model artifact (train/prune output) or a quantized artifact (quantize output)")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), help="[the target's default]")
@click.option("--out", type=click.Path(path_type=Path), help="export folder  [runs/exports/<model>-<target>-<precision>]")
@click.option("--lfw", type=click.Path(path_type=Path), help="also measure LFW accuracy through the runtime")
@click.option("--parity-data", "parity_spec",
              help="parity faces: 'synthetic', an image folder or lfw-unpaired:DIR  [LFW unpaired if --lfw]")
@click.option("--parity-images", default=ExportConfig.parity_images, show_default=True, type=_t(FACES))
@click.option("--threads", default=ExportConfig.threads, type=_t(THREADS),
              help="runtime CPU threads for the checks (0 = runtime default)")
@click.option("--overwrite", is_flag=True)
@click.option("--no-progress", is_flag=True)
@click.option("--bundle", is_flag=True, help="also write <out>.tar.gz (the folder, with SHA256SUMS) to copy to the board")
@click.option("--calibration", "calibration_spec", help="a float model at int8 is quantized on the way (PTQ) with "
              "these faces: 'synthetic', an image folder or lfw-unpaired:LFW_DIR  [synthetic]")
@click.option("--calibration-images", default=QuantizeConfig.images, show_default=True)
def export(target, model_path, precision, out, lfw, parity_spec, parity_images, threads, overwrite, no_progress,
           bundle, calibration_spec, calibration_images) -> None:
    """Export for a board (TensorRT-ready ONNX, OpenVINO IR, TFLite, ONNX) and prove parity in its runtime here."""
    from .export.folders import export_artifact

    m = export_artifact(model_path, target, out=out, precision=precision, parity_spec=parity_spec,
                        n_parity=parity_images, lfw=lfw, threads=threads, overwrite=overwrite,
                        progress=not no_progress, bundle=bundle, calibration_spec=calibration_spec,
                        n_calibration=calibration_images)
    qmeta = m["source"].get("quantize_meta") or {}
    if qmeta.get("quantized_by", "").startswith("compress export"):
        c = qmeta["calibration"]
        click.echo(f"quantized on the way to int8 (NNCF PTQ, {c['n']} {c['source']} calibration faces, float layers "
                   f"{', '.join(qmeta['keep_float']) or 'none'}); recorded in the manifest (source.quantize_meta)")
    from .export.parity import low_int8_warning

    for key, p in m["parity"].items():
        click.echo(f"parity {key}: cosine mean {p['cosine_mean']:.6f}, min {p['cosine_min']:.6f} over {p['n']} faces "
                   f"({p['runtime']} on this host vs {p['reference']})")
        warning = low_int8_warning(p["cosine_mean"], f"parity {key}") if key == "vs_float" and \
            m["precision"] == "int8" else None
        if warning:
            click.echo(warning, err=True)
    if "engine" in m:
        click.echo(f"TensorRT engine: {m['engine']}")
    _say_model(model_path)
    click.echo(f"wrote {m['model_file']} ({m['precision']}, {m['runtime']}) and its manifest to "
               f"{m['out']}")
    if m.get("tar"):
        click.echo(f"wrote {m['tar']}: copy it to the board and follow {Path(m['out']).name}/BOARD.md "
                   f"({m['bundle']['run']}; board Python {m['bundle']['board_python_min'] or 'not stated'}+)")


# ---------------------------------------------------------------- bench
@cli.command()
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(path_type=Path),
              help="export folder (from `compress export`) or a .onnx / .xml / .tflite file; repeat to compare  "
                   "[zoo:table3 exported as plain ONNX fp32]")
@click.option("--threads", default=0, type=_t(THREADS), help="runtime CPU threads (0 = runtime default)")
@click.option("--seconds", default=3.0, show_default=True, type=_t(SECONDS),
              help="minimum timed seconds (per round when comparing)")
@click.option("--rounds", default=5, show_default=True, type=_t(Range(1, 100, integer=True)),
              help="comparing: interleaved rounds")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="write the result as JSON here")
@click.option("--frame", "frame_photo", type=click.Path(path_type=Path),
              help="time the robot's whole frame instead: this photo in a 640x480 frame, detect + align + embed "
                   "(flip) + match against --templates")
@click.option("--detector", help=f"--frame: yunet, yunet-onet, blazeface or mtcnn  [{ROBOT_DETECTOR}]")
@click.option("--model", "model_path", help=f"--frame: the embedder (as `compress enrol --model`)  [{WARD_MODEL}]")
@click.option("--templates", default=1000, show_default=True, help="--frame: enrolled templates matched against")
@click.option("--detect-side", type=int, help="--frame: longer side the frame is detected at  [yunet 320]")
def bench(artifacts, threads, seconds, rounds, json_out, frame_photo, detector, model_path, templates,
          detect_side) -> None:
    """Latency (median, p90; batch 1) of exported models in their runtimes on this machine. Several
    --artifact: measured in one run, interleaved, with ratios to the first. --frame PHOTO: the whole frame."""
    from .bench.latency import _check_numbers, bench_artifact, bench_compare, format_bench, format_compare
    from .outputs import check_output, write_output_json as write_json

    check_output(json_out, "--json")
    _check_numbers(threads=threads, seconds=seconds, rounds=rounds)
    if frame_photo is not None:
        from .bench.frame import bench_frame, format_frame
        from .data.detectors import ROBOT_DETECTOR

        if artifacts:
            raise UserError("--frame times one embedder: pass it with --model, not --artifact")
        r = bench_frame(frame_photo, detector or ROBOT_DETECTOR, model_path or WARD_MODEL, templates=templates,
                        threads=threads, seconds=seconds, detect_side=detect_side)
        click.echo(format_frame(r))
        if json_out:
            write_json(json_out, r)
        return
    if detector or model_path or detect_side:
        raise UserError("--detector, --model and --detect-side belong to --frame PHOTO; add --frame or leave them out")
    if not artifacts:
        artifacts = (_default_bench_artifact(),)
    if len(artifacts) == 1:
        r = bench_artifact(artifacts[0], threads=threads, min_seconds=seconds)
        click.echo(format_bench(r))
    else:
        r = bench_compare(list(artifacts), threads=threads, rounds=rounds, seconds_per_round=seconds)
        click.echo(format_compare(r))
    if json_out:
        write_json(json_out, r)


@cli.command()
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              help="zoo:NAME, a model artifact, or a schedule name / .toml (the estimate depends on the layers only)")
@click.option("--target", "target_names", multiple=True, help="board(s); default: every target")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), help="[each target's default]")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="write the estimates as JSON here")
@click.option("--detector", "frame_detector", help="also estimate this face detector on the robot's 640x480 frame "
              "(yunet: its ONNX graph) and print detect + embed + total per board")
@click.option("--detect-side", type=int, help="with --detector: the longer side the frame is detected at "
              "[the robot's: compress.data.align.FRAME_SETTINGS]")
def estimate(model_path, target_names, precision, json_out, frame_detector, detect_side) -> None:
    """Per-board latency estimate (per-layer model calibrated on published reference latencies), with its
    leave-one-out error on those references; boards without calibration data get no number."""
    from .bench.estimate import estimate_latency, format_estimate, reference_estimate
    from .outputs import check_output, write_output_json as write_json
    from .targets import list_targets, load_target

    check_output(json_out, "--json")
    if frame_detector or detect_side:  # bad detector / size: one line before any work
        from .bench.onnx_layers import check_frame_detector

        check_frame_detector(frame_detector, detect_side)

    targets = [load_target(t) for t in target_names] if target_names else list_targets()
    if precision and target_names:  # a named board that does not offer the precision is an error, like export's
        for t in targets:
            if precision not in t.precisions:
                raise UserError(f"target {t.name} does not offer {precision}; it offers {', '.join(t.precisions)} "
                                f"(pass one of those to --precision, or leave it out for {t.default_precision})")
    elif precision:  # every board: the ones that offer the precision
        skipped = [t.name for t in targets if precision not in t.precisions]
        targets = [t for t in targets if precision in t.precisions]
        if not targets:
            raise UserError(f"no target offers {precision}; see `compress targets`")
        if skipped:
            click.echo(f"not offering {precision} (skipped): {', '.join(skipped)}", err=True)
    p = Path(model_path)
    if is_zoo_spec(model_path) or p.is_dir() or p.suffix == ".pt":
        from .model.io import load_model

        model = load_model(model_path)
    else:
        from .model import build_model

        model = build_model(model_path)
    results = []
    for t in targets:
        r = estimate_latency(model, t, precision)
        r["reference_estimate"] = reference_estimate(t, r["precision"])  # MobileFaceNet, same calibration
        results.append(r)
        click.echo(format_estimate(r))
        if frame_detector:
            from .bench.onnx_layers import format_frame_estimate, frame_estimate

            r["frame_estimate"] = frame_estimate(r, frame_detector, detect_side, t, r["precision"])
            click.echo(format_frame_estimate(r["frame_estimate"]))
    if is_zoo_spec(model_path) or p.is_dir() or p.suffix == ".pt":
        _say_model(model_path)
    if json_out:
        write_json(json_out, {"format": "compress.estimate/1", "model": str(model_path), "estimates": results})


def _default_bench_artifact() -> Path:
    """The default model's plain ONNX export, made once (with its parity record) and reused."""
    from .artifacts import read_manifest
    from .export.folders import default_out, export_artifact
    from .zoo import load_entry

    out = default_out(DEFAULT_MODEL, "onnx", "fp32")
    m = read_manifest(out)
    if m is None or (m.get("source") or {}).get("sha256") != load_entry(DEFAULT_MODEL.split(":", 1)[1]).sha256:
        click.echo(f"no --artifact: exporting {DEFAULT_MODEL} for target onnx (fp32) into {out}", err=True)
        export_artifact(DEFAULT_MODEL, "onnx", out=out, precision="fp32", overwrite=out.exists(), progress=False)
    _say_model(DEFAULT_MODEL)
    return out


# ---------------------------------------------------------------- emulate
@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "json_out", required=True, type=click.Path(path_type=Path), help="write the runner's record here")
@click.option("--threads", type=int, help="LiteRT threads inside the emulated board  [1]")
@click.option("--rebuild", is_flag=True, help="build the cached arm64 root again (after a damaged-cache error)")
@click.option("--timeout", type=float, help="seconds the emulated run may take  [3600]")
@click.option("--overwrite", is_flag=True, help="replace an existing --json file")
def emulate(bundle, json_out, threads, rebuild, timeout, overwrite) -> None:
    """Run a Raspberry Pi bundle's run_on_board.py on an emulated arm64 Debian (QEMU, the board's CPU): parity
    from LiteRT's Arm kernels. Its timing is not the board's."""
    from .bench.emulate import emulate_bundle, summary

    given = {k: v for k, v in {"threads": threads, "timeout": timeout}.items() if v is not None}
    rec = emulate_bundle(bundle, json_out, overwrite=overwrite, rebuild=rebuild, log=lambda m: click.echo(m, err=True),
                         **given)
    click.echo(summary(rec))
    click.echo(f"wrote {json_out}: copy it into RUN/board/ and `compress report --run RUN` shows it as emulated")


# ---------------------------------------------------------------- evaluate
@cli.command()
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              help="zoo:NAME, a run folder, model.pt, or any .onnx face model")
@click.option("--data", help="'synthetic' (held-out synthetic identities) or an ImageFolder of aligned crops")
@click.option("--lfw", type=click.Path(path_type=Path), help="LFW folder with pairs.txt (standard 10-fold protocol)")
@click.option("--identities", default=100, show_default=True, type=_t(EvaluateConfig, "identities"),
              help="synthetic: held-out identities")
@click.option("--no-flip", is_flag=True, help="no horizontal-flip feature fusion")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the result as JSON")
@click.option("--roc", type=click.Path(path_type=Path), help="LFW: write the ROC curve PNG here")
@click.option("--bin", "bins", multiple=True, type=click.Path(path_type=Path),
              help="insightface verification .bin (lfw.bin, cfp_fp.bin, ...), 10-fold; repeatable")
@click.option("--detector", default="mtcnn", show_default=True, help="--lfw: the face detector that aligns the "
              "raw images (mtcnn, yunet, yunet-onet or blazeface)")
def evaluate(model_path, data, lfw, identities, no_flip, json_out, roc, bins, detector) -> None:
    """Face-verification accuracy of a model (PyTorch artifact or ONNX) on pairs."""
    from .evaluate.embed import load_embedder
    from .outputs import check_output, write_output_json as write_json

    check_output(json_out, "--json", inputs=[model_path, *bins])
    for r in _roc_paths(roc, bins):
        check_output(r, "--roc", "png", inputs=[model_path, *bins])
    if not data and not lfw and not bins:
        raise UserError("nothing to evaluate on; pass --data synthetic, --data DIR, --lfw DIR or --bin FILE")
    from .data.align import photo_config

    align_config = photo_config(detector)
    if bins and (data or lfw):
        raise UserError("--bin evaluates on its own pairs; run it without --data and --lfw (one data set per "
                        "command)")
    for b in bins:  # every file checked before any work
        if not b.is_file():
            raise UserError(f"verification file {b} not found; pass an insightface .bin such as lfw.bin or cfp_fp.bin")
    if data == "synthetic" and not lfw and identities < 4:
        raise UserError(f"--identities {identities}: pair verification needs at least 4 identities "
                        "(2 identity-disjoint folds of 2 people); pass --identities 4 or more (default 100)")
    emb = load_embedder(model_path)
    if bins:
        res = _evaluate_bins(emb, bins, flip=not no_flip, roc=roc)
    elif lfw:
        from .evaluate.lfw import evaluate_lfw

        res = evaluate_lfw(emb, lfw, roc_path=roc, align_config=align_config)
        click.echo(f"{res['model']} [{res['runtime']}, measured on {res['host']}]\n  data: {res['dataset']}\n"
                   f"  protocol: {res['protocol']}\n  aligner: {res['aligner']}")
        for key, line in res["summary"].items():
            click.echo(f"  {'flip fusion' if key == 'flip' else 'no flip'}: {line}")
        if res.get("roc_path"):
            click.echo(f"  ROC: {res['roc_path']}")
    else:
        import numpy as np

        from .data.sources import EVAL_IDENTITY_OFFSET, load_faces
        from .evaluate.pairs_eval import evaluate_pairs, folds_for

        if data != "synthetic":  # count identities and images before decoding any
            from .data.folder import scan_image_folder

            files, _ = scan_image_folder(data)
            folds_for(np.array([y for _, y in files]), data)
        faces = load_faces(data, identities=identities, per_identity=10, first_identity=EVAL_IDENTITY_OFFSET)
        folds = folds_for(faces.labels, faces.source)
        res = evaluate_pairs(emb, faces, folds=folds, flip=not no_flip, progress=True)
        click.echo(f"{res['model']} [{res['runtime']}, measured on {res['host']}]\n  data: {res['dataset']}\n"
                   f"  protocol: {res['protocol']}\n  accuracy: {res['summary']}")
    _say_model(model_path)
    if json_out:
        write_json(json_out, res)


def _roc_paths(roc: Path | None, bins: tuple[Path, ...]) -> list[Path | None]:
    """The ROC file of each --bin (ROC-NAME.png beside --roc with several), or [roc] without --bin."""
    if roc is None or len(bins) <= 1:
        return [roc] * max(1, len(bins))
    return [roc.with_name(f"{roc.stem}-{b.stem}{roc.suffix or '.png'}") for b in bins]


def _evaluate_bins(emb, bins: tuple[Path, ...], flip: bool, roc: Path | None) -> dict:
    """Each .bin through the LFW protocol; printed as each finishes, returned as {file name: result}."""
    from .evaluate.binset import evaluate_bin

    names = [b.name for b in bins]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"two --bin files share the name {twice[0]!r}; their results would collide, rename one")
    out = {}
    for b, roc_path in zip(bins, _roc_paths(roc, bins)):
        res = evaluate_bin(emb, b, flip="both" if flip else False, progress=True, roc_path=roc_path)
        click.echo(f"{res['model']} [{res['runtime']}, measured on {res['host']}]\n  data: {res['dataset']}\n"
                   f"  protocol: {res['protocol']}")
        for key, line in res["summary"].items():
            click.echo(f"  {'flip fusion' if key == 'flip' else 'no flip'}: {line}")
        out[b.name] = res
    return out if len(bins) > 1 else out[bins[0].name]


# ---------------------------------------------------------------- report
@cli.command()
@click.option("--run", "run_dir", default=Path("runs/demo"), show_default=True, type=click.Path(path_type=Path),
              help="pipeline run folder (stages/, accuracy/, exports/, bench/, board/, estimates/, reference/)")
@click.option("--out", type=click.Path(path_type=Path), help="folder for report.md/html/json  [RUN/report]")
def report(run_dir, out) -> None:
    """Per-board report (Markdown, self-contained HTML with plots, JSON) from a run folder; board measurements
    dropped into RUN/board/ are merged as "measured on board"."""
    from .report import write_report
    from .run_folder import PARTS

    if not Path(run_dir).is_dir():
        raise UserError(f"run folder {run_dir} not found; run `compress pipeline` first or pass --run")
    if not any((Path(run_dir) / d).is_dir() for d in PARTS):
        raise UserError(f"{run_dir} is not a pipeline run folder (it holds none of {', '.join(d + '/' for d in PARTS)}); "
                        "pass the folder `compress pipeline` wrote, e.g. --run runs/demo")
    from .outputs import check_report_folder

    check_report_folder(out if out is not None else Path(run_dir) / "report")
    r = write_report(run_dir, out)
    click.echo(f"wrote {', '.join(str(v) for v in r['written'].values())}")


# ---------------------------------------------------------------- gate
@cli.command()
@click.option("--report", "report_path", default=Path("runs/ci"), show_default=True, type=click.Path(path_type=Path),
              help="report.json, or the run folder that holds report/report.json")
@click.option("--baseline", default=Path("reports/ci/baseline.json"), show_default=True,
              type=click.Path(path_type=Path), help="committed baseline of the tracked metrics")
@click.option("--out", type=click.Path(path_type=Path), help="write the gate result JSON here")
@click.option("--update", is_flag=True, help="write the baseline from this report instead (after an intended change)")
def gate(report_path, baseline, out, update) -> None:
    """CI gate: exit 1 when a tracked metric (accuracy, parity, size, MACs) regressed past its tolerance."""
    from .report.gate import format_gate, run_gate, update_baseline

    from .outputs import check_output

    check_output(out, "--out", inputs=[report_path, baseline])
    if update:  # the baseline becomes an output: only a baseline compress wrote is replaced
        check_output(baseline, "--baseline", inputs=[report_path])
        b = update_baseline(report_path, baseline)
        click.echo(f"wrote {baseline} ({len(b['metrics'])} metrics)")
        return
    result = run_gate(report_path, baseline, out)
    click.echo(format_gate(result))
    if not result.passed:
        sys.exit(1)


# ---------------------------------------------------------------- pipeline
@cli.command()
@click.option("--recipe", default="demo", show_default=True, help="recipe name in profiles/ or .toml path")
@click.option("--out", type=click.Path(path_type=Path), help="run folder  [runs/<recipe>]")
@click.option("--report-dir", type=click.Path(path_type=Path),
              help="also copy the report here (e.g. reports/<recipe> to refresh the committed reference)  [none]")
@click.option("--force", is_flag=True, help="recompute stages even when cached")
@click.option("--no-progress", is_flag=True)
def pipeline(recipe, out, report_dir, force, no_progress) -> None:
    """train -> [prune] -> quantize -> export every target -> bench -> estimate -> report, from one recipe,
    reusing stages whose inputs, settings and code did not change."""
    from .outputs import check_report_folder
    from .pipeline import run_pipeline

    if report_dir is not None:  # only when asked: a quick start leaves the committed reports/ as they are
        check_report_folder(report_dir, "--report-dir")
    run_pipeline(recipe, out, force=force, progress=not no_progress, report_dir=report_dir)


@cli.command()
@click.option("--recipe", required=True, help="recipe name in profiles/ or .toml path")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for the runs and the table")
@click.option("--epochs", type=int, help="override the recipe's epochs for every variant")
@click.option("--variant", "variants", multiple=True, help="run only these (repeatable); default: all five")
@click.option("--device", help="auto, cpu, cuda")
@click.option("--no-progress", is_flag=True)
def ablation(recipe, out, epochs, variants, device, no_progress) -> None:
    """ArcFace-w (N = 1, 2, 3) vs ArcFace vs softmax with one recipe; LFW accuracy table in OUT/ablation.md."""
    from .train.ablation import run_ablation, write_table

    rows = run_ablation(recipe, out, epochs=epochs, variants=list(variants) or None, device=device,
                        progress=False if no_progress else None)
    click.echo(write_table(rows, out))


# ---------------------------------------------------------------- identify (the robot's job)
@cli.command()
@click.option("--model", "model_path",
              help="zoo:NAME, a model artifact, an export folder (run in its runtime) or a .onnx/.xml/.tflite file  "
                   f"[the gallery's own; {WARD_MODEL} for a new gallery]")
@click.option("--gallery", "gallery_dir", required=True, type=click.Path(path_type=Path),
              help="one sub-folder per person (the folder name is the person's name), photos inside")
@click.option("--db", required=True, type=click.Path(path_type=Path), help="gallery database (created if new)")
@click.option("--far", default=1e-3, show_default=True, help="open-set false-accept rate the threshold is set at")
@click.option("--calibration", help="faces of people NOT enrolled, for the threshold: 'synthetic', a folder, or "
                                    "lfw-singletons:LFW_DIR  [synthetic on a new gallery (check-dose then needs "
                                    "--allow-uncalibrated); then the stored set]")
@click.option("--calibration-images", default=1000, show_default=True, type=_t(FACES))
@click.option("--no-flip", is_flag=True, help="no horizontal-flip fusion (about half the embedding time)")
@click.option("--aligned", is_flag=True, help="the photos are already aligned 112x112 crops (`compress data align`)")
@click.option("--overwrite", is_flag=True, help="replace the photos of people already enrolled")
@click.option("--detector", help="face detector: yunet, yunet-onet, blazeface or mtcnn  [the gallery's own; "
              f"{ROBOT_DETECTOR} for a new gallery]")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the result as JSON")
def enrol(model_path, gallery_dir, db, far, calibration, calibration_images, no_flip, aligned, overwrite,
          detector, json_out) -> None:
    """Enrol people: detect, align and embed their photos into a SQLite gallery, and set the threshold."""
    from .identify.api import enrol as run, format_enrol
    from .outputs import check_output, write_output_json as write_json

    check_output(json_out, "--json", inputs=[db])

    r = run(model_path, gallery_dir, db, far=far, calibration=calibration, n_calibration=calibration_images,
            flip=not no_flip, aligned=aligned, overwrite=overwrite, detector=detector)
    out, err = format_enrol(r, db)
    click.echo(out)
    if err:
        click.echo(err, err=True)
    if json_out:
        write_json(json_out, {"format": "compress.enrol/1", "model": r.model, "enrolled": r.enrolled,
                              "not_enrolled": r.not_enrolled, "rejected": r.rejected, "threshold": r.threshold})
    if r.not_enrolled:
        sys.exit(1)  # everyone else is enrolled; the exit status says that someone is not


@cli.command()
@click.option("--db", required=True, type=click.Path(path_type=Path), help="gallery database from `compress enrol`")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--top-k", default=3, show_default=True, help="people listed per face")
@click.option("--model", "model_path", help="check that the gallery was enrolled with this model  [its own]")
@click.option("--aligned", is_flag=True, help="the images are already aligned 112x112 crops (one face each)")
@click.option("--detector", help="face detector: yunet, yunet-onet, blazeface or mtcnn  [the one the gallery was enrolled with]")
@click.option("--camera", type=int, help="read frames from this camera index instead of files")
@click.option("--vote", default="3/5", show_default=True, help="video/camera: confirmed after k of the last n frames")
@click.option("--max-frames", type=int, help="video/camera: stop after this many frames")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the answers as JSON")
def identify(db, images, top_k, model_path, aligned, detector, camera, vote, max_frames, json_out) -> None:
    """Who is in each image: per face, the top-k enrolled people with cosine scores, or "unknown" when the
    best score is not above the gallery's threshold. A video file (.mp4, .avi, ...) or --camera N: every frame,
    with a k-of-n vote; exit 0 someone confirmed, 1 nobody (docs/identify.md)."""
    from .identify.video import format_video_summary, identify_video, is_video
    from .outputs import check_output, write_output_json as write_json

    check_output(json_out, "--json", inputs=[db, *images])
    videos = [p for p in images if is_video(p)]
    if camera is not None or videos:
        if len(images) + (camera is not None) != 1:
            raise UserError("identify reads one video or one --camera at a time (and no images with it)")
        r = identify_video(db, videos[0] if videos else None, camera, vote=vote, detector=detector, top_k=top_k,
                           model_spec=model_path, max_frames=max_frames, say=click.echo)
        click.echo(format_video_summary(r))
        if json_out:
            write_json(json_out, r)
        if not r["confirmed"]:
            sys.exit(1)
        return
    if not images:
        raise UserError("nothing to identify; pass image files, a video file, or --camera N")
    from .identify.api import format_identify, identify as run

    r = run(db, list(images), top_k=top_k, model_spec=model_path, aligned=aligned, detector=detector)
    click.echo(format_identify(r))
    if json_out:
        write_json(json_out, r)


@cli.command("check-dose")
@click.option("--db", required=True, type=click.Path(path_type=Path), help="gallery database from `compress enrol`")
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path),
              help="medication plan (TOML: [[patient]] name, [[patient.medication]] drug, times, window_minutes)")
@click.option("--image", type=click.Path(path_type=Path), help="the camera frame (or --video / --camera)")
@click.option("--video", type=click.Path(path_type=Path), help="a clip: confirm on the vote (--vote k/n)")
@click.option("--camera", type=int, help="a camera index: confirm on the vote (--vote k/n)")
@click.option("--vote", default="3/5", show_default=True, help="video/camera: confirmed after k of the last n frames")
@click.option("--max-frames", type=int, help="video/camera: give up after this many frames")
@click.option("--at", "at", help="when, local time: 2026-12-01T08:10 or 08:10 (today); one with an offset or Z "
                                 "is converted to local  [now]")
@click.option("--margin", default=0.05, show_default=True,
              help="a confirmation needs the best score this far (0..1) above the threshold and the runner-up")
@click.option("--allow-uncalibrated", is_flag=True,
              help="confirm even with a threshold not set on real faces (unsafe; every audit row records it)")
@click.option("--aligned", is_flag=True, help="the image is an already aligned 112x112 crop (one face)")
@click.option("--detector", help="face detector: yunet, yunet-onet, blazeface or mtcnn  [the one the gallery was enrolled with]")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="also write the decision as JSON")
def check_dose(db, plan_path, image, video, camera, vote, max_frames, at, margin, allow_uncalibrated, aligned,
               detector, json_out) -> None:
    """Confirm the patient in the image and the medication due, or refuse (unknown face, several faces, low
    confidence, nothing due, already given). Exit 0 confirmed, 1 refused; every check is audited."""
    from .identify.dose import check_dose as run, format_dose
    from .outputs import check_output, write_output_json as write_json

    if sum(x is not None for x in (image, video, camera)) != 1:
        raise UserError("pass exactly one of --image FILE, --video FILE, --camera N")
    check_output(json_out, "--json", inputs=[p for p in (db, plan_path, image, video) if p is not None])
    if image is not None:
        r = run(db, plan_path, image, at, margin=margin, allow_uncalibrated=allow_uncalibrated, aligned=aligned,
                detector=detector)
    else:
        from .identify.video import check_dose_video

        if aligned:
            raise UserError("--aligned takes one --image crop, not a video or camera")
        r = check_dose_video(db, plan_path, video, camera, at, margin=margin, vote=vote, detector=detector,
                             max_frames=max_frames, allow_uncalibrated=allow_uncalibrated, say=click.echo)
    click.echo(format_dose(r))
    if json_out:
        write_json(json_out, r)
    if r["decision"] != "confirmed":
        sys.exit(1)


# ---------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Data helpers: synthetic faces, alignment."""


@data.command("synth")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--identities", default=50, show_default=True, type=_t(Range(1, 100_000, integer=True)))
@click.option("--per-identity", default=20, show_default=True, type=_t(Range(1, 1000, integer=True)))
@click.option("--seed", default=0, show_default=True, type=_t(SEED))
def data_synth(dst, identities, per_identity, seed) -> None:
    """Write built-in SYNTHETIC faces as an ImageFolder (aligned 112x112 PNGs)."""
    from .data.synthetic import write_image_folder

    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst} is not empty; choose an empty or new folder")
    n = write_image_folder(dst, identities, per_identity, seed=seed)
    click.echo(f"wrote {n} synthetic face images of {identities} identities to {dst}")


@data.command("fetch-mtcnn")
@click.option("--force", is_flag=True, help="download again even if present and valid")
def data_fetch_mtcnn(force) -> None:
    """Get MTCNN's weights from the facenet-pytorch wheel on PyPI (the package itself is not installed)."""
    from .data.mtcnn_weights import fetch_weights

    click.echo(f"MTCNN weights in {fetch_weights(force=force)}")


@data.command("align")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--haar", "haar_policy", type=click.Choice(["flag", "drop"]), default="flag", show_default=True,
              help="crops the Haar cascade sees no face in: keep and list them, or drop (and list) them")
@click.option("--no-cache", is_flag=True, help="do not read or write the aligned-crop cache")
@click.option("--batch-size", default=16, show_default=True, type=_t(Range(1, 1024, integer=True)))
@click.option("--detector", default="mtcnn", show_default=True,
              help="face detector: mtcnn (the reference), yunet, yunet-onet or blazeface")
def data_align(src, dst, haar_policy, no_cache, batch_size, detector) -> None:
    """Detect (MTCNN, or --detector) and 5-point align every image under SRC to 112x112 crops in DST (same tree)."""
    from .data.align import align_tree
    from .data.align import photo_config

    r = align_tree(src, dst, haar_policy=haar_policy, cache_dir=False if no_cache else None, batch_size=batch_size,
                   config=photo_config(detector))
    click.echo(f"{r.total} images: {r.aligned} aligned, {r.no_face} no face, {r.unreadable} unreadable, "
               f"{r.haar_rejected} Haar-rejected ({r.haar_policy}), {r.multi_face} multi-face, "
               f"{r.cache_hits} from cache; {r.images_per_s:.1f} img/s. Lists and report in {dst}")


@data.command("snapshot")
@click.option("--recipe", required=True, help="recipe whose training data (and eval_lfw pairs) to pack")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="snapshot file to write (.npz)")
@click.option("--encoding", type=click.Choice(["webp", "jpeg", "png"]), default="webp", show_default=True)
@click.option("--quality", default=75, show_default=True, help="WebP/JPEG quality (1-100) of the training faces")
@click.option("--lfw-quality", default=90, show_default=True, help="quality of the LFW test crops")
@click.option("--no-lfw", is_flag=True, help="leave out the aligned LFW test images")
@click.option("--overwrite", is_flag=True, help="replace an existing snapshot file")
def data_snapshot(recipe, out, encoding, quality, lfw_quality, no_lfw, overwrite) -> None:
    """Pack a recipe's aligned, leakage-filtered training faces and LFW pairs into one file (for a GPU machine)."""
    from .data.snapshot import snapshot_from_recipe
    from .train.config import make_config

    from .outputs import check_output

    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    check_output(out, "--out", "snapshot")
    for name, q in (("--quality", quality), ("--lfw-quality", lfw_quality)):
        if not 1 <= q <= 100:
            raise UserError(f"{name} must be in 1..100, got {q}")
    meta = snapshot_from_recipe(make_config(recipe), out, encoding=encoding, quality=quality,
                                lfw_quality=lfw_quality, lfw=not no_lfw)
    parts = ", ".join(f"{p['name']} {p['count']}" for p in meta["parts"])
    click.echo(f"wrote {out}: {out.stat().st_size / 2**20:.1f} MiB, {meta['encoding']} q{meta['quality']}; {parts}")


@data.command("unpack")
@click.argument("snapshot", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(path_type=Path))
def data_unpack(snapshot, dst) -> None:
    """Unpack a data snapshot into DST: one folder per source and lfw/ (aligned, with pairs.txt)."""
    from .data.snapshot import unpack_snapshot

    for name, folder in unpack_snapshot(snapshot, dst).items():
        click.echo(f"{folder}  <- {name}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; a training run can continue with --resume RUN_FOLDER", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
