"""The run folder the report reads, and the accuracy record every stage writes into it.

Run folder layout (every part is optional; a missing part is reported as "not run" / "not measured"; the names
are defined in compress/run_folder.py)::

    RUN/stages/<stage>/                    artifact folders, <stage> in STAGE_DIRS: train, prune, finetune
                                           (model.pt + manifest.json), quantize (quantized artifact: model.pt,
                                           quantized.pt, calibration.npz, manifest.json)
    RUN/accuracy/<file>.json               one AccuracyRecord per file ("compress.accuracy/1", below); the file
                                           name is free (accuracy_filename(stage) is the convention), the
                                           record's "stage" field says what it is
    RUN/exports/<target>-<precision>/      export folders from `compress export` (manifest.json, parity.json, model)
    RUN/bench/*.json                       "compress.bench/1" records measured on the host that ran the pipeline
                                           (matched to an export by the record's target + precision fields)
    RUN/board/*.json                       optional "compress.bench/1" records measured ON THE BOARD
                                           (`python3 run_on_board.py` from the export bundle, or `compress
                                           bench`, run on the Jetson / Pi / NUC), matched the same way; the
                                           runner's "board" identity and "parity" (cosine vs the PyTorch float
                                           embeddings, on the board) are shown too
    RUN/estimates/*.json                   per-board latency estimates: {"target", "precision", "latency_ms",
                                           "label", "loo": {"mean_abs_rel_error": float|None, "n": int, ...},
                                           optional "reference_estimate": {"network", "latency_ms", "label"}
                                           (MobileFaceNet on the same board and calibration), ...}
    RUN/reference/bench/*.json             the reference model (MobileFaceNet) benched in the same runtime(s) and
                                           run ("compress.bench/1"; matched by target + precision, else runtime +
                                           precision); RUN/reference/board/*.json likewise, measured on a board
    RUN/reference/accuracy.json            the reference model's AccuracyRecord (stage "reference")
    RUN/report/                            what write_report() writes: report.md, report.html, report.json

AccuracyRecord ("compress.accuracy/1"), one JSON object::

    format        "compress.accuracy/1"  (optional on read, always written by accuracy_record())
    stage         "trained" | "pruned" | "fine-tuned" | "quantized" | "exported:<target>-<precision>" | "reference"
                  | "bin:<stage>:<file>" (the stage's model on an extra verification .bin; its own data set)
    model         str, what was evaluated (artifact path or name)
    runtime       str, what ran it ("pytorch", "onnxruntime", "openvino", "litert", ...)
    dataset       str, e.g. "LFW deep-funneled, View 2, 6000 pairs" or the synthetic set's description
    protocol      str, e.g. "10-fold cross-validation ..."; every stage should use the same dataset + protocol
    accuracy      float, PERCENT in [0, 100] (k-fold mean)
    accuracy_std  float, percent, >= 0 (k-fold population std)
    summary       str, one line (VerificationResult.summary())
    roc           optional str | null: path to a ROC, either a PNG or a JSON holding {"fpr": [...], "tpr": [...]}
                  (also accepted: a VerificationResult.to_dict() with "roc", an evaluate_pairs result with
                  "result.roc", an evaluate_lfw result with "results.<flip|no_flip>.roc"). A relative path is
                  resolved against RUN/ first, then against the folder of the accuracy file.
    synthetic     optional bool: true when the dataset is synthetic (the report says so)
    host          optional str: where it was evaluated
    notes         optional str
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..run_folder import STAGE_DIRS, accuracy_file, accuracy_filename, reference_accuracy_file  # noqa: F401

REPORT_FORMAT = "compress.report/1"
ACCURACY_FORMAT = "compress.accuracy/1"
BENCH_FORMAT = "compress.bench/1"

STAGE_ORDER = ("trained", "pruned", "fine-tuned", "quantized")
REFERENCE_STAGE = "reference"
EXPORTED_PREFIX = "exported:"
BIN_PREFIX = "bin:"  # "bin:trained:cfp_fp.bin": extra rows, each on its own data set

def runtime_label(rec: dict[str, Any]) -> str:
    """A record's runtime, saying so when an int8 model's integer part was emulated in float on this host."""
    runtime = str(rec.get("runtime", "?"))
    return runtime + " (int8 emulated in float)" if str(rec.get("int8_execution", "")).startswith("emulated") \
        else runtime


_REQUIRED = ("stage", "model", "runtime", "dataset", "protocol", "accuracy", "accuracy_std", "summary")
_OPTIONAL = ("format", "roc", "synthetic", "host", "notes")


@dataclass
class AccuracyRecord:
    stage: str
    model: str
    runtime: str
    dataset: str
    protocol: str
    accuracy: float  # percent
    accuracy_std: float  # percent
    summary: str
    roc: str | None = None
    synthetic: bool | None = None
    host: str | None = None
    notes: str | None = None
    format: str = ACCURACY_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def valid_stage(stage: str) -> bool:
    if stage in STAGE_ORDER or stage == REFERENCE_STAGE:
        return True
    if stage.startswith(EXPORTED_PREFIX):
        rest = stage[len(EXPORTED_PREFIX):]
        return "-" in rest and not rest.startswith("-") and not rest.endswith("-")
    if stage.startswith(BIN_PREFIX):
        of, _, name = stage[len(BIN_PREFIX):].partition(":")
        return of in STAGE_ORDER and name.endswith(".bin") and "/" not in name
    return False


def exported_stage(target: str, precision: str) -> str:
    return f"{EXPORTED_PREFIX}{target}-{precision}"


def validate_accuracy(d: Any, origin: str = "<accuracy>") -> AccuracyRecord:
    """Check an accuracy mapping against the schema above; raise UserError naming origin and the field."""
    if not isinstance(d, dict):
        raise UserError(f"{origin}: an accuracy record must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise UserError(f"{origin}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_REQUIRED + _OPTIONAL)}")
    for k in _REQUIRED:
        if k not in d:
            raise UserError(f"{origin}: missing field '{k}'")
    if d.get("format", ACCURACY_FORMAT) != ACCURACY_FORMAT:
        raise UserError(f"{origin}: format must be {ACCURACY_FORMAT!r}, got {d['format']!r}")
    for k in ("stage", "model", "runtime", "dataset", "protocol", "summary"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise UserError(f"{origin}: {k} must be a non-empty string, got {d[k]!r}")
    if not valid_stage(d["stage"]):
        raise UserError(f"{origin}: stage must be one of {list(STAGE_ORDER) + [REFERENCE_STAGE]} or "
                        f"'exported:<target>-<precision>', got {d['stage']!r}")
    for k, hi in (("accuracy", 100.0), ("accuracy_std", 100.0)):
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= hi:
            raise UserError(f"{origin}: {k} must be a number in [0, {hi:g}] (percent), got {v!r}")
    if d.get("roc") is not None and not isinstance(d["roc"], str):
        raise UserError(f"{origin}: roc must be a path string or null, got {d['roc']!r}")
    if d.get("synthetic") is not None and not isinstance(d["synthetic"], bool):
        raise UserError(f"{origin}: synthetic must be true or false, got {d['synthetic']!r}")
    for k in ("host", "notes"):
        if d.get(k) is not None and not isinstance(d[k], str):
            raise UserError(f"{origin}: {k} must be a string, got {d[k]!r}")
    return AccuracyRecord(stage=d["stage"], model=d["model"], runtime=d["runtime"], dataset=d["dataset"],
                          protocol=d["protocol"], accuracy=float(d["accuracy"]),
                          accuracy_std=float(d["accuracy_std"]), summary=d["summary"], roc=d.get("roc"),
                          synthetic=d.get("synthetic"), host=d.get("host"), notes=d.get("notes"))


def accuracy_record(stage: str, result: dict[str, Any], roc: str | Path | None = None, flip: str = "flip",
                    notes: str | None = None) -> AccuracyRecord:
    """An AccuracyRecord from what compress.evaluate returns: evaluate_pairs (accuracy as a fraction) or
    evaluate_lfw (results[flip|no_flip]); fractions become percent. Validated before it is returned."""
    if "results" in result:  # evaluate_lfw
        key = flip if flip in result["results"] else next(iter(result["results"]))
        r = result["results"][key]
        acc, std, summary = r["accuracy_mean"], r["accuracy_std"], result["summary"][key]
        protocol = f"{result['protocol']}; {'flip fusion' if key == 'flip' else 'no flip'}"
    else:  # evaluate_pairs
        acc, std, summary, protocol = result["accuracy"], result["accuracy_std"], result["summary"], result["protocol"]
    dataset = str(result["dataset"])
    rec = {"stage": stage, "model": str(result.get("model", "?")), "runtime": runtime_label(result),
           "dataset": dataset, "protocol": protocol, "accuracy": 100.0 * float(acc),
           "accuracy_std": 100.0 * float(std), "summary": summary,
           "synthetic": "SYNTHETIC" in dataset.upper(), "host": result.get("host")}
    if roc is not None:
        rec["roc"] = str(roc)
    if notes:
        rec["notes"] = notes
    return validate_accuracy(rec, f"accuracy record for {stage}")


def write_accuracy(run_dir: str | Path, record: AccuracyRecord | dict[str, Any], reference: bool = False) -> Path:
    """Validate and write a record to RUN/accuracy/<accuracy_filename(stage)> (RUN/reference/accuracy.json
    when reference is set), atomically."""
    from ..artifacts import write_json

    rec = record if isinstance(record, AccuracyRecord) else validate_accuracy(record)
    rec = validate_accuracy(rec.to_dict())
    run = Path(run_dir)
    path = reference_accuracy_file(run) if reference else accuracy_file(run, rec.stage)
    return write_json(path, rec.to_dict())


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from path, or None when missing; a corrupt file raises UserError naming it."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); rewrite it or remove it from the run folder") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    return obj
