"""Runners for exported files: the Embedder interface (compress.evaluate.embed) over OpenVINO and LiteRT, and
load_runner(path) that picks one by file suffix (.onnx -> onnxruntime, .xml -> OpenVINO, .tflite -> LiteRT).

Every runner takes aligned uint8 RGB crops [N,112,112,3], applies the project's normalisation
(compress.data.transforms: RGB, (x/255 - ImageNet mean) / ImageNet std) and returns L2-normalised embeddings.
``runtime`` names the software that ran the model; ``threads`` (0 = the runtime's default) sets its CPU threads.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..data.transforms import MEAN, STD
from ..errors import UserError
from ..evaluate.embed import Embedder, OnnxEmbedder, normalise_nchw
from ..evaluate.int8_host import INT8_MODES, host_int8_saturates, int8_execution  # noqa: F401  (re-exported)

# runtime name -> (python module, pip package that provides it)
RUNTIME_PACKAGES = {
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
}
SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "litert"}


def require(module: str, pip_name: str, purpose: str):
    """Import `module` or raise UserError telling which pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{purpose} needs the '{module}' Python package, which is not installed; "
                        f"install it with `pip install {pip_name}`") from None


def _normalise_nhwc(batch: np.ndarray) -> np.ndarray:
    mean = np.array(MEAN, np.float32).reshape(1, 1, 1, 3)
    std = np.array(STD, np.float32).reshape(1, 1, 1, 3)
    return (batch.astype(np.float32) / 255.0 - mean) / std


class OpenVinoEmbedder(Embedder):
    """An OpenVINO IR (.xml + .bin) with input [1|B,3,H,W] float, run on OpenVINO's CPU plugin.

    int8: "native" runs the IR's int8 kernels; "emulated" computes its FakeQuantize ops in float (the CPU
    plugin's low-precision transformations off: the same rounding and clamping, exact accumulation, which is
    what a VNNI board computes); "auto" emulates only an int8 IR on a host whose kernels saturate. The
    embedder's ``int8`` attribute says what ran."""

    runtime = "openvino"

    def __init__(self, path: str | Path, threads: int = 0, device: str = "CPU", int8: str = "auto") -> None:
        ov = require("openvino", "openvino", "running an OpenVINO IR")
        if int8 not in INT8_MODES:
            raise ValueError(f"int8 must be one of {INT8_MODES}, got {int8!r}")
        path = Path(path)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise UserError(f"OpenVINO IR {path} (and its .bin) not found")
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        self.worker: _EmulationWorker | None = None
        try:
            model = core.read_model(str(path))
            self.int8 = _int8_execution(model, int8, device)
            if self.int8.startswith("emulated"):
                self.worker = _EmulationWorker(path, threads)
            else:
                self.compiled = core.compile_model(model, device, config)
                self.request = self.compiled.create_infer_request()
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot load OpenVINO model {path}: {str(e).splitlines()[0][:160]}") from None
        shape = model.input(0).get_partial_shape()
        shape = list(shape.to_shape()) if shape.is_static else None
        self.fixed_batch = int(shape[0]) if shape else None
        self.input_size = int(shape[2]) if shape else 112
        self.threads = threads
        self.device = device
        self.name = path.name

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = normalise_nchw(batch)
        if self.fixed_batch == 1:
            return np.concatenate([self._run(x[i:i + 1]) for i in range(len(x))])
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.worker is not None:
            return self.worker.run(x)
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)


class _EmulationWorker:
    """compress/export/openvino_emulation.py in a child process: the IR compiled with FakeQuantize in float."""

    def __init__(self, path: Path, threads: int) -> None:
        import subprocess
        import sys
        import tempfile
        import weakref

        from . import openvino_emulation as proto  # numpy-only helpers; the child runs the file as a script

        self.proto = proto
        self.log = tempfile.TemporaryFile()  # the worker's stderr, read only to explain a failed start
        self.proc = subprocess.Popen([sys.executable, proto.__file__, str(path), str(int(threads))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        weakref.finalize(self, _stop, self.proc)
        if proto.read_array(self.proc.stdout) is None:
            self.proc.wait(timeout=10)
            self.log.seek(0)
            err = self.log.read().decode(errors="replace").strip().splitlines()
            raise UserError(f"cannot run {path.name} with int8 emulated in float: "
                            f"{err[-1][:200] if err else 'the worker exited'}")

    def run(self, x: np.ndarray) -> np.ndarray:
        self.proto.write_array(self.proc.stdin, x)
        y = self.proto.read_array(self.proc.stdout)
        if y is None:
            raise UserError("the OpenVINO int8 emulation worker exited unexpectedly")
        return y


def _stop(proc) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except Exception:
        proc.kill()


def _int8_execution(model, mode: str, device: str) -> str:
    """How an IR's int8 part runs here (int8_execution); a non-CPU device always runs its own int8 kernels."""
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return int8_execution(quantized, "native" if device != "CPU" else mode, "OpenVINO's int8 kernels",
                          "the FakeQuantize ops are computed in float instead")


class LiteRtEmbedder(Embedder):
    """A .tflite face model with input [1,H,W,3] (NHWC), float32 or int8. For an int8 input the normalised
    float image is quantized with the input tensor's scale and zero point; an int8 output is dequantized."""

    runtime = "litert"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        mod = require("ai_edge_litert.interpreter", "ai-edge-litert", "running a .tflite model")
        path = Path(path)
        if not path.is_file():
            raise UserError(f"TFLite model {path} not found")
        try:
            self.interpreter = mod.Interpreter(model_path=str(path), num_threads=threads or None)
            self.interpreter.allocate_tensors()
        except Exception as e:
            raise UserError(f"cannot load TFLite model {path}: {str(e).splitlines()[0][:160]}") from None
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        shape = [int(v) for v in self.inp["shape"]]
        if len(shape) != 4 or shape[3] != 3:
            raise UserError(f"{path}: expected an NHWC image input [1,H,W,3], got {shape}")
        self.input_size = shape[1]
        self.input_dtype = np.dtype(self.inp["dtype"])
        self.input_quant = tuple(self.inp.get("quantization", (0.0, 0)))
        self.threads = threads
        self.name = path.name

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.float32:
            return x
        scale, zero = self.input_quant
        if not scale:
            raise UserError(f"{self.name}: integer input without quantization parameters")
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(self.input_dtype)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = self.quantize_input(_normalise_nhwc(batch))
        out = []
        for i in range(len(x)):
            self.interpreter.set_tensor(self.inp["index"], x[i:i + 1])
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.out["index"])
            if np.dtype(self.out["dtype"]) != np.float32:
                scale, zero = self.out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            out.append(np.asarray(y, np.float32).reshape(1, -1))
        return np.concatenate(out)


def load_runner(path: str | Path, threads: int = 0, int8: str = "auto") -> Embedder:
    """An Embedder for an exported model file, chosen by suffix. A missing runtime package is a UserError
    naming the pip package; an unknown suffix is a UserError listing the known ones. int8 (OpenVINO and
    onnxruntime: OpenVinoEmbedder, OnnxEmbedder): "native" for timing, "auto" for embeddings (correct on any host)."""
    p = Path(path)
    runtime = SUFFIX_RUNTIME.get(p.suffix.lower())
    if runtime is None:
        raise UserError(f"no runtime for {p.name}: expected one of {', '.join(SUFFIX_RUNTIME)}")
    if not p.is_file():
        raise UserError(f"model file {p} not found")
    if runtime == "onnxruntime":
        require("onnxruntime", "onnxruntime", "running an ONNX model")
        emb = OnnxEmbedder(p, threads=threads, int8=int8)
        emb.threads = threads
        return emb
    if runtime == "openvino":
        return OpenVinoEmbedder(p, threads=threads, int8=int8)
    return LiteRtEmbedder(p, threads=threads)
