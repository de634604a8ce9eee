"""Rewrites of an exported ONNX graph for the runtime that will run it, in memory on a ModelProto. Each one
keeps the computed values exact, or states the range it covers:

- `shuffle_as_gather` (onnxruntime): each channel shuffle as one Gather, which onnxruntime's layout optimiser
  handles without NCHW <-> NHWC transposes around it.
- `quantize_data_movement` (int8 QDQ): Q/DQ pairs carried through Concat / Reshape / Transpose / Gather / Split,
  so that onnxruntime and TensorRT run them, and the convs behind them, on int8.
- `signed_symmetric_activations` (TensorRT int8): every activation quantizer signed int8 with zero point 0.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

# ops that only move, select or join values: a tensor on one quantization grid stays on it
_DATA_MOVEMENT = {"Reshape", "Transpose", "Slice", "Split", "Concat", "Gather", "Flatten", "Squeeze",
                  "Unsqueeze", "Identity"}


def constant_values(graph) -> dict:
    """Initializers and Constant nodes (the exporter writes scales and zero points as both), by name."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _consumers(graph) -> dict[str, list]:
    """The nodes reading each tensor, by tensor name."""
    out: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            out.setdefault(name, []).append(n)
    return out


def _drop_unused(graph) -> None:
    """Remove Constant nodes and initializers nothing reads any more, and stale recorded tensor types (the
    checker's shape inference redoes them)."""
    del graph.value_info[:]
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(n)
    for i in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(i)


def _grid(dq, values: dict) -> tuple | None:
    """(scale, zero point, dtype) of a per-tensor activation DequantizeLinear; None for anything else."""
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in values:
        return None
    scale = values.get(dq.input[1])
    zp = values.get(dq.input[2]) if len(dq.input) > 2 else np.array(0, np.uint8)
    if scale is None or zp is None or scale.size != 1:
        return None
    return float(scale), int(zp), zp.dtype.str


def _insert_qdq(graph, values: dict, after, tensor: str, grid: tuple, tag: str):
    """A QuantizeLinear -> DequantizeLinear pair on `grid` reading `tensor`, placed after node `after`, its
    scale and zero point added to `values`; returns the DequantizeLinear node (the caller rewires consumers)."""
    from onnx import helper, numpy_helper

    scale, zp, dtype = grid
    values[tag + "_scale"], values[tag + "_zero_point"] = np.array(scale, np.float32), np.array(zp, np.dtype(dtype))
    graph.initializer.extend([numpy_helper.from_array(values[tag + "_scale"], tag + "_scale"),
                              numpy_helper.from_array(values[tag + "_zero_point"], tag + "_zero_point")])
    q = helper.make_node("QuantizeLinear", [tensor, tag + "_scale", tag + "_zero_point"], [tag + "_q"],
                         name=tag + "/QuantizeLinear")
    dq = helper.make_node("DequantizeLinear", [tag + "_q", tag + "_scale", tag + "_zero_point"], [tag],
                          name=tag + "/DequantizeLinear")
    at = list(graph.node).index(after) + 1
    graph.node.insert(at, dq)
    graph.node.insert(at, q)
    return graph.node[at + 1]


def quantize_data_movement(model) -> int:
    """Give every data-movement op whose data inputs all come from one per-tensor quantization grid a Q/DQ pair
    on that grid at each output, in graph order, so the grid carries through chains of them. onnxruntime then
    runs DQ -> op -> Q as the op on int8 (QLinearConcat, int8 Gather / Reshape / Split), and every conv behind
    a channel shuffle reads a DequantizeLinear directly, which its int8 conv fusion (and TensorRT's) needs.
    Exact: these ops only move values, so every value is on that grid already. Returns the pairs inserted."""
    g = model.graph
    values = constant_values(g)
    producer = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    outputs = {o.name for o in g.output}
    inserted = 0
    for n in list(g.node):
        if n.op_type not in _DATA_MOVEMENT:
            continue
        data = n.input if n.op_type == "Concat" else n.input[:1]  # the others carry shapes and indices
        grids = {_grid(producer.get(t), values) for t in data}
        if len(grids) != 1 or None in grids:
            continue
        grid = grids.pop()
        for out in n.output:
            users = consumers.get(out, [])
            if out in outputs or not users or all(u.op_type == "QuantizeLinear" for u in users):
                continue
            dq = _insert_qdq(g, values, n, out, grid, f"{out}_requant_{inserted}")
            for u in users:
                u.input[:] = [dq.output[0] if i == out else i for i in u.input]
            producer[dq.output[0]], consumers[dq.output[0]] = dq, users
            inserted += 1
    if inserted:
        del g.value_info[:]
    return inserted


def _is_channel_shuffle(first, mid, last, values: dict) -> bool:
    """Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)."""
    five, four = values.get(first.input[1]), values.get(last.input[1])
    perm = [list(a.ints) for a in mid.attribute if a.name == "perm"]
    return (five is not None and four is not None and len(five) == 5 and len(four) == 4
            and perm == [[0, 2, 1, 3, 4]] and int(four[0]) == int(five[0])
            and int(four[1]) == int(five[1] * five[2]) and list(four[2:]) == list(five[3:]))


def shuffle_as_gather(model) -> int:
    """Replace each channel shuffle (Reshape -> Transpose -> Reshape, see _is_channel_shuffle) by one Gather of
    the channels in shuffled order: the same values, but onnxruntime's layout optimiser cannot carry its NHWC
    layout through a 5-D reshape and puts NCHW <-> NHWC transposes around each shuffle instead. Returns the
    number of shuffles replaced."""
    from onnx import helper, numpy_helper

    g = model.graph
    values = constant_values(g)
    producer = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    replaced = 0
    for last in [n for n in g.node if n.op_type == "Reshape"]:
        mid = producer.get(last.input[0])
        first = producer.get(mid.input[0]) if mid is not None and mid.op_type == "Transpose" else None
        if first is None or first.op_type != "Reshape" or len(consumers[first.output[0]]) != 1 \
                or len(consumers[mid.output[0]]) != 1 \
                or not _is_channel_shuffle(first, mid, last, values):
            continue
        groups, per_group = (int(v) for v in values[first.input[1]][1:3])
        order = np.arange(groups * per_group).reshape(groups, per_group).T.reshape(-1)
        name = f"{last.output[0]}_shuffle_order"
        g.initializer.append(numpy_helper.from_array(order.astype(np.int64), name))
        gather = helper.make_node("Gather", [first.input[0], name], [last.output[0]], axis=1,
                                  name=f"{last.name}_as_gather")
        g.node.insert(list(g.node).index(last), gather)
        for n in (last, mid, first):
            g.node.remove(n)
        replaced += 1
    if replaced:
        _drop_unused(g)
    return replaced


def signed_symmetric_activations(model, what: str = "the model") -> dict:
    """Rewrite an int8 QDQ ONNX into TensorRT's form: every activation QuantizeLinear/DequantizeLinear
    pair signed int8 with zero point 0 (TensorRT's quantization is symmetric and signed: NVIDIA TensorRT
    Developer Guide, "Working with Quantized Types"). A uint8 or zero-pointed quantizer representing [lo, hi]
    becomes scale max(|lo|, |hi|) / 127, which covers the same range (a non-negative one with 7 bits instead of
    8). Activation scales must be per tensor; weights (int8, zero point 0) are left as they are."""
    from onnx import numpy_helper

    g = model.graph
    init = constant_values(g)
    consumers = _consumers(g)
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
