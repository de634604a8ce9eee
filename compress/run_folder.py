"""The layout of a pipeline run folder: every path `compress pipeline` writes and the report reads.

What each part holds (and the records' formats) is documented in compress/report/schema.py; the names are
here only, so the writer (compress/pipeline.py) and the readers (compress/report/) cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

STAGES = "stages"  # RUN/stages/<folder>/: artifact folders
ACCURACY = "accuracy"  # RUN/accuracy/<accuracy_filename(stage)>: one accuracy record per file
EXPORTS = "exports"  # RUN/exports/<target>-<precision>/: export folders
BENCH = "bench"  # RUN/bench/*.json: latency measured on the host that ran the pipeline
BOARD = "board"  # RUN/board/*.json: latency measured on a board, dropped in by the user
ESTIMATES = "estimates"  # RUN/estimates/<target>-<precision>.json
REFERENCE = "reference"  # RUN/reference/: the reference model's status, accuracy, bench/, board/, openvino/
REPORT = "report"  # RUN/report/report.{md,html,json}
PARTS = (STAGES, ACCURACY, EXPORTS, BENCH, BOARD, ESTIMATES, REFERENCE)  # a run folder holds at least one
STATE_FILE = "pipeline-state.json"  # each pipeline stage's cache key
RESULT_FILE = "result.json"  # the pipeline's summary
REPORT_FILES = {"md": "report.md", "html": "report.html", "json": "report.json"}

# stage folder under RUN/stages -> the accuracy stage name of its model
STAGE_DIRS = {"train": "trained", "prune": "pruned", "finetune": "fine-tuned", "quantize": "quantized"}


def variant(target: str, precision: str) -> str:
    """An export's folder name, and the stem of its bench and estimate files."""
    return f"{target}-{precision}"


def accuracy_filename(stage: str) -> str:
    """Conventional file name under RUN/accuracy/ for a stage ("exported:onnx-fp32" -> "exported-onnx-fp32.json")."""
    return stage.replace(":", "-") + ".json"


def stage_dir(run: Path, folder: str) -> Path:
    return run / STAGES / folder


def accuracy_file(run: Path, stage: str) -> Path:
    return run / ACCURACY / accuracy_filename(stage)


def export_dir(run: Path, target: str, precision: str) -> Path:
    return run / EXPORTS / variant(target, precision)


def bench_file(run: Path, target: str, precision: str) -> Path:
    return run / BENCH / f"{variant(target, precision)}.json"


def estimate_file(run: Path, target: str, precision: str) -> Path:
    return run / ESTIMATES / f"{variant(target, precision)}.json"


def reference_accuracy_file(run: Path) -> Path:
    return run / REFERENCE / "accuracy.json"


def reference_status_file(run: Path) -> Path:
    return run / REFERENCE / "status.json"


def reference_bench_file(run: Path, target: str, precision: str) -> Path:
    return run / REFERENCE / BENCH / f"{variant(target, precision)}.json"


def reference_ir(run: Path) -> Path:
    """The reference ONNX converted to OpenVINO IR."""
    return run / REFERENCE / "openvino" / "reference.xml"


def report_file(report_dir: Path, kind: str) -> Path:
    return report_dir / REPORT_FILES[kind]
