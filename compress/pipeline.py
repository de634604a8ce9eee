"""`compress pipeline`: one recipe, the whole chain, each stage reading and writing an artifact folder.

    train (or load) -> [prune] -> quantize -> export every target -> bench here -> estimate per board -> report

The run folder follows compress/report/schema.py (RUN/stages, RUN/accuracy, RUN/exports, RUN/bench,
RUN/estimates, RUN/reference, RUN/report). Every model stage is evaluated on the same faces and protocol, so
the report's accuracy column is comparable from trained to exported. A stage is reused when its key (its own
settings, the hash of its input artifact and the package's code) matches the one recorded when it was made;
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

from .artifacts import code_fingerprint, file_sha256, tree_sha256, write_json
from .data.sources import EVAL_IDENTITY_OFFSET, load_faces
from .errors import UserError
from .zoo import is_zoo_spec, verified_model_file
from .recipe import EvaluateConfig, load_recipe, resolve_path

STATE_FILE = "pipeline-state.json"


# Code behind every stage's measurement (the evaluators and the accuracy record), part of each stage's cache key.
_MEASURE = ("compress.evaluate.lfw", "compress.evaluate.pairs_eval", "compress.evaluate.embed",
            "compress.report.schema", "compress.evaluate.binset")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Run:
    out: Path
    force: bool
    state: dict[str, str] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        f = self.out / STATE_FILE
        if f.is_file() and not self.force:
            self.state = json.loads(f.read_text())

    def stage(self, name: str, key: Any, outputs: list[Path], make: Callable[[], Any], bar: tqdm,
              code: tuple[str, ...] = ()) -> bool:
        """Run `make` unless the recorded key matches and every output exists. True when it ran. `code`: the
        modules the stage runs (their package imports count too); this file always counts."""
        k = _digest({"key": key, "code": code_fingerprint(*code, *_MEASURE) if code else code_fingerprint(),
                     "pipeline": file_sha256(Path(__file__))})
        t0 = time.perf_counter()
        cached = self.state.get(name) == k and all(p.exists() for p in outputs)
        bar.set_description(f"{name} ({'cached' if cached else 'running'})")
        if not cached:
            self.state.pop(name, None)
            write_json(self.out / STATE_FILE, self.state)
            make()
            self.state[name] = k
            write_json(self.out / STATE_FILE, self.state)
        self.log.append({"stage": name, "cached": cached, "seconds": round(time.perf_counter() - t0, 1)})
        bar.write(f"  {name}: {'cached (same inputs, settings and code)' if cached else 'done'} "
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
        from .report.schema import BIN_PREFIX, accuracy_filename

        return [run_dir / "accuracy" / accuracy_filename(f"{BIN_PREFIX}{stage}:{b.name}") for b in self.bins]

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


def run_pipeline(recipe: str | Path = "demo", out: str | Path | None = None, force: bool = False,
                 progress: bool = True, report_dir: str | Path | None = None) -> dict[str, Any]:
    """Run every stage of `recipe` into `out` (default runs/<recipe>) and write the report into OUT/report and,
    when report_dir is given, a copy there (the CLI's default: reports/<recipe>/); return a summary."""
    from .targets import load_target

    rec = load_recipe(recipe)
    path = rec.path
    out = Path(out) if out else Path("runs") / path.stem
    out.mkdir(parents=True, exist_ok=True)
    cfg = rec.train
    run = Run(out, force)
    ev = _Evaluator(rec.evaluate, cfg.synthetic_seed)
    pq, px, pb = rec.quantize, rec.export, rec.bench
    prune_cfg = rec.prune
    targets = _targets(px.targets)
    ref_path = resolve_path(rec.reference.model) if rec.reference.model else None
    n_stages = 2 + bool(prune_cfg) + 1 + len(targets) + 3 + 1
    t0 = time.perf_counter()
    stages = out / "stages"
    bar = tqdm(total=n_stages, desc="pipeline", unit="stage", disable=not progress, dynamic_ncols=True)
    click.echo(f"pipeline {path.name} -> {out}: train, evaluate, {'prune, ' if prune_cfg else ''}quantize, "
               f"export {len(targets)} targets, bench, estimate, reference, report")

    # 1. train (or load a finished model: [pipeline] model = "...")
    load = rec.pipeline.model
    train_dir = stages / "train"
    if load:
        src = verified_model_file(load) if is_zoo_spec(load) else resolve_path(load)  # zoo:NAME: hash-checked

        def do_load() -> None:
            import shutil

            from .artifacts import artifact_dir
            from .model.io import resolve_model_file

            with artifact_dir(train_dir, "load", overwrite=True) as st:
                shutil.copy2(resolve_model_file(src), st / "model.pt")
                write_json(st / "manifest.json", {"kind": "load", "source": str(src)})
        run.stage("train", {"load": str(src), "sha": tree_sha256(Path(src))}, [train_dir / "model.pt"], do_load, bar,
                  code=("compress.model.io",))
    else:
        from .train.trainer import train

        run.stage("train", cfg.to_dict(), [train_dir / "model.pt"], lambda: train(cfg, train_dir, overwrite=True),
                  bar, code=("compress.train.trainer",))
    model_dir = train_dir

    def evaluate_model(stage: str, model_path: Path) -> Callable[[], Any]:
        def go() -> None:
            from .evaluate.embed import load_embedder

            embedder = load_embedder(model_path)
            _record(out, stage, ev(embedder), ev.flip)
            ev.extra_sets(embedder, out, stage)
        return go

    acc = lambda name: out / "accuracy" / f"{name}.json"  # noqa: E731
    run.stage("evaluate trained", [ev.key(), tree_sha256(model_dir / "model.pt")],
              [acc("trained"), *ev.bin_outputs(out, "trained")],
              evaluate_model("trained", model_dir), bar, code=("compress.model.io",))

    # 2. prune (optional), with its short fine-tuning between and after steps
    if prune_cfg:
        from .prune.run import prune_artifact

        prune_dir = stages / "prune"
        pc = prune_cfg

        def do_prune() -> None:
            prune_artifact(model_dir, prune_dir, schedule=pc.schedule, ratio=pc.ratio, criterion=pc.criterion,
                           round_to=pc.round_to, steps=pc.steps, depth=pc.depth, data=pc.data, align=pc.align,
                           finetune_steps=pc.finetune_steps, finetune_lr=pc.finetune_lr, overwrite=True,
                           progress=False)
            evaluate_model("pruned", prune_dir)()
        run.stage("prune", [asdict(pc), tree_sha256(model_dir / "model.pt"), ev.key()],
                  [prune_dir / "model.pt", acc("pruned"), *ev.bin_outputs(out, "pruned")],
                  do_prune, bar, code=("compress.prune.run",))
        model_dir = prune_dir

    # 3. quantize (NNCF PTQ/QAT), evaluated as the fake-quant PyTorch model
    q_dir = stages / "quantize"

    def do_quantize() -> None:
        from .evaluate.embed import TorchEmbedder
        from .quantize import quantize_artifact
        from .quantize.artifact import load_quantized

        quantize_artifact(model_dir, q_dir, mode=pq.mode, calibration_spec=pq.calibration, n_calibration=pq.images,
                          keep_float=list(pq.keep_float), qat_steps=pq.qat_steps, qat_lr=pq.qat_lr,
                          train_spec=pq.train_data, align=pq.align, overflow_fix=pq.overflow_fix,
                          threads=pq.threads, progress=False, overwrite=True)
        art = load_quantized(q_dir)
        embedder = TorchEmbedder(art.qmodel, name=f"{q_dir} (NNCF fake-quant)")
        _record(out, "quantized", ev(embedder), ev.flip)
        ev.extra_sets(embedder, out, "quantized")
    run.stage("quantize", [asdict(pq), tree_sha256(model_dir / "model.pt"), ev.key()], [q_dir / "quantized.pt",
              acc("quantized"), *ev.bin_outputs(out, "quantized")], do_quantize, bar, code=("compress.quantize",))

    # 4. export every target (int8 from the quantized artifact, float precisions from the float model),
    #    each checked for parity and evaluated through its runtime on the same faces
    from .export.run import export_artifact
    from .export.runtimes import load_runner
    from .report import accuracy_filename, exported_stage

    # Parity on real faces when the recipe evaluates on LFW: its images of people in no test pair.
    parity_spec = px.parity_data or (f"lfw-unpaired:{ev.lfw}" if ev.lfw else None)
    exports = []
    for name, prec in targets:
        e_dir = out / "exports" / f"{name}-{prec}"
        src = q_dir if prec == "int8" else model_dir
        stage = exported_stage(name, prec)

        def do_export(name=name, prec=prec, e_dir=e_dir, src=src, stage=stage) -> None:
            m = export_artifact(src, name, out=e_dir, precision=prec, n_parity=px.parity_images,
                                parity_spec=parity_spec, lfw=None, threads=px.threads,
                                overwrite=True, progress=False)
            runner = load_runner(e_dir / m["model_file"])
            runner.name = f"{e_dir.name}/{m['model_file']}"
            _record(out, stage, ev(runner), ev.flip)
        run.stage(f"export {name} {prec}", [px.parity_images, parity_spec, tree_sha256(src), ev.key()],
                  [e_dir / "manifest.json", out / "accuracy" / accuracy_filename(stage)], do_export, bar,
                  code=("compress.export.run", "compress.export.runtimes"))
        exports.append((name, prec, e_dir))

    # 5. bench every export here (runtime call only, batch 1), 6. estimate every board, 7. the reference model
    from .bench.latency import bench_artifact

    seconds, threads = pb.seconds, pb.threads

    def do_bench() -> None:
        for name, prec, e_dir in exports:
            write_json(out / "bench" / f"{name}-{prec}.json", bench_artifact(e_dir, threads=threads,
                                                                               min_seconds=seconds))
    run.stage("bench", [asdict(pb), [tree_sha256(e / "manifest.json") for *_, e in exports]],
              [out / "bench" / f"{n}-{p}.json" for n, p, _ in exports], do_bench, bar,
              code=("compress.bench.latency",))

    def do_estimate() -> None:
        from .bench.estimate import estimate_latency, reference_estimate
        from .model.io import load_model

        model = load_model(model_dir)
        for name, prec in every_precision:
            rec = _estimate_record(estimate_latency(model, load_target(name), prec))
            rec["reference_estimate"] = reference_estimate(load_target(name), prec)  # MobileFaceNet, same board
            write_json(out / "estimates" / f"{name}-{prec}.json", rec)
    # Estimates need only the layers, not an export: every board at every precision it offers.
    from .targets import list_targets

    every_precision = [(t.name, p) for t in list_targets() for p in t.precisions]
    run.stage("estimate", [every_precision, tree_sha256(model_dir / "model.pt")],
              [out / "estimates" / f"{n}-{p}.json" for n, p in every_precision], do_estimate, bar,
              code=("compress.bench.estimate", "compress.model.io"))

    def do_reference() -> None:
        _reference(out, ref_path, ev, threads, seconds)
    ref_key = [str(ref_path), tree_sha256(ref_path) if ref_path and ref_path.exists() else None, ev.key(), asdict(pb)]
    run.stage("reference", ref_key, [out / "reference" / "status.json"], do_reference, bar,
              code=("compress.bench.latency",))

    # 8. report
    from .report import write_report

    report: dict[str, Any] = {}

    def do_report() -> None:
        report.update(write_report(out))
        if report_dir is not None:
            write_report(out, report_dir)
    run.stage("report", time.time(), [out / "report" / "report.html"], do_report, bar)  # always rewritten
    bar.close()
    summary = {"recipe": str(path), "out": str(out), "stages": run.log,
               "pipeline_seconds": round(time.perf_counter() - t0, 1),
               "report": {k: str(out / "report" / f"report.{k}") for k in ("md", "html", "json")},
               "report_copy": str(report_dir) if report_dir is not None else None}
    write_json(out / "result.json", summary)
    _print_summary(out)
    click.echo(f"pipeline took {summary['pipeline_seconds']} s; report: {out / 'report' / 'report.html'}"
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
        write_json(out / "reference" / "status.json", status)
        return
    from .bench.latency import bench_artifact
    from .evaluate.embed import OnnxEmbedder
    from .report import accuracy_record, write_accuracy

    res = ev(OnnxEmbedder(ref))
    write_accuracy(out, accuracy_record("reference", res, flip="flip" if ev.flip else "no_flip"), reference=True)
    b = bench_artifact(ref, threads=threads, min_seconds=seconds)
    write_json(out / "reference" / "bench" / "onnx-fp32.json", {**b, "target": "onnx", "precision": "fp32"})
    try:
        import openvino as ov

        xml = out / "reference" / "openvino" / "reference.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov.convert_model(str(ref)), str(xml), compress_to_fp16=True)
        b = bench_artifact(xml, threads=threads, min_seconds=seconds)
        write_json(out / "reference" / "bench" / "intel-nuc-fp16.json",
                   {**b, "target": "intel-nuc", "precision": "fp16"})
    except Exception as e:  # OpenVINO's ONNX frontend may reject a foreign model: say so, keep the rest
        status["openvino"] = f"not measured: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    status["status"] = "measured"
    status["tflite"] = "not measured: no ONNX -> TFLite converter without TensorFlow (litert-torch needs torch)"
    write_json(out / "reference" / "status.json", status)


def _print_summary(out: Path) -> None:
    rep = out / "report" / "report.md"
    if rep.is_file():
        text = rep.read_text().split("\n")
        # The per-board table is what a user wants on the terminal; the rest is in the files.
        start = next((i for i, ln in enumerate(text) if ln.startswith("| target")), None)
        if start is not None:
            end = next((i for i in range(start, len(text)) if not text[i].startswith("|")), len(text))
            click.echo("\n".join(text[start:end]))
