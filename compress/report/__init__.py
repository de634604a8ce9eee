"""Per-board report of a pipeline run: collect the run folder, render Markdown / HTML / JSON."""

from .collect import collect
from .gate import GateResult, check, extract_metrics, format_gate, make_baseline, run_gate, update_baseline
from .render import to_html, to_markdown, write_report
from .schema import (ACCURACY_FORMAT, REPORT_FORMAT, AccuracyRecord, accuracy_filename, accuracy_record,
                     exported_stage, validate_accuracy, write_accuracy)

__all__ = ["ACCURACY_FORMAT", "REPORT_FORMAT", "AccuracyRecord", "GateResult", "accuracy_filename", "accuracy_record",
           "check", "collect", "exported_stage", "extract_metrics", "format_gate", "make_baseline", "run_gate",
           "to_html", "to_markdown", "update_baseline", "validate_accuracy", "write_accuracy", "write_report"]
