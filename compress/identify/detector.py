"""MTCNN on the target: its P/R/O networks exported to ONNX (onnxruntime, TensorRT-ready) and OpenVINO IR, and
a detector that runs the project's unchanged cascade (compress.data.mtcnn: pyramid, NMS, box regression) with
the three networks in one of those runtimes.

Why MTCNN and not another detector: enrolment, the LFW benchmarks and training data are all aligned by this
cascade, so the robot crops faces the way the model saw them. TFLite is not written: PNet runs on a different
input size at every pyramid scale (and on every frame size), while a LiteRT model has static shapes; it would
need one PNet file per scale and frame size, plus RNet/ONet with a fixed batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import file_sha256, host_description, now_iso, versions, write_json
from ..errors import UserError

NETS = ("pnet", "rnet", "onet")
OPSET = 13  # within the Jetson Nano's TensorRT 8.2
RUNTIMES = ("onnxruntime", "openvino")
# (dummy input size, dynamic axes): PNet is fully convolutional over any H, W; RNet/ONet take 24/48 crops.
_SHAPES = {"pnet": (12, {0: "n", 2: "h", 3: "w"}), "rnet": (24, {0: "n"}), "onet": (48, {0: "n"})}
_OUTPUTS = {"pnet": ["prob", "reg"], "rnet": ["prob", "reg"], "onet": ["prob", "reg", "landmarks"]}


def export_detector(out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write OUT/{pnet,rnet,onet}.onnx and OUT/openvino/*.xml + manifest.json (hashes, opset, versions)."""
    import onnx
    import openvino as ov

    from ..artifacts import artifact_dir
    from ..data.align import get_aligner

    det = get_aligner().detector
    files: dict[str, str] = {}
    with artifact_dir(out, "detector", overwrite=overwrite) as stage:
        for name in NETS:
            size, dyn = _SHAPES[name]
            onnx_path = stage / f"{name}.onnx"
            with torch.no_grad(), tempfile.TemporaryDirectory():
                torch.onnx.export(getattr(det, name).eval(), torch.zeros(1, 3, size, size), str(onnx_path),
                                  dynamo=False, opset_version=OPSET, input_names=["input"],
                                  output_names=_OUTPUTS[name], dynamic_axes={"input": dyn})
            onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
            (stage / "openvino").mkdir(exist_ok=True)
            ov.save_model(ov.convert_model(str(onnx_path)), str(stage / "openvino" / f"{name}.xml"),
                          compress_to_fp16=False)
            files[f"{name}.onnx"] = file_sha256(onnx_path)
            files[f"openvino/{name}.xml"] = file_sha256(stage / "openvino" / f"{name}.xml")
        manifest = {"format": "compress.detector/1", "kind": "detector", "created": now_iso(),
                    "host": host_description(), "detector": "MTCNN (Zhang et al. 2016), facenet-pytorch 2.6.0 weights",
                    "opset": OPSET, "precision": "fp32", "files": files, "versions": versions(),
                    "tflite": "not written: PNet's input shape changes per pyramid scale; LiteRT needs static shapes"}
        write_json(stage / "manifest.json", manifest)
    return manifest


class _OrtNet:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.session.run(None, {"input": np.ascontiguousarray(x.numpy())})
        return tuple(torch.from_numpy(o) for o in outs)


class _OvNet:
    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        res = self.compiled(np.ascontiguousarray(x.numpy()))
        return tuple(torch.from_numpy(np.array(res[o])) for o in self.compiled.outputs)


def load_detector(folder: str | Path, runtime: str, threads: int = 0) -> Any:
    """An MTCNN whose three networks run in ``runtime`` from an export_detector folder (same cascade code)."""
    from ..data.align import AlignConfig
    from ..data.mtcnn import MTCNN

    if runtime not in RUNTIMES:
        raise UserError(f"detector runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    folder = Path(folder)
    c = AlignConfig()
    det = MTCNN(min_face_size=c.min_face_size, thresholds=c.thresholds, factor=c.factor)
    for name in NETS:
        f = folder / (f"{name}.onnx" if runtime == "onnxruntime" else f"openvino/{name}.xml")
        if not f.is_file():
            raise UserError(f"detector file {f} not found; write the folder with export_detector (benchmarks/"
                            "identify_latency.py does)")
        setattr(det, name, _OrtNet(f, threads) if runtime == "onnxruntime" else _OvNet(f, threads))
    return det
