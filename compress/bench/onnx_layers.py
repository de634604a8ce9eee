"""The per-layer records of an ONNX graph (issue 27): its Conv (incl. grouped/depthwise) and weight-bearing
Gemm/MatMul nodes as compress.bench.reference_nets.LayerSpec, so the per-board estimator prices a network it
cannot build in torch (the YuNet detector) with the same cost model as the embedder.

Counted as reference_nets.layer_specs counts a torch model: MACs = output elements x (C_in / group) x kh x kw;
weights + one bias per output channel; input and output activation elements; the kind from groups and kernel.
Everything else (ReLU, pooling, Resize, Reshape/Transpose, Sigmoid, Add) is left out, as reference_nets.
ELEMENTWISE_POLICY says. Shapes come from onnx.shape_inference at one fixed input size.
"""

from __future__ import annotations

import math
from pathlib import Path

from .reference_nets import LayerSpec

from ..data.yunet_onnx import STRIDES, pad_hw

# YuNet (either runtime) pads its input up to a multiple of 32 (the deepest stride)
YUNET_STRIDE = STRIDES[-1]


def yunet_input_hw(width: int, height: int) -> tuple[int, int]:
    """The (H, W) YuNet's graph runs at for a width x height image (FaceDetectorYN's padding to 32)."""
    return pad_hw(height, width)


def _dims(value_info) -> tuple[int, ...]:
    return tuple(int(d.dim_value) for d in value_info.type.tensor_type.shape.dim)


def onnx_layers(path: str | Path, input_shape: tuple[int, ...]) -> list[LayerSpec]:
    """Conv / Gemm / MatMul layers of the ONNX file at ``path`` for one input of ``input_shape`` (N, C, H, W),
    in graph order."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name: tuple(numpy_helper.to_array(t).shape) for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise ValueError(f"{path}: expected one graph input, found {len(real_inputs)}")
    dims = real_inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{path}: input has rank {len(dims)}, the given shape {input_shape} has {len(input_shape)}")
    for d, v in zip(dims, input_shape):
        d.Clear()
        d.dim_value = int(v)
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: _dims(v) for v in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output)}
    specs: list[LayerSpec] = []
    for i, n in enumerate(inferred.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type == "Conv":
            w = inits[n.input[1]]  # (C_out, C_in / group, kh, kw)
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            x, y = shapes[n.input[0]], shapes[n.output[0]]
            c_out, c_in = w[0], x[1]
            kind = ("depthwise" if group > 1 and group == c_in == c_out else
                    "pointwise" if group == 1 and tuple(w[2:]) == (1, 1) else "dense")
            out = math.prod(y)
            specs.append(LayerSpec(name, kind, out * w[1] * math.prod(w[2:]), math.prod(w) + c_out,
                                   math.prod(x), out, tuple(y[1:])))
        elif n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits:
            w = inits[n.input[1]]
            x, y = shapes[n.input[0]], shapes[n.output[0]]
            k = w[0] if n.op_type == "MatMul" or not any(a.name == "transB" and a.i for a in n.attribute) else w[1]
            out = math.prod(y)
            specs.append(LayerSpec(name, "dense", out * k, math.prod(w) + y[-1], math.prod(x), out, tuple(y[1:])))
    return specs


def check_frame_detector(name: str | None, detect_side: int | None) -> None:
    """--detector / --detect-side of `compress estimate`: a one-line UserError unless they can be estimated."""
    from ..data.detectors import check_detector
    from ..errors import UserError

    if name is None:
        raise UserError("--detect-side needs --detector (e.g. --detector yunet --detect-side 320)")
    if check_detector(name) not in ("yunet", "yunet-onet"):
        raise UserError(f"--detector {name}: only yunet and yunet-onet have a per-layer model for the estimate "
                        "(their ONNX graphs); pass --detector yunet, or leave --detector out to estimate the embedder "
                        "alone")
    if detect_side is not None and detect_side < YUNET_STRIDE:
        raise UserError(f"--detect-side {detect_side} is below YuNet's stride {YUNET_STRIDE}; pass e.g. 320")


def detector_layers(name: str, frame: tuple[int, int], detect_side: int) -> tuple[list[LayerSpec], str]:
    """The detector's layers for a ``frame`` (w, h) detected at longer side ``detect_side``, and a description."""
    from ..data.detectors import YUNET_FILE

    check_frame_detector(name, detect_side)
    fw, fh = frame
    f = min(1.0, detect_side / max(fw, fh))
    w, h = round(fw * f), round(fh * f)
    hh, ww = yunet_input_hw(w, h)
    layers = onnx_layers(YUNET_FILE, (1, 3, hh, ww))
    what = f"YuNet {YUNET_FILE.name} at {ww}x{hh} ({fw}x{fh} frame detected at {w}x{h}, padded to a multiple of " \
           f"{YUNET_STRIDE})"
    if name == "yunet-onet":  # + MTCNN's ONet on one face's 48x48 crop
        from ..data.mtcnn import onet_onnx_file

        layers += onnx_layers(onet_onnx_file(), (1, 3, 48, 48))
        what += " + MTCNN ONet on one 48x48 face"
    return layers, what


def frame_estimate(embed: dict, detector: str, detect_side: int | None, target, precision: str) -> dict:
    """The detector estimated on the same board, precision and calibration as the embedder's estimate ``embed``
    (an estimate_latency result), and detect + embed per frame. Match and alignment are not modelled."""
    from ..data.align import frame_config
    from .frame import FRAME_SIZE
    from .estimate import estimate_latency

    side = frame_config(detector, detect_side).detect_max_side
    layers, what = detector_layers(detector, FRAME_SIZE, side)
    d = estimate_latency(layers, target, precision)
    e_ms, d_ms = embed.get("estimate_ms"), d.get("estimate_ms")
    total = round(e_ms + d_ms, 4) if e_ms is not None and d_ms is not None else None
    return {"detector": detector, "network": what, "detect_side": side, "macs": d["macs"], "layers": d["layers"],
            "status": d["status"], "detect_ms": d_ms, "embed_ms": e_ms, "total_ms": total, "label": d["label"],
            "precision": precision,
            "note": f"detect + embed (one pass; the frame benchmark's embed adds a flipped pass), the detector at "
                    f"the embedder's precision ({precision}: a detector run unquantized costs more); alignment, "
                    "matching and image resizing are not modelled", "warnings": d["warnings"]}


def format_frame_estimate(f: dict) -> str:
    ms = lambda v: "no estimate" if v is None else f"{v:.3f} ms"  # noqa: E731
    return (f"  frame {f['status']}: detect {ms(f['detect_ms'])} + embed {ms(f['embed_ms'])} = total "
            f"{ms(f['total_ms'])} (estimated; {f['network']}, {f['macs'] / 1e6:.1f} M MACs, {f['layers']} conv "
            f"layers; {f['note']})")
