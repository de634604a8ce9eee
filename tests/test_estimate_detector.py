"""The face detector in the per-board estimator (issue 27): YuNet's ONNX graph walked into per-layer records,
checked against an independent count from the initializers, and `compress estimate --detector`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from compress.bench.onnx_layers import detector_layers, onnx_layers, yunet_input_hw
from compress.data.detectors import YUNET_FILE
from tests.identify_helpers import run_cli


def _independent_conv_macs(path, h: int, w: int) -> tuple[int, int]:
    """Sum over Conv nodes of output elements x weight elements / C_out, with each node's output shape taken
    from onnxruntime's actual outputs (not from shape inference), and the number of Conv nodes."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t).shape for t in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    for n in convs:  # expose every conv output so the runtime reports its real shape
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.output[0]))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [n.output[0] for n in convs]
    outs = sess.run(names, {sess.get_inputs()[0].name: np.zeros((1, 3, h, w), np.float32)})
    total = sum(o.size * math.prod(weights[n.input[1]][1:]) for n, o in zip(convs, outs))
    return total, len(convs)


def test_yunet_walk_matches_an_independent_mac_count():
    h, w = yunet_input_hw(320, 240)
    assert (h, w) == (256, 320)  # FaceDetectorYN pads 240 up to a multiple of 32
    layers = onnx_layers(YUNET_FILE, (1, 3, h, w))
    macs, n = _independent_conv_macs(YUNET_FILE, h, w)
    assert len(layers) == n and sum(ly.macs for ly in layers) == macs
    assert {ly.kind for ly in layers} == {"depthwise", "pointwise", "dense"}
    # the frame at the robot's size: a 640x480 frame detected at longer side 320 is that same graph
    same, what = detector_layers("yunet", (640, 480), 320)
    assert [ly.macs for ly in same] == [ly.macs for ly in layers] and "320x256" in what


def test_yunet_onet_adds_onets_layers_for_one_face():
    yunet, _ = detector_layers("yunet", (640, 480), 320)
    both, what = detector_layers("yunet-onet", (640, 480), 320)
    onet = both[len(yunet):]
    assert [ly.macs for ly in both[:len(yunet)]] == [ly.macs for ly in yunet] and "ONet" in what
    # ONet on 48x48: four convs and the dense layers, ~13 M MACs (conv1 46x46x32x27 alone is 1.8 M)
    assert 10e6 < sum(ly.macs for ly in onet) < 20e6 and {"dense"} <= {ly.kind for ly in onet}


def test_estimate_cli_prints_detect_embed_total_per_board(tmp_path):
    out = tmp_path / "e.json"
    code, stdout, err = run_cli("estimate", "--model", "table3", "--target", "raspberry-pi-5", "--detector", "yunet",
                                "--detect-side", "320", "--json", out)
    assert code == 0, err
    line = next(x for x in stdout.splitlines() if "frame" in x and "detect" in x)
    assert "estimated" in line and "embed" in line and "total" in line and "320x256" in line
    import json

    f = json.loads(out.read_text())["estimates"][0]["frame_estimate"]
    assert f["total_ms"] == pytest.approx(f["detect_ms"] + f["embed_ms"], abs=1e-3) and f["detect_ms"] > 0


@pytest.mark.parametrize("args, words", [(["--detector", "mtcnn"], "only yunet"),
                                         (["--detector", "nope"], "unknown detector"),
                                         (["--detect-side", "320"], "needs --detector"),
                                         (["--detector", "yunet", "--detect-side", "8"], "below")])
def test_estimate_detector_bad_input_is_one_line(args, words):
    code, _, err = run_cli("estimate", "--model", "table3", "--target", "raspberry-pi-5", *args)
    assert code == 2 and words in err
