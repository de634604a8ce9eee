"""ONNX graph rewrites (compress/export/onnx_rewrites.py) on small hand-built graphs: exact where they claim to be."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compress.export import onnx_rewrites

ort = pytest.importorskip("onnxruntime")


def _shuffle_conv_graph(second_scale: float, weight_quantized: bool = True) -> onnx.ModelProto:
    """x -> Q/DQ (grid A) -> Concat with Q/DQ(x * 2) (grid A or B) -> channel shuffle -> Conv: the pattern of
    the Table 3 network's shuffle stages."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "sa"),
             numpy_helper.from_array(np.array(second_scale, np.float32), "sb"),
             numpy_helper.from_array(np.array(128, np.uint8), "zp"),
             numpy_helper.from_array(np.array([1, 2, 4, 6, 6], np.int64), "shape5"),
             numpy_helper.from_array(np.array([1, 8, 6, 6], np.int64), "shape4"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sa", "zp"], ["qa"]),
             helper.make_node("DequantizeLinear", ["qa", "sa", "zp"], ["a"]),
             helper.make_node("Mul", ["x", "two"], ["x2"]),
             helper.make_node("QuantizeLinear", ["x2", "sb", "zp"], ["qb"]),
             helper.make_node("DequantizeLinear", ["qb", "sb", "zp"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "shape5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "shape4"], ["shuffled"])]
    if weight_quantized:
        scales = np.abs(w).reshape(4, -1).max(1) / 127
        inits += [numpy_helper.from_array(np.round(w / scales[:, None, None, None]).astype(np.int8), "wq"),
                  numpy_helper.from_array(scales.astype(np.float32), "ws"),
                  numpy_helper.from_array(np.zeros(4, np.int8), "wzp")]
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], axis=0))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes.append(helper.make_node("Conv", ["shuffled", "w"], ["y"]))
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _producers(model) -> dict:
    return {o: n for n in model.graph.node for o in n.output}


def _conv_reads_a_dequantize(model) -> bool:
    producer = _producers(model)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = producer[conv.input[0]]
    return dq.op_type == "DequantizeLinear" and producer[dq.input[0]].op_type == "QuantizeLinear"


X = np.random.default_rng(1).uniform(-3, 3, (1, 4, 6, 6)).astype(np.float32)


def test_grid_carried_through_the_channel_shuffle_exactly():
    model = _shuffle_conv_graph(second_scale=0.05)
    before = _run(model, X)
    assert onnx_rewrites.quantize_data_movement(model) == 4  # Concat, Reshape, Transpose, Reshape
    onnx.checker.check_model(model, full_check=True)
    assert _conv_reads_a_dequantize(model)
    np.testing.assert_array_equal(_run(model, X), before)  # the values were on that grid already


def test_no_quantizer_where_two_grids_meet():
    """Two scales meeting in the Concat: one quantizer cannot hold both, so nothing downstream gets one."""
    model = _shuffle_conv_graph(second_scale=0.07)
    n = len(model.graph.node)
    assert onnx_rewrites.quantize_data_movement(model) == 0 and len(model.graph.node) == n


@pytest.mark.parametrize("weight_quantized", [True, False])
def test_shuffle_as_one_gather_computes_the_same(weight_quantized):
    model = _shuffle_conv_graph(second_scale=0.05, weight_quantized=weight_quantized)
    before = _run(model, X)
    assert onnx_rewrites.shuffle_as_gather(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Gather" in ops and "Transpose" not in ops and "Reshape" not in ops
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_array_equal(_run(model, X), before)
    assert onnx_rewrites.quantize_data_movement(model) == 2  # Concat, Gather
    assert _conv_reads_a_dequantize(model)
    np.testing.assert_array_equal(_run(model, X), before)


def test_not_a_shuffle_is_left_alone():
    """A Reshape -> Transpose -> Reshape with another permutation is not a channel shuffle."""
    model = _shuffle_conv_graph(second_scale=0.05)
    next(n for n in model.graph.node if n.op_type == "Transpose").attribute[0].ints[:] = [0, 1, 2, 4, 3]
    assert onnx_rewrites.shuffle_as_gather(model) == 0


def test_tensorrt_form_rewrites_the_inserted_quantizers_too():
    model = _shuffle_conv_graph(second_scale=0.05)
    onnx_rewrites.quantize_data_movement(model)
    details = onnx_rewrites.signed_symmetric_activations(model)
    onnx.checker.check_model(model, full_check=True)
    assert details["rewritten_quantizers"] == 6
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in values:
            assert values[n.input[2]].dtype == np.int8 and int(values[n.input[2]]) == 0
