"""`compress pipeline`: one recipe, the whole chain, each stage reading and writing an artifact folder.

    train (or load) -> [prune] -> quantize -> export every target -> bench here -> estimate per board -> report

The run folder follows compress/report/schema.py, its names in compress/run_folder.py (RUN/stages,
RUN/accuracy, RUN/exports, RUN/bench, RUN/estimates, RUN/reference, RUN/report). Every model stage is evaluated
on the same faces and protocol, so the report's accuracy column is comparable from trained to exported. The
pipeline is a list of Stage (name, settings, inputs, outputs, run function, code); a stage is reused when its
key (its settings, the hash of its inputs and the package's code) matches the one recorded when it was made;
--force recomputes everything.

Recipe sections besides [train] (all optional, each a typed config in compress/recipe.py with its keys and
defaults): [evaluate] (the evaluation set; bins = extra insightface .bin files, each an extra accuracy row per
PyTorch stage), [prune] (the stage runs only when the recipe has it), [quantize], [export], [bench],
[reference] (an ONNX face model measured in the same runtimes and run; skipped with a note when the file is
absent), [pipeline] model (a finished model instead of training one).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
from tqdm import tqdm

from . import run_folder as rf
from .artifacts import code_fingerprint, file_sha256, tree_sha256, write_json
from .data.sources import EVAL_IDENTITY_OFFSET, load_faces
from .errors import UserError
from .full_recipe import Recipe, load_recipe
from .recipe import EvaluateConfig, resolve_path
from .zoo import is_zoo_spec, verified_model_file

# Code behind every stage's measurement (the evaluators, the accuracy record and the run folder's names), part
# of each stage's cache key.
_MEASURE = ("compress.evaluate.lfw", "compress.evaluate.pairs_eval", "compress.evaluate.embed",
            "compress.report.schema", "compress.evaluate.binset", "compress.run_folder")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One step of the pipeline, reused when its key (its settings, the content of its inputs, its code and
    this file) matches the one recorded when its outputs were made."""
    name: str
    settings: Any  # JSON-able
    inputs: list[Path]  # files or folders it reads (hashed when the stage's turn comes; a missing one hashes as None)
    outputs: list[Path]  # what it writes; all must exist for it to be reused
    run: Callable[[], Any]
    code: tuple[str, ...] = ()  # modules it runs (their package imports count too)

    def key(self) -> str:
        return _digest({"settings": self.settings,
                        "inputs": [tree_sha256(p) if p.exists() else None for p in self.inputs],
                        "code": code_fingerprint(*self.code, *_MEASURE) if self.code else code_fingerprint(),
                        "pipeline": file_sha256(Path(__file__))})


@dataclass
class Run:
    out: Path
    force: bool
    state: dict[str, str] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        f = self.out / rf.STATE_FILE
        if f.is_file() and not self.force:
            self.state = json.loads(f.read_text())

    def stage(self, s: Stage, bar: tqdm) -> bool:
        """Run stage s unless its recorded key matches and every output exists. True when it ran."""
        k = s.key()
        t0 = time.perf_counter()
        cached = self.state.get(s.name) == k and all(p.exists() for p in s.outputs)
        bar.set_description(f"{s.name} ({'cached' if cached else 'running'})")
        if not cached:
            self.state.pop(s.name, None)
            write_json(self.out / rf.STATE_FILE, self.state)
            s.run()
            self.state[s.name] = k
            write_json(self.out / rf.STATE_FILE, self.state)
        self.log.append({"stage": s.name, "cached": cached, "seconds": round(time.perf_counter() - t0, 1)})
        bar.write(f"  {s.name}: {'cached (same inputs, settings and code)' if cached else 'done'} "
                  f"[{self.log[-1]['seconds']} s]")
        bar.update(1)
        return not cached


class _Evaluator:
    """The one evaluation set and protocol every stage is measured with."""

    def __init__(self, ev: EvaluateConfig, seed: int) -> None:
        self.flip = ev.flip
        self.lfw = str(resolve_path(ev.lfw)) if ev.lfw else None
        self.identities = ev.identities
        self.seed = seed
        self._faces = None
        self.bins = [resolve_path(b) for b in ev.bins]
        missing = [b for b in self.bins if not b.is_file()]
        if missing:  # found out now, not after training
            raise UserError(f"[evaluate] bins: {missing[0]} not found; fix the path or drop it from the recipe")

    def key(self) -> dict[str, Any]:
        key = {"flip": self.flip, "lfw": self.lfw, "identities": self.identities, "seed": self.seed}
        return {**key, "bins": [str(b) for b in self.bins]} if self.bins else key  # old caches stay valid

    def bin_outputs(self, run_dir: Path, stage: str) -> list[Path]:
        from .report.schema import BIN_PREFIX

        return [rf.accuracy_file(run_dir, f"{BIN_PREFIX}{stage}:{b.name}") for b in self.bins]

    def extra_sets(self, embedder, run_dir: Path, stage: str) -> None:
        """The stage's model on each extra .bin: one accuracy record per file (stage bin:<stage>:<file>)."""
        from .evaluate.binset import evaluate_bin
        from .report.schema import BIN_PREFIX

        for b in self.bins:
            _record(run_dir, f"{BIN_PREFIX}{stage}:{b.name}", evaluate_bin(embedder, b, flip=self.flip), self.flip)

    def __call__(self, embedder) -> dict[str, Any]:
        if self.lfw:
            from .evaluate.lfw import evaluate_lfw

            return evaluate_lfw(embedder, self.lfw, flip=self.flip, progress=False)
        from .evaluate.pairs_eval import evaluate_pairs

        if self._faces is None:
            self._faces = load_faces("synthetic", identities=self.identities, per_identity=10, seed=self.seed,
                                     first_identity=EVAL_IDENTITY_OFFSET, progress=False)
        return evaluate_pairs(embedder, self._faces, folds=10, flip=self.flip)


def _record(run_dir: Path, stage: str, result: dict[str, Any], flip: bool) -> dict[str, Any]:
    from .report import accuracy_record, write_accuracy

    rec = accuracy_record(stage, result, flip="flip" if flip else "no_flip")
    write_accuracy(run_dir, rec)
    return rec.to_dict()


def _targets(spec: Any) -> list[tuple[str, str]]:
    """[(target, precision)]: "all" = every target at its default precision; entries "name" or "name:prec"."""
    from .targets import list_targets, load_target

    spec = list(spec) if isinstance(spec, tuple) else spec  # a recipe's array
    if spec in (None, "all", ["all"]):
        return [(t.name, t.default_precision) for t in list_targets()]
    if isinstance(spec, str):  # one target: targets = "onnx" means ["onnx"], not its letters
        spec = [spec]
    if not isinstance(spec, list) or not spec or not all(isinstance(x, str) for x in spec):
        raise UserError(f"[export] targets must be \"all\" or a non-empty list of target names (\"name\" or "
                        f"\"name:precision\"), got {spec!r}")
    out = []
    for item in spec:
        name, _, prec = str(item).partition(":")
        t = load_target(name)
        prec = prec or t.default_precision
        if prec not in t.precisions:
            raise UserError(f"[export] {item}: target {name} offers {', '.join(t.precisions)}")
        out.append((t.name, prec))
    return out


@dataclass
class _Plan:
    """What every stage builder needs: the recipe, the run folder, the evaluator, the float model's folder."""
    rec: Recipe
    out: Path
    ev: _Evaluator
    model_dir: Path  # the float model the later stages take: stages/prune when pruning, else stages/train
    progress: bool = True  # per-epoch bars of the training stage (not part of any stage's key)


def _evaluate_model(p: _Plan, stage: str, model_dir: Path) -> Callable[[], None]:
    def go() -> None:
        from .evaluate.embed import load_embedder

        embedder = load_embedder(model_dir)
        _record(p.out, stage, p.ev(embedder), p.ev.flip)
        p.ev.extra_sets(embedder, p.out, stage)
    return go


def _accuracy_outputs(p: _Plan, stage: str) -> list[Path]:
    return [rf.accuracy_file(p.out, stage), *p.ev.bin_outputs(p.out, stage)]


def _train_stages(p: _Plan) -> list[Stage]:
    """Train (or load a finished model: [pipeline] model = "..."), then evaluate it."""
    train_dir = rf.stage_dir(p.out, "train")
    model = [train_dir / "model.pt"]
    load = p.rec.pipeline.model
    if load:
        src = Path(verified_model_file(load) if is_zoo_spec(load) else resolve_path(load))  # zoo:NAME: hash-checked

        def do_load() -> None:
            import shutil

            from .artifacts import artifact_dir
            from .model.io import resolve_model_file

            with artifact_dir(train_dir, "load", overwrite=True) as st:
                shutil.copy2(resolve_model_file(src), st / "model.pt")
                write_json(st / "manifest.json", {"kind": "load", "source": str(src)})
        first = Stage("train", {"load": str(src)}, [src], model, do_load, ("compress.model.io",))
    else:
        def do_train() -> None:
            from .train.trainer import train

            import dataclasses

            cfg = p.rec.train if p.progress else dataclasses.replace(p.rec.train, progress=False)
            train(cfg, train_dir, overwrite=True)
        first = Stage("train", p.rec.train.to_dict(), [], model, do_train, ("compress.train.trainer",))
    return [first, Stage("evaluate trained", p.ev.key(), model, _accuracy_outputs(p, "trained"),
                         _evaluate_model(p, "trained", train_dir), ("compress.model.io",))]


def _prune_stage(p: _Plan) -> Stage:
    """Prune, with its short fine-tuning between and after steps; the pruned model is evaluated."""
    pc, src, prune_dir = p.rec.prune, rf.stage_dir(p.out, "train"), rf.stage_dir(p.out, "prune")

    def do_prune() -> None:
        from .prune.folders import prune_artifact

        prune_artifact(src, prune_dir, schedule=pc.schedule, ratio=pc.ratio, criterion=pc.criterion,
                       round_to=pc.round_to, steps=pc.steps, depth=pc.depth, data=pc.data, align=pc.align,
                       finetune_steps=pc.finetune_steps, finetune_lr=pc.finetune_lr, overwrite=True, progress=False)
        _evaluate_model(p, "pruned", prune_dir)()
    return Stage("prune", [asdict(pc), p.ev.key()], [src / "model.pt"],
                 [prune_dir / "model.pt", *_accuracy_outputs(p, "pruned")], do_prune, ("compress.prune.folders",))


def _quantize_stage(p: _Plan) -> Stage:
    """NNCF PTQ/QAT, evaluated as the fake-quant PyTorch model."""
    pq, q_dir = p.rec.quantize, rf.stage_dir(p.out, "quantize")

    def do_quantize() -> None:
        from .evaluate.embed import TorchEmbedder
        from .quantize import quantize_artifact
        from .quantize.artifact import load_quantized

        quantize_artifact(p.model_dir, q_dir, mode=pq.mode, calibration_spec=pq.calibration, n_calibration=pq.images,
                          keep_float=list(pq.keep_float), qat_steps=pq.qat_steps, qat_lr=pq.qat_lr,
                          train_spec=pq.train_data, align=pq.align, overflow_fix=pq.overflow_fix,
                          threads=pq.threads, activations=pq.activations, progress=False, overwrite=True)
        embedder = TorchEmbedder(load_quantized(q_dir).qmodel, name=f"{q_dir} (NNCF fake-quant)")
        _record(p.out, "quantized", p.ev(embedder), p.ev.flip)
        p.ev.extra_sets(embedder, p.out, "quantized")
    return Stage("quantize", [asdict(pq), p.ev.key()], [p.model_dir / "model.pt"],
                 [q_dir / "quantized.pt", *_accuracy_outputs(p, "quantized")], do_quantize, ("compress.quantize",))


def _export_stage(p: _Plan, name: str, prec: str) -> Stage:
    """One target: int8 from the quantized artifact, float precisions from the float model; checked for parity
    and evaluated through its runtime on the same faces."""
    from .report.schema import exported_stage

    px, e_dir, stage = p.rec.export, rf.export_dir(p.out, name, prec), exported_stage(name, prec)
    src = rf.stage_dir(p.out, "quantize") if prec == "int8" else p.model_dir
    # Parity on real faces when the recipe evaluates on LFW: its images of people in no test pair.
    parity_spec = px.parity_data or (f"lfw-unpaired:{p.ev.lfw}" if p.ev.lfw else None)

    def do_export() -> None:
        from .export.folders import export_artifact
        from .export.runtimes import load_runner

        m = export_artifact(src, name, out=e_dir, precision=prec, n_parity=px.parity_images, parity_spec=parity_spec,
                            lfw=None, threads=px.threads, overwrite=True, progress=False)
        runner = load_runner(e_dir / m["model_file"])
        runner.name = f"{e_dir.name}/{m['model_file']}"
        _record(p.out, stage, p.ev(runner), p.ev.flip)
    return Stage(f"export {name} {prec}", [px.parity_images, parity_spec, p.ev.key()], [src],
                 [e_dir / "manifest.json", rf.accuracy_file(p.out, stage)], do_export,
                 ("compress.export.folders", "compress.export.runtimes"))


def _bench_stage(p: _Plan, targets: list[tuple[str, str]]) -> Stage:
    """Every export benched here (runtime call only, batch 1)."""
    pb = p.rec.bench

    def do_bench() -> None:
        from .bench.latency import bench_artifact

        for name, prec in targets:
            write_json(rf.bench_file(p.out, name, prec), bench_artifact(rf.export_dir(p.out, name, prec),
                                                                        threads=pb.threads, min_seconds=pb.seconds))
    return Stage("bench", asdict(pb), [rf.export_dir(p.out, n, q) / "manifest.json" for n, q in targets],
                 [rf.bench_file(p.out, n, q) for n, q in targets], do_bench, ("compress.bench.latency",))


def _estimate_stage(p: _Plan) -> Stage:
    """Estimates need only the layers, not an export: every board at every precision it offers."""
    from .targets import list_targets, load_target

    every_precision = [(t.name, q) for t in list_targets() for q in t.precisions]

    def do_estimate() -> None:
        from .bench.estimate import estimate_latency, reference_estimate
        from .model.io import load_model

        model = load_model(p.model_dir)
        for name, prec in every_precision:
            rec = _estimate_record(estimate_latency(model, load_target(name), prec))
            rec["reference_estimate"] = reference_estimate(load_target(name), prec)  # MobileFaceNet, same board
            write_json(rf.estimate_file(p.out, name, prec), rec)
    return Stage("estimate", every_precision, [p.model_dir / "model.pt"],
                 [rf.estimate_file(p.out, n, q) for n, q in every_precision], do_estimate,
                 ("compress.bench.estimate", "compress.model.io"))


def _reference_stage(p: _Plan) -> Stage:
    model, pb = p.rec.reference.model, p.rec.bench
    ref = resolve_path(model) if model else None
    return Stage("reference", [str(ref), p.ev.key(), asdict(pb)], [ref] if ref else [],
                 [rf.reference_status_file(p.out)], lambda: _reference(p.out, ref, p.ev, pb.threads, pb.seconds),
                 ("compress.bench.latency",))


def _report_stage(p: _Plan, report_dir: Path | None) -> Stage:
    """Always rewritten (its key holds the time); a copy goes to report_dir when given."""
    def do_report() -> None:
        from .report import write_report

        write_report(p.out)
        if report_dir is not None:
            write_report(p.out, report_dir)
    return Stage("report", time.time(), [], [rf.report_file(p.out / rf.REPORT, "html")], do_report)


def _stages(p: _Plan, targets: list[tuple[str, str]], report_dir: Path | None) -> list[Stage]:
    return [*_train_stages(p), *([_prune_stage(p)] if p.rec.prune else []), _quantize_stage(p),
            *(_export_stage(p, name, prec) for name, prec in targets), _bench_stage(p, targets), _estimate_stage(p),
            _reference_stage(p), _report_stage(p, report_dir)]


def run_pipeline(recipe: str | Path = "demo", out: str | Path | None = None, force: bool = False,
                 progress: bool = True, report_dir: str | Path | None = None) -> dict[str, Any]:
    """Run every stage of `recipe` into `out` (default runs/<recipe>) and write the report into OUT/report and,
    when report_dir is given, a copy there (none by default: the committed reports/<recipe>/ change only when asked);
    return a summary."""
    rec = load_recipe(recipe)
    out = Path(out) if out else Path("runs") / rec.path.stem
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, force)
    ev = _Evaluator(rec.evaluate, rec.train.synthetic_seed)
    targets = _targets(rec.export.targets)
    model_dir = rf.stage_dir(out, "prune" if rec.prune else "train")
    stages = _stages(_Plan(rec, out, ev, model_dir, progress), targets, Path(report_dir) if report_dir is not None else None)
    t0 = time.perf_counter()
    bar = tqdm(total=len(stages), desc="pipeline", unit="stage", disable=not progress, dynamic_ncols=True)
    click.echo(f"pipeline {rec.path.name} -> {out}: train, evaluate, {'prune, ' if rec.prune else ''}quantize, "
               f"export {len(targets)} targets, bench, estimate, reference, report")
    for s in stages:
        run.stage(s, bar)
    bar.close()
    summary = {"recipe": str(rec.path), "out": str(out), "stages": run.log,
               "pipeline_seconds": round(time.perf_counter() - t0, 1),
               "report": {k: str(rf.report_file(out / rf.REPORT, k)) for k in rf.REPORT_FILES},
               "report_copy": str(report_dir) if report_dir is not None else None}
    write_json(out / rf.RESULT_FILE, summary)
    _print_summary(out)
    click.echo(f"pipeline took {summary['pipeline_seconds']} s; report: {rf.report_file(out / rf.REPORT, 'html')}"
               + (f" (copy in {report_dir})" if report_dir is not None else ""))
    return summary


def _estimate_record(r: dict[str, Any]) -> dict[str, Any]:
    """The report's estimate fields, plus the estimator's full result."""
    loo = r.get("loo", {})
    return {"target": r["target"], "precision": r["precision"], "latency_ms": r.get("estimate_ms"),
            "label": r.get("label", ""),
            "loo": {"mean_abs_rel_error": loo.get("mean_abs_rel_error"), "n": len(loo.get("rows", [])),
                    "max_abs_rel_error": loo.get("max_abs_rel_error")},
            "estimator": r}


def _reference(out: Path, ref: Path | None, ev: _Evaluator, threads: int, seconds: float) -> None:
    """The reference face model (MobileFaceNet ONNX) in the same runtimes and run: onnxruntime (fp32) and
    OpenVINO (IR converted from the ONNX, fp16 weights), plus its accuracy on the pipeline's evaluation set."""
    status: dict[str, Any] = {"model": str(ref) if ref else None}
    if ref is None or not ref.is_file():
        status["status"] = ("not measured: no [reference] model in the recipe" if ref is None else
                            f"not measured: {ref} not found (it lives in ../shared; absent on a fresh clone)")
        write_json(rf.reference_status_file(out), status)
        return
    from .bench.latency import bench_artifact
    from .evaluate.embed import OnnxEmbedder
    from .report import accuracy_record, write_accuracy

    res = ev(OnnxEmbedder(ref))
    write_accuracy(out, accuracy_record("reference", res, flip="flip" if ev.flip else "no_flip"), reference=True)
    b = bench_artifact(ref, threads=threads, min_seconds=seconds)
    write_json(rf.reference_bench_file(out, "onnx", "fp32"), {**b, "target": "onnx", "precision": "fp32"})
    try:
        import openvino as ov

        xml = rf.reference_ir(out)
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov.convert_model(str(ref)), str(xml), compress_to_fp16=True)
        b = bench_artifact(xml, threads=threads, min_seconds=seconds)
        write_json(rf.reference_bench_file(out, "intel-nuc", "fp16"),
                   {**b, "target": "intel-nuc", "precision": "fp16"})
    except Exception as e:  # OpenVINO's ONNX frontend may reject a foreign model: say so, keep the rest
        status["openvino"] = f"not measured: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    status["status"] = "measured"
    status["tflite"] = "not measured: no ONNX -> TFLite converter without TensorFlow (litert-torch needs torch)"
    write_json(rf.reference_status_file(out), status)


def _print_summary(out: Path) -> None:
    rep = rf.report_file(out / rf.REPORT, "md")
    if rep.is_file():
        text = rep.read_text().split("\n")
        # The per-board table is what a user wants on the terminal; the rest is in the files.
        start = next((i for i, ln in enumerate(text) if ln.startswith("| target")), None)
        if start is not None:
            end = next((i for i in range(start, len(text)) if not text[i].startswith("|")), len(text))
            click.echo("\n".join(text[start:end]))
