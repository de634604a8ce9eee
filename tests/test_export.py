"""compress.export on the small table3 network: one export per (target, precision), shared across tests."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from compress.errors import UserError
from compress.export import FORMATS, export_model, load_runner
from compress.export.onnx_rewrites import constant_values
from compress.export.runtimes import LiteRtEmbedder, OpenVinoEmbedder
from compress.quantize.artifact import QuantizedArtifact

from .conftest import table3_with_bn_statistics

N_FACES = 32
DESC = f"{N_FACES} synthetic faces (seed 0)"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from compress.data.sources import synthetic_faces

    return synthetic_faces(8, N_FACES // 8, seed=0, progress=False).images


@pytest.fixture(scope="module")
def model(images):
    return table3_with_bn_statistics(images)


@pytest.fixture(scope="module")
def qart(model, images) -> QuantizedArtifact:
    from compress.quantize import ptq

    calib = images[::2]  # 16 faces: enough ranges for a test, and quicker
    q = ptq(model, calib, ["stem", "embedding"], batch_size=4)
    return QuantizedArtifact(path=None, float_model=model, qmodel=q, calibration=calib,
                             keep_float=["stem", "embedding"], meta={"mode": "ptq", "test": True})


@pytest.fixture(scope="module")
def exports(tmp_path_factory, model, qart, images):
    """Lazily export each (target, precision) once for the module."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("exports")

    def get(target: str, precision: str):
        key = (target, precision)
        if key not in cache:
            src = qart if precision == "int8" else model
            out = root / f"{target}-{precision}"
            manifest = export_model(src, target, precision, out, parity_images=images, parity_desc=DESC,
                                    progress=False, source_sha256="0" * 64 if src is model else None)
            cache[key] = (out, manifest, json.loads((out / "parity.json").read_text()))
        return cache[key]

    return get


def _cos(parity: dict, check: str) -> float:
    return parity["checks"][check]["cosine_min"]


# ---------------------------------------------------------------- per format
@pytest.mark.slow
def test_onnx_fp32(exports):
    out, man, par = exports("onnx", "fp32")
    assert (out / "model.onnx").is_file() and man["opset"] == 17
    runner = load_runner(out / "model.onnx")
    assert runner.runtime == "onnxruntime"
    assert _cos(par, "vs_float") >= 0.9999
    assert par["checks"]["vs_float"]["n"] == N_FACES
    assert man["input"]["layout"] == "NCHW" and man["input"]["shape"] == [1, 3, 112, 112]
    assert man["source"]["sha256"] == "0" * 64 and man["source"]["kind"] == "float"
    for tool in ("onnx", "onnxsim", "openvino", "litert-torch", "nncf"):
        assert tool in man["versions"]
    assert {"created", "host", "target", "runtime", "precision"} <= set(man)
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(man, default=str))
    import onnx  # the final BN is folded into the embedding conv (parity above checks it is exact)
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert man["embedding_bn"].startswith("folded")


@pytest.mark.slow
def test_tensorrt_jetson_nano_fp16_opset_cap(exports):
    import onnx

    out, man, par = exports("jetson-nano", "fp16")
    m = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 13 == man["opset"]
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 112, 112]
    assert (out / "build_engine.py").is_file()
    line = (out / "trtexec.txt").read_text()
    assert "--onnx=model.onnx" in line and "--fp16" in line and "--int8" not in line
    assert man["engine"].startswith("not built on this host") or "built on this host" in man["engine"]
    assert "polygraphy_lint" in man["details"]
    assert _cos(par, "vs_float") >= 0.9999
    emu = par["checks"]["fp16_emulation"]
    assert emu["method"] and emu["cosine_min"] >= 0.99
    # the emulation really rounds to half: it differs from the fp32 run, and by more than fp32 noise
    assert emu["rel_l2_error_max"] > 10 * par["checks"]["vs_float"]["rel_l2_error_max"]
    assert 1e-5 < emu["rel_l2_error_max"] < 0.05
    compile(( out / "build_engine.py").read_text(), "build_engine.py", "exec")


@pytest.mark.slow
def test_tensorrt_orin_int8_qdq(exports):
    out, man, par = exports("jetson-orin-nano", "int8")
    qdq = man["details"]["qdq_nodes"]
    assert qdq["QuantizeLinear"] > 20 and qdq["DequantizeLinear"] >= qdq["QuantizeLinear"]
    assert "--int8" in (out / "trtexec.txt").read_text()
    assert _cos(par, "vs_nncf_fake_quant") >= 0.99
    assert _cos(par, "vs_float") >= 0.95
    assert man["source"]["kind"] == "quantized" and man["source"]["keep_float"] == ["stem", "embedding"]
    # TensorRT's form: every activation quantizer signed int8, zero point 0, one scale per tensor
    graph = onnx.load(str(out / "model.onnx")).graph
    init = constant_values(graph)
    acts = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in init]
    assert len(acts) > 10 and man["details"]["tensorrt_qdq"]["rewritten_quantizers"] > 0
    for n in acts:
        assert init[n.input[1]].size == 1 and init[n.input[2]].dtype == np.int8 and int(init[n.input[2]]) == 0


@pytest.mark.slow
def test_onnx_int8_qdq(exports):
    out, man, par = exports("onnx", "int8")
    assert man["details"]["qdq_nodes"]["DequantizeLinear"] > 20
    assert load_runner(out / "model.onnx").runtime == "onnxruntime"
    assert _cos(par, "vs_nncf_fake_quant") >= 0.99 and _cos(par, "vs_float") >= 0.95


@pytest.mark.slow
def test_onnx_int8_runs_fused_integer_convs(exports, tmp_path):
    """BNs folded before quantization and per-tensor asymmetric activations: onnxruntime fuses the quantized
    convs into QLinearConv (before, it ran each as dequantize -> float conv -> BN -> quantize). On a host whose
    fused u8 x s8 kernels saturate (x86 without VNNI), embeddings come from the unfused graph."""
    import onnxruntime as ort

    from compress.export.runtimes import host_int8_saturates

    out, man, par = exports("onnx", "int8")
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    assert ops.count("QLinearConv") >= 30 and "BatchNormalization" not in ops, ops
    # every conv with int8 weights reads a DequantizeLinear directly (the channel shuffle's are re-quantized),
    # and onnxruntime fuses each one but those whose ReLU6 feeds a quantizer shared with a signed tensor (a
    # Concat's unified scale): that Clip is not redundant, and onnxruntime fuses no conv -> Clip -> Q then
    graph = onnx.load(str(out / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {i: n for n in graph.node for i in n.input}
    values = constant_values(graph)
    quantized = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in producer
                 and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert all(producer[n.input[0]].op_type == "DequantizeLinear" for n in quantized)

    def clip_kept(conv) -> bool:
        clip = consumers.get(conv.output[0])
        q = consumers.get(clip.output[0]) if clip is not None and clip.op_type == "Clip" else None
        return q is not None and q.op_type == "QuantizeLinear" and int(values[q.input[2]]) != 0

    kept = sum(map(clip_kept, quantized))
    assert ops.count("QLinearConv") == len(quantized) - kept and kept <= 2
    assert man["details"]["onnxruntime_rewrites"]["data_movement_qdq_pairs"] > 0
    assert load_runner(out / "model.onnx").int8.startswith("emulated") == host_int8_saturates()
    assert load_runner(out / "model.onnx", int8="native").int8 == "native"
    assert ("host_int8_kernels" in par["checks"]["vs_float"]) == host_int8_saturates()
    assert par["checks"]["vs_float"]["int8_execution"] == load_runner(out / "model.onnx").int8


@pytest.mark.slow
def test_openvino_fp16(exports):
    out, man, par = exports("intel-nuc", "fp16")
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    r = load_runner(out / "model.xml", threads=1)
    assert isinstance(r, OpenVinoEmbedder) and r.runtime == "openvino"
    assert _cos(par, "vs_float") >= 0.999


@pytest.mark.slow
def test_openvino_int8(exports):
    out, man, par = exports("intel-nuc", "int8")
    assert man["details"]["openvino_ops"]["FakeQuantize"] > 20
    assert _cos(par, "vs_nncf_fake_quant") >= 0.99
    assert _cos(par, "vs_float") >= 0.95


def test_host_int8_saturation_is_read_from_the_cpu_flags():
    from compress.export.runtimes import host_int8_saturates

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert host_int8_saturates(avx2, "x86_64")
    assert not host_int8_saturates(avx2.replace("avx2", "avx2 avx512f avx512_vnni"), "x86_64")
    assert not host_int8_saturates(avx2 + "flags\t\t: avx_vnni\n".replace("flags", "x"), "aarch64")
    assert not host_int8_saturates("", "x86_64")  # no flags line: unknown, run the kernels as they are


@pytest.mark.slow
def test_openvino_int8_emulation_matches_fake_quant(exports, qart, images):
    """The emulated run (FakeQuantize in float) is what a VNNI board computes: it matches NNCF's fake-quant
    model on any host. "auto" emulates only where this host's int8 kernels saturate (x86 without VNNI), and
    parity.json then also shows what the native kernels gave."""
    from compress.export.parity import parity_record
    from compress.export.runtimes import host_int8_saturates

    out, man, par = exports("intel-nuc", "int8")
    emulated = load_runner(out / "model.xml", int8="emulated")
    assert emulated.int8.startswith("emulated") and load_runner(out / "model.xml", int8="native").int8 == "native"
    assert load_runner(out / "model.xml").int8.startswith("emulated") == host_int8_saturates()
    rec = parity_record(qart.qmodel, emulated, images, DESC)
    assert rec["cosine_min"] >= 0.99 and rec["int8_execution"].startswith("emulated")
    assert ("host_int8_kernels" in par["checks"]["vs_float"]) == host_int8_saturates()
    fp16 = load_runner(exports("intel-nuc", "fp16")[0] / "model.xml")
    assert fp16.int8 == "none" and "int8_execution" not in parity_record(qart.float_model, fp16, images, DESC)


@pytest.mark.slow
def test_tflite_fp32(exports):
    out, man, par = exports("raspberry-pi-4", "fp32")
    r = load_runner(out / "model.tflite", threads=1)
    assert isinstance(r, LiteRtEmbedder) and r.runtime == "litert"
    assert man["input"]["layout"] == "NHWC" and man["input"]["shape"] == [1, 112, 112, 3]
    assert _cos(par, "vs_float") >= 0.9999


@pytest.mark.slow
def test_tflite_int8(exports):
    out, man, par = exports("raspberry-pi-4", "int8")
    kf = man["details"]["keep_float"]
    assert kf["requested"] == ["stem", "embedding"] and kf["excluded_graph_nodes"] > 0
    assert man["details"]["tensor_dtypes"].get("int8", 0) > 20
    if man["input"]["dtype"] == "int8":
        assert man["input"]["quantization"]["scale"] > 0
    assert man["details"]["shared_concat_quantization"]["nodes"] == 4  # table3's parallel-expansion blocks
    # >= 0.99, not just 0.95: with the concats quantized per input (litert-torch's default) it was 0.973
    assert _cos(par, "vs_float") >= 0.99


def test_format_table():
    assert set(FORMATS) == {"onnx", "tensorrt", "openvino", "tflite"}
    assert FORMATS["tflite"].suffix == ".tflite" and "int8" in FORMATS["onnx"].precisions


# ---------------------------------------------------------------- errors
def test_unknown_target(model, images, tmp_path):
    with pytest.raises(UserError, match="unknown target 'no-such-board'"):
        export_model(model, "no-such-board", None, tmp_path / "x", parity_images=images, parity_desc=DESC)


def test_precision_not_offered(model, images, tmp_path):
    with pytest.raises(UserError, match="does not offer precision 'int8'.*fp16"):
        export_model(model, "jetson-nano", "int8", tmp_path / "x", parity_images=images, parity_desc=DESC)
    assert not (tmp_path / "x").exists()


def test_int8_needs_quantized_source(model, images, tmp_path):
    with pytest.raises(UserError, match=r"compress quantize --model M.*--precision fp16"):
        export_model(model, "jetson-orin-nano", None, tmp_path / "x", parity_images=images, parity_desc=DESC)


def test_missing_runtime(monkeypatch, model, images, tmp_path):
    (tmp_path / "model.xml").write_text("<net/>")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(UserError, match="pip install openvino"):
        load_runner(tmp_path / "model.xml")
    with pytest.raises(UserError, match="pip install openvino"):
        export_model(model, "intel-nuc", "fp16", tmp_path / "x", parity_images=images, parity_desc=DESC)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(UserError, match="pip install ai-edge-litert"):
        load_runner(tmp_path / "m.tflite")


def test_refuses_overwrite(model, images, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        export_model(model, "onnx", "fp32", out, parity_images=images, parity_desc=DESC, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_load_runner_unknown_suffix(tmp_path):
    with pytest.raises(UserError, match=".onnx, .xml, .tflite"):
        load_runner(tmp_path / "model.pb")
