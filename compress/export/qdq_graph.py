"""Rewrites of an int8 QDQ ONNX graph (QuantizeLinear / DequantizeLinear pairs from NNCF), in memory on a
ModelProto. Each one keeps the computed values exact or states the range it covers:

- `quantize_conv_inputs`: a quantized conv fed through data-movement ops (the channel shuffle's Concat /
  Reshape / Transpose / Slice) gets a Q/DQ pair right before it, so that onnxruntime and TensorRT run it as an
  int8 conv instead of DQ -> float Conv. Exact: the values arriving there are already on that quantizer's grid.
- `signed_symmetric_activations`: every activation quantizer in TensorRT's form (signed int8, zero point 0).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

# ops that only move, select or join values: a tensor on one quantization grid stays on it
_DATA_MOVEMENT = {"Reshape", "Transpose", "Slice", "Split", "Concat", "Flatten", "Squeeze", "Unsqueeze",
                  "Identity"}


def _constants(graph) -> dict:
    """Initializers and Constant nodes (the exporter writes scales and zero points as both), by name."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _drop_unused(graph) -> None:
    """Remove Constant nodes and initializers nothing reads any more, and stale recorded tensor types (the
    checker's shape inference redoes them)."""
    del graph.value_info[:]
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(n)
    for i in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(i)


def _grid_of(name: str, producer: dict, values: dict) -> tuple | None:
    """(scale, zero point, dtype) of the one per-tensor quantizer every value of tensor `name` comes from,
    through data-movement ops only; None when the values come from anything else or from two grids."""
    grids, stack, seen = set(), [name], set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        p = producer.get(t)
        if p is None:
            return None
        if p.op_type == "DequantizeLinear":
            scale = values.get(p.input[1])
            zp = values.get(p.input[2]) if len(p.input) > 2 else np.array(0, np.uint8)
            if scale is None or zp is None or scale.size != 1 or p.input[0] in values:
                return None
            grids.add((float(scale), int(zp), zp.dtype.str))
        elif p.op_type in _DATA_MOVEMENT:
            # Reshape/Slice/Split carry shapes and indices as further inputs: only the first one is data
            stack.extend(p.input if p.op_type == "Concat" else p.input[:1])
        else:
            return None
    return grids.pop() if len(grids) == 1 else None


def quantize_conv_inputs(model) -> int:
    """Insert a Q/DQ pair before every conv with quantized weights whose input reaches it through
    data-movement ops from a single quantization grid (onnxruntime's and TensorRT's int8 conv fusion needs a
    DequantizeLinear as the conv's direct input). Returns the number of pairs inserted."""
    from onnx import helper, numpy_helper

    g = model.graph
    values = _constants(g)
    producer = {o: n for n in g.node for o in n.output}
    inserted = 0
    for conv in [n for n in g.node if n.op_type == "Conv"]:
        src, weight = producer.get(conv.input[0]), producer.get(conv.input[1])
        if src is None or src.op_type == "DequantizeLinear" or weight is None \
                or weight.op_type != "DequantizeLinear":
            continue
        grid = _grid_of(conv.input[0], producer, values)
        if grid is None:
            continue
        scale, zp, dtype = grid
        tag = f"{conv.input[0]}_requant_{inserted}"
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), tag + "_scale"),
                              numpy_helper.from_array(np.array(zp, np.dtype(dtype)), tag + "_zero_point")])
        q = helper.make_node("QuantizeLinear", [conv.input[0], tag + "_scale", tag + "_zero_point"], [tag + "_q"],
                             name=tag + "/QuantizeLinear")
        dq = helper.make_node("DequantizeLinear", [tag + "_q", tag + "_scale", tag + "_zero_point"], [tag],
                              name=tag + "/DequantizeLinear")
        at = list(g.node).index(conv)
        g.node.insert(at, dq)
        g.node.insert(at, q)
        conv.input[0] = tag
        inserted += 1
    if inserted:
        del g.value_info[:]
    return inserted


def signed_symmetric_activations(model, what: str = "the model") -> dict:
    """Rewrite an int8 QDQ ONNX into TensorRT's form: every activation QuantizeLinear/DequantizeLinear
    pair signed int8 with zero point 0 (TensorRT's quantization is symmetric and signed: NVIDIA TensorRT
    Developer Guide, "Working with Quantized Types"). A uint8 or zero-pointed quantizer representing [lo, hi]
    becomes scale max(|lo|, |hi|) / 127, which covers the same range (a non-negative one with 7 bits instead of
    8). Activation scales must be per tensor; weights (int8, zero point 0) are left as they are."""
    from onnx import numpy_helper

    g = model.graph
    init = _constants(g)
    consumers: dict[str, list] = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    rewritten = 0
    for n in g.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in init or len(n.input) < 3:
            continue
        scale, zp = init[n.input[1]], init[n.input[2]]
        if scale.size != 1:
            raise UserError(f"{what}: activation quantizer {n.name} has per-channel scales, which TensorRT "
                            "cannot run; re-run `compress quantize` (it quantizes activations per tensor)")
        if zp.dtype == np.int8 and int(zp) == 0:
            continue
        info = np.iinfo(zp.dtype)
        amax = max(abs((info.min - int(zp)) * float(scale)), abs((info.max - int(zp)) * float(scale)))
        tag = f"{n.output[0]}_trt"
        g.initializer.extend([numpy_helper.from_array(np.array(amax / 127.0, np.float32), tag + "_scale"),
                              numpy_helper.from_array(np.array(0, np.int8), tag + "_zero_point")])
        for q in [n] + [c for c in consumers.get(n.output[0], []) if c.op_type == "DequantizeLinear"]:
            q.input[1], q.input[2] = tag + "_scale", tag + "_zero_point"
        rewritten += 1
    if rewritten:
        _drop_unused(g)
    return {"rewritten_quantizers": rewritten, "form": "activations signed int8, zero point 0, per tensor; "
            "weights signed int8 per channel (TensorRT explicit quantization)"}
