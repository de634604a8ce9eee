"""The table of export formats (in the manner of Ultralytics' exporter): one exporter function per format.

    name       suffix    target runtime  checked here by   precisions
    onnx       .onnx     onnxruntime     onnxruntime       fp32 (plain), int8 (QDQ from the NNCF model)
    tensorrt   .onnx     tensorrt        onnxruntime       fp32/fp16 (float ONNX + --fp16), int8 (QDQ ONNX)
    openvino   .xml      openvino        openvino          fp32, fp16 (float model), int8 (NNCF model)
    tflite     .tflite   tflite          litert            fp32, int8 (PT2E quantizer through litert-torch)

Every exporter takes an ExportJob (models, precision, target, staging folder) and returns an ExportOutput
(files written, input spec, opset, format details, extra parity runners). Every ONNX file goes through
onnxsim and onnx.checker, at opset min(17, target.onnx_opset_max), read back from the written file.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data.transforms import NORMALIZATION, to_float
from ..errors import UserError
from ..targets import Target
from . import onnx_rewrites
from .runtimes import require

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "embedding"


@dataclass
class ExportJob:
    float_model: nn.Module  # FaceMobileNet, eval
    precision: str
    target: Target
    stage: Path  # folder the files go into
    qmodel: nn.Module | None = None  # NNCF fake-quant model (int8 only)
    calibration: np.ndarray | None = None  # uint8 [N,112,112,3] (int8 only)
    keep_float: list[str] = field(default_factory=list)
    progress: bool = True

    @property
    def input_size(self) -> int:
        return getattr(getattr(self.float_model, "schedule", None), "input_size", 112)

    def log(self, msg: str) -> None:
        if self.progress:
            print(f"[export {self.target.name}/{self.precision}] {msg}", file=sys.stderr, flush=True)


@dataclass
class ExportOutput:
    model_file: str  # name inside the stage folder of the file a runner loads
    files: list[str]
    input: dict[str, Any]
    opset: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # extra parity checks: (key, Embedder, description of what it emulates)
    extra_runners: list[tuple[str, Any, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    target_runtime: str  # the targets/*.toml runtime this format serves
    checked_by: str  # runtime that runs the file on this host (compress.export.runtimes)
    precisions: tuple[str, ...]
    export: Callable[[ExportJob], ExportOutput]
    description: str


# ---------------------------------------------------------------- helpers
def onnx_opset(target: Target) -> int:
    return min(DEFAULT_OPSET, target.onnx_opset_max or DEFAULT_OPSET)


def _nchw_spec(size: int, dtype: str = "float32") -> dict:
    return {"name": INPUT_NAME, "shape": [1, 3, size, size], "layout": "NCHW", "dtype": dtype,
            "normalisation": NORMALIZATION, "quantization": None}


def _qdq_counts(model) -> dict:
    ops = [n.op_type for n in model.graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


def _file_opset(model) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _qdq_export_copy(qmodel: nn.Module) -> nn.Module:
    """A deep copy of an NNCF model whose quantizers export as ONNX QuantizeLinear/DequantizeLinear pairs."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    q = copy.deepcopy(qmodel).eval()
    n = 0
    for m in q.modules():
        if isinstance(m, BaseQuantizer):
            m._export_mode = QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS
            n += 1
    if n == 0:
        raise UserError("the quantized model has no NNCF quantizers; re-run `compress quantize`")
    return q


def write_onnx(module: nn.Module, path: Path, opset: int, size: int, qdq: bool = False,
               rewrite: Callable[[Any], dict] | None = None) -> dict:
    """torch (legacy exporter, static batch 1) -> onnxsim -> `rewrite` (in memory, for the target runtime) ->
    onnx.checker -> `path`; returns details. The opset is read back from the written file and must equal `opset`."""
    import onnx

    onnxsim = require("onnxsim", "onnxsim", "simplifying the ONNX export")
    x = torch.zeros(1, 3, size, size)
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(module, x, str(raw), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], do_constant_folding=True)
        model = onnx.load(str(raw))
    before = _qdq_counts(model)
    simplified, ok = onnxsim.simplify(model)
    how = "onnxsim.simplify"
    if ok and qdq and _qdq_counts(simplified)["DequantizeLinear"] < before["DequantizeLinear"]:
        # constant folding would fold weight Q/DQ pairs into float weights: keep them (TensorRT needs them)
        simplified, ok = onnxsim.simplify(model, skip_constant_folding=True)
        how = "onnxsim.simplify(skip_constant_folding=True): constant folding would remove weight Q/DQ pairs"
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model against the original")
    rewrites = rewrite(simplified) if rewrite else {}
    onnx.checker.check_model(simplified, full_check=True)
    onnx.save(simplified, str(path))
    back = onnx.load(str(path))
    written = _file_opset(back)
    if written != opset:
        raise RuntimeError(f"{path.name} has opset {written}, expected {opset}")
    inp = back.graph.input[0].type.tensor_type.shape.dim
    return {"opset": written, "simplified": how, "checker": "onnx.checker.check_model(full_check=True): passed",
            "nodes": len(back.graph.node), "input_shape": [d.dim_value or d.dim_param for d in inp],
            **({"qdq_nodes": _qdq_counts(back)} if qdq else {}), **rewrites}


def _need_qmodel(job: ExportJob) -> nn.Module:
    if job.qmodel is None:
        raise UserError("int8 needs a quantized model; run `compress quantize --model M` first")
    return job.qmodel


def _write_job_onnx(job: ExportJob, name: str, opset: int, rewrite: Callable[[Any], dict] | None = None) -> dict:
    """The job's model as ONNX: QDQ from the NNCF model for int8, the float model otherwise."""
    if job.precision == "int8":
        return write_onnx(_qdq_export_copy(_need_qmodel(job)), job.stage / name, opset, job.input_size, qdq=True,
                          rewrite=rewrite)
    return write_onnx(job.float_model, job.stage / name, opset, job.input_size, rewrite=rewrite)


def _for_onnxruntime(model) -> dict:
    """In-memory rewrites for onnxruntime (see onnx_rewrites): shuffles as Gather; int8 through data movement."""
    out = {"onnxruntime_rewrites": {"channel_shuffles_as_gather": onnx_rewrites.shuffle_as_gather(model)}}
    if any(n.op_type == "DequantizeLinear" for n in model.graph.node):
        out["onnxruntime_rewrites"]["data_movement_qdq_pairs"] = onnx_rewrites.quantize_data_movement(model)
    return out


def _for_tensorrt_int8(model) -> dict:
    """In-memory rewrites for TensorRT's explicit quantization: int8 through data movement, then every
    activation quantizer in TensorRT's signed symmetric form."""
    pairs = onnx_rewrites.quantize_data_movement(model)
    return {"tensorrt_qdq": {**onnx_rewrites.signed_symmetric_activations(model), "data_movement_qdq_pairs": pairs}}


# ---------------------------------------------------------------- onnx
def export_onnx(job: ExportJob) -> ExportOutput:
    opset = onnx_opset(job.target)
    name = "model.onnx"
    if job.precision == "int8":
        job.log(f"ONNX QDQ from the NNCF model, opset {opset}")
    else:
        job.log(f"ONNX fp32, opset {opset}")
    details = _write_job_onnx(job, name, opset, _for_onnxruntime)
    if job.precision == "int8":
        details["quantization"] = "NNCF fake-quant exported as QuantizeLinear/DequantizeLinear pairs (QDQ)"
    return ExportOutput(name, [name], _nchw_spec(job.input_size), opset, details)


# ---------------------------------------------------------------- tensorrt
def _polygraphy_lint(onnx_path: Path) -> dict:
    exe = Path(sys.executable).with_name("polygraphy")
    cmd_exe = str(exe) if exe.exists() else shutil.which("polygraphy")
    if not cmd_exe:
        return {"tool": "polygraphy check lint", "ran": False, "reason": "polygraphy not installed (pip install polygraphy)"}
    report = onnx_path.with_name("polygraphy-lint.json")
    try:
        r = subprocess.run([cmd_exe, "check", "lint", str(onnx_path), "-o", str(report)], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "POLYGRAPHY_AUTOINSTALL_DEPS": "0"})
    except subprocess.TimeoutExpired:
        return {"tool": "polygraphy check lint", "ran": False, "reason": "timed out after 300 s"}
    text = (r.stdout + r.stderr).strip()
    missing = re.findall(r"Module: '([\w.]+)' is required but could not be imported", text)
    if missing:
        report.unlink(missing_ok=True)
        pip = missing[0].replace("_", "-")
        return {"tool": "polygraphy check lint", "ran": False,
                "reason": f"polygraphy's lint needs the '{missing[0]}' module, not installed here "
                          f"(pip install {pip}); the ONNX was not linted"}
    out = {"tool": "polygraphy check lint", "ran": True, "passed": r.returncode == 0,
           "output_tail": text.splitlines()[-5:]}
    if report.exists():
        out["report"] = report.name
    return out


def export_tensorrt(job: ExportJob) -> ExportOutput:
    from . import trt_engine

    opset = onnx_opset(job.target)
    name = "model.onnx"
    if job.precision == "int8":
        job.log(f"TensorRT-ready QDQ ONNX (explicit quantization), opset {opset}")
    else:
        job.log(f"TensorRT-ready float ONNX (engine precision {job.precision} set at build time), opset {opset}")
    details = _write_job_onnx(job, name, opset, _for_tensorrt_int8 if job.precision == "int8" else None)
    files = [name]
    engine = "model.engine"
    (job.stage / "build_engine.py").write_text(Path(inspect.getsourcefile(trt_engine)).read_text())
    legacy = any(v in job.target.runtime_version for v in ("TensorRT 8.2", "TensorRT 8.0", "TensorRT 7"))
    line = trt_engine.trtexec_command(name, engine, job.precision, legacy=legacy)
    (job.stage / "trtexec.txt").write_text(
        f"# Builds the same engine as `python3 build_engine.py {name} {engine} --precision {job.precision}`.\n"
        f"# Target: {job.target.name} ({job.target.runtime_version})\n{line}\n")
    files += ["build_engine.py", "trtexec.txt"]
    job.log("polygraphy lint")
    lint = _polygraphy_lint(job.stage / name)
    if lint.get("report"):
        files.append(lint["report"])
    try:
        import tensorrt  # noqa: F401

        job.log("building the TensorRT engine")
        trt_engine.build_engine(str(job.stage / name), str(job.stage / engine), job.precision)
        files.append(engine)
        engine_status = f"built on this host with TensorRT {tensorrt.__version__}"
    except ImportError:
        engine_status = "not built on this host (tensorrt not importable)"
    details.update({
        "engine": engine_status,
        "engine_build": {"script": f"python3 build_engine.py {name} {engine} --precision {job.precision}",
                         "trtexec": line},
        "engine_precision": job.precision,
        "onnx_weights": "QDQ int8 (explicit quantization)" if job.precision == "int8" else
                        "float32 (TensorRT converts to fp16 when the engine is built with --fp16)",
        "static_batch": 1,
        "polygraphy_lint": lint,
    })
    out = ExportOutput(name, files, _nchw_spec(job.input_size), opset, details)
    if job.precision == "fp16":
        from .parity import fp16_emulation_runner

        # the session holds the model in memory once created, so the float16 copy need not outlive this block
        with tempfile.TemporaryDirectory(prefix="fp16-emulation-") as td:
            runner, how = fp16_emulation_runner(job.stage / name, job.float_model, workdir=td)
        out.extra_runners.append(("fp16_emulation", runner, how))
    return out


# ---------------------------------------------------------------- openvino
def export_openvino(job: ExportJob) -> ExportOutput:
    ov = require("openvino", "openvino", "exporting to OpenVINO")
    x = torch.zeros(1, 3, job.input_size, job.input_size)
    if job.precision == "int8":
        job.log("OpenVINO IR from the NNCF model (FakeQuantize -> int8)")
        src = copy.deepcopy(_need_qmodel(job)).eval()
    else:
        job.log(f"OpenVINO IR {job.precision} from the float model")
        src = job.float_model
    with torch.no_grad():
        m = ov.convert_model(src, example_input=x)
    m.reshape([1, 3, job.input_size, job.input_size])
    m.inputs[0].get_tensor().set_names({INPUT_NAME})
    m.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    xml = job.stage / "model.xml"
    fp16 = job.precision == "fp16"
    ov.save_model(m, str(xml), compress_to_fp16=fp16)
    ops = [op.get_type_name() for op in m.get_ordered_ops()]
    details = {"converter": "openvino.convert_model (from torch)", "compress_to_fp16": fp16,
               "openvino_ops": {"FakeQuantize": ops.count("FakeQuantize"), "Convolution": ops.count("Convolution")}}
    if job.precision == "int8":
        details["quantization"] = "NNCF quantizers -> OpenVINO FakeQuantize; the CPU plugin runs int8 kernels"
    return ExportOutput("model.xml", ["model.xml", "model.bin"], _nchw_spec(job.input_size), None, details)


# ---------------------------------------------------------------- tflite
class _Nhwc(nn.Module):
    """NHWC float input (normalised) -> the NCHW model: the layout TFLite/XNNPACK boards take."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


def _nhwc_float(images: np.ndarray) -> torch.Tensor:
    return to_float(torch.from_numpy(np.ascontiguousarray(images))).permute(0, 2, 3, 1).contiguous()


def _pt2e_quantizer(keep_float: list[str]):
    """litert-torch's PT2E quantizer, symmetric per-channel int8, excluding the modules under `keep_float`.

    litert-torch's own set_module_name(name, None) does not match with torch 2.13: its filter strips the
    "L__self___" prefix from nn_module_stack keys, which torch.export now spells "L__self__model.stem", so no
    node ever matches. The exclusion is done here on the fully qualified names (nn_module_stack values)."""
    from litert_torch.quantize import pt2e_quantizer as pq

    prefixes = [f"model.{p}" for p in keep_float]

    def excluded(n) -> bool:
        fqns = [v[0] for v in n.meta.get("nn_module_stack", {}).values()]
        return any(f == p or f.startswith(p + ".") for p in prefixes for f in fqns)

    class _Quantizer(pq.PT2EQuantizer):
        excluded_nodes: list = []
        shared_cat: list = []
        adds: list = []

        def _annotate_for_static_quantization_config(self, model):
            _Quantizer.excluded_nodes = [n.name for n in model.graph.nodes if excluded(n)]
            self._annotate_all_static_patterns(model, self.global_config, lambda n: not excluded(n))
            _Quantizer.shared_cat = _annotate_cat_shared(model, self.global_config, excluded)
            _Quantizer.adds = _annotate_adds(model, self.global_config, excluded)
            return model

    q = _Quantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    return q, _Quantizer


def _pt2e_keep_float(model: nn.Module, keep_float: list[str]) -> list[str]:
    """keep_float for PT2E, which quantizes every op's *output*: a float weighted GDC (`pool`) still read an int8
    input, the head's per-tensor int8 output (the same loss as an int8 GDC; mfn-18m embedding cosine 0.20 vs
    0.95 with `head` float too, 32 CelebA-299 faces). NNCF quantizes a float op's inputs only where it reads
    them, so its path needs no such rule."""
    from ..quantize.in_memory import has_weighted_gdc

    gdc = "pool" in keep_float and has_weighted_gdc(model)
    return list(keep_float) + (["head"] if gdc and "head" not in keep_float else [])


def _unannotated(model, target, excluded):
    """The graph's calls of `target` that no annotator has claimed and keep-float does not exclude."""
    return [n for n in model.graph.nodes if n.op == "call_function" and n.target == target and not excluded(n)
            and "quantization_annotation" not in n.meta]


def _annotate_adds(model, config, excluded) -> list[str]:
    """Quantize every residual add's inputs and output. litert-torch's own add annotator finds adds through
    `source_fn_stack` metadata, which torch.export no longer writes, so no add was annotated: the TFLite then
    ran each residual ADD in float between a DEQUANTIZE and a QUANTIZE (7 on table3)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    act = config.input_activation if config is not None else None
    if act is None:
        return []
    done = []
    for n in _unannotated(model, torch.ops.aten.add.Tensor, excluded):
        inputs = [a for a in n.args[:2] if isinstance(a, torch.fx.Node)]
        if len(inputs) != 2:
            continue
        n.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={a: act for a in inputs},
                                                                   output_qspec=config.output_activation,
                                                                   _annotated=True)
        done.append(n.name)
    return done


def _annotate_cat_shared(model, config, excluded) -> list[str]:
    """Give every torch.cat one quantization for all its inputs and its output (SharedQuantizationSpec).

    litert-torch's quantizer leaves cat unannotated; the converted TFLite then runs an int8 CONCATENATION whose
    inputs carry different scales, and the parallel-expansion (b) blocks (cat + channel shuffle) lost ~3% cosine
    (0.973 vs the float model, measured on table3). TFLite's int8 concat wants one scale for inputs and output,
    so inputs are requantized to a shared scale here."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    act = config.input_activation if config is not None else None
    if act is None:
        return []
    done = []
    for n in _unannotated(model, torch.ops.aten.cat.default, excluded):
        inputs = [a for a in n.args[0] if isinstance(a, torch.fx.Node)]
        if not inputs:
            continue
        first = inputs[0]
        shared = SharedQuantizationSpec((first, n))
        qmap = {first: act, **{a: shared for a in inputs[1:]}}
        n.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qmap, output_qspec=shared,
                                                                   _annotated=True)
        done.append(n.name)
    return done


def export_tflite(job: ExportJob) -> ExportOutput:
    litert_torch = require("litert_torch", "litert-torch", "exporting to TFLite")
    size = job.input_size
    x = torch.zeros(1, size, size, 3)
    path = job.stage / "model.tflite"
    details: dict[str, Any] = {"converter": "litert_torch.convert (torch -> TFLite, no TensorFlow)"}
    if job.precision == "int8":
        if job.calibration is None or not len(job.calibration):
            raise UserError("int8 TFLite needs the quantized artifact's calibration images; re-run `compress quantize`")
        _need_qmodel(job)
        from torchao.quantization.pt2e import quantize_pt2e
        from litert_torch.quantize.quant_config import QuantConfig

        job.log(f"PT2E int8 (litert-torch quantizer), calibrating on {len(job.calibration)} faces")
        wrapper = _Nhwc(copy.deepcopy(job.float_model).eval()).eval()
        ep = torch.export.export(wrapper, (x,)).module()
        quantizer, qcls = _pt2e_quantizer(_pt2e_keep_float(job.float_model, job.keep_float))
        pm = quantize_pt2e.prepare_pt2e(ep, quantizer)
        with torch.no_grad():
            for i in range(len(job.calibration)):
                pm(_nhwc_float(job.calibration[i:i + 1]))
        cm = quantize_pt2e.convert_pt2e(pm, fold_quantize=False)
        job.log("converting to TFLite")
        litert_torch.convert(cm, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
        details.update({
            "quantization": "PT2E static int8 (litert_torch.quantize.pt2e_quantizer, symmetric, per-channel "
                            "weights), calibrated on the quantized artifact's calibration set with its float "
                            "(QAT-fine-tuned) weights; the NNCF quantizer ranges are not reused",
            "calibration_images": int(len(job.calibration)),
            "keep_float": {"requested": list(job.keep_float),
                           "method": "custom node filter on nn_module_stack fully qualified names (litert-torch's "
                                     "set_module_name does not match module names under torch 2.13)",
                           "excluded_graph_nodes": len(qcls.excluded_nodes),
                           "excluded_graph_node_names": list(qcls.excluded_nodes)[:50]},
            "residual_add_quantization": {
                "nodes": len(qcls.adds),
                "why": "int8 residual ADDs (litert-torch's add annotator matches nothing under torch.export of "
                       "torch 2.13; the adds ran in float between DEQUANTIZE and QUANTIZE)"},
            "shared_concat_quantization": {
                "nodes": len(qcls.shared_cat),
                "why": "torch.cat inputs/output share one int8 scale (SharedQuantizationSpec); without it the "
                       "int8 CONCATENATION of the parallel-expansion blocks cost ~3% cosine (0.973 on table3)"},
        })
        if job.keep_float and not qcls.excluded_nodes:
            details["keep_float"]["warning"] = "no graph node matched keep_float: everything was quantized"
    else:
        job.log("TFLite fp32")
        litert_torch.convert(_Nhwc(job.float_model).eval(), (x,)).export(str(path))
    spec = {"name": INPUT_NAME, "shape": [1, size, size, 3], "layout": "NHWC", "dtype": "float32",
            "normalisation": NORMALIZATION, "quantization": None}
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        d = it.get_input_details()[0]
        spec["dtype"] = np.dtype(d["dtype"]).name
        spec["shape"] = [int(v) for v in d["shape"]]
        if spec["dtype"] != "float32":
            scale, zero = d["quantization"]
            spec["quantization"] = {"scale": float(scale), "zero_point": int(zero),
                                    "rule": "q = clip(round(x_normalised / scale) + zero_point, -128, 127)"}
        o = it.get_output_details()[0]
        details["output_dtype"] = np.dtype(o["dtype"]).name
        details["tensor_dtypes"] = _count(np.dtype(t["dtype"]).name for t in it.get_tensor_details())
    except ImportError:
        details["input_read_back"] = "ai-edge-litert not installed: input dtype/quantization not read back"
    return ExportOutput("model.tflite", ["model.tflite"], spec, None, details)


def _count(items) -> dict:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ".onnx", "onnxruntime", "onnxruntime", ("fp32", "int8"), export_onnx,
           "plain ONNX for onnxruntime: fp32, or int8 as QDQ from the NNCF model"),
    Format("tensorrt", ".onnx", "tensorrt", "onnxruntime", ("fp32", "fp16", "int8"), export_tensorrt,
           "TensorRT-ready ONNX (opset cap, static batch 1, simplified) + engine build script + trtexec line"),
    Format("openvino", ".xml", "openvino", "openvino", ("fp32", "fp16", "int8"), export_openvino,
           "OpenVINO IR (.xml/.bin): fp16/fp32 from the float model, int8 from the NNCF model"),
    Format("tflite", ".tflite", "tflite", "litert", ("fp32", "int8"), export_tflite,
           "TFLite via litert-torch (NHWC input): fp32, or int8 via the PT2E quantizer"),
)}


def format_for_target(target: Target) -> Format:
    for f in FORMATS.values():
        if f.target_runtime == target.runtime:
            return f
    raise UserError(f"target {target.name}: no exporter for runtime {target.runtime!r}")
