"""QDQ graph rewrites (compress/export/qdq_graph.py) on small hand-built ONNX graphs: exact where they claim to be."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compress.export import qdq_graph

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


def test_conv_behind_a_channel_shuffle_gets_its_own_quantizer_exactly():
    model = _shuffle_conv_graph(second_scale=0.05)
    x = np.random.default_rng(1).uniform(-3, 3, (1, 4, 6, 6)).astype(np.float32)
    before = _run(model, x)
    assert qdq_graph.quantize_conv_inputs(model) == 1
    onnx.checker.check_model(model, full_check=True)
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = producer[conv.input[0]]
    assert dq.op_type == "DequantizeLinear" and producer[dq.input[0]].op_type == "QuantizeLinear"
    np.testing.assert_array_equal(_run(model, x), before)  # the values were on that grid already


@pytest.mark.parametrize("second_scale, weight_quantized", [(0.07, True), (0.05, False)])
def test_no_quantizer_where_it_would_change_values_or_the_conv_is_float(second_scale, weight_quantized):
    """Two grids meeting in the Concat (one scale cannot hold both), or a conv kept in float: left alone."""
    model = _shuffle_conv_graph(second_scale, weight_quantized)
    n = len(model.graph.node)
    assert qdq_graph.quantize_conv_inputs(model) == 0 and len(model.graph.node) == n


def test_tensorrt_form_rewrites_the_inserted_quantizers_too():
    model = _shuffle_conv_graph(second_scale=0.05)
    qdq_graph.quantize_conv_inputs(model)
    details = qdq_graph.signed_symmetric_activations(model)
    onnx.checker.check_model(model, full_check=True)
    assert details["rewritten_quantizers"] == 3
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in values:
            assert values[n.input[2]].dtype == np.int8 and int(values[n.input[2]]) == 0
