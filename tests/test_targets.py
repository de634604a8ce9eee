from pathlib import Path

import pytest

from compress.errors import UserError
from compress.targets import (
    PRECISIONS,
    Target,
    format_target,
    format_target_list,
    list_targets,
    load_target,
    targets_dir,
)

SHIPPED = ["jetson-nano", "jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5", "intel-nuc", "onnx"]

GOOD = """
name = "{name}"
description = "test board"
runtime = "tflite"
runtime_version = "LiteRT 1.0"
precisions = ["int8", "fp32"]
default_precision = "int8"
input_layout = "NHWC"
batch = 1

[hardware]
device = "some SoC"
compute_unit = "cpu"
cores = 4
source = "spec sheet"

[[hardware.peak]]
precision = "fp32"
ops_per_s = 1e9
counted = "flop"
source = "spec sheet"

[latency_model]
calibrated = false
overhead_us = 5.0
[latency_model.efficiency]
depthwise = 0.2

[[reference]]
network = "MobileNet v2"
input_size = [224, 224]
precision = "fp32"
runtime = "xnnpack"
batch = 1
latency_ms = 44
source = "https://example.org/bench"
measured = "mean of 100 runs"
"""


def write(tmp_path: Path, text: str, name: str = "board") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text.format(name=name) if "{name}" in text else text)
    return p


def test_every_shipped_file_loads():
    ts = list_targets()
    names = [t.name for t in ts]
    assert set(SHIPPED) <= set(names)
    for t in ts:
        assert isinstance(t, Target) and t.batch == 1
        assert t.default_precision in t.precisions
        assert Path(t.path).stem == t.name


def test_targets_dir_env_override(tmp_path, monkeypatch):
    write(tmp_path, GOOD, "myboard")
    monkeypatch.setenv("COMPRESS_TARGETS", str(tmp_path))
    assert targets_dir() == tmp_path
    assert [t.name for t in list_targets()] == ["myboard"]


def test_jetson_nano_facts():
    t = load_target("jetson-nano")
    assert t.runtime == "tensorrt" and t.precisions == ("fp16",) and t.default_precision == "fp16"
    assert t.onnx_opset_max is not None and t.onnx_opset_max <= 13
    assert "8.2" in t.runtime_version and t.input_layout == "NCHW"
    assert t.hardware.peak_for("fp16").ops_per_s == pytest.approx(472e9)


def test_orin_offers_int8():
    t = load_target("jetson-orin-nano")
    assert t.runtime == "tensorrt" and "int8" in t.precisions and "fp16" in t.precisions
    assert "8.5" in t.runtime_version
    assert t.hardware.peak_for("int8").counted == "op"


@pytest.mark.parametrize("name", ["raspberry-pi-4", "raspberry-pi-5"])
def test_pis_are_tflite_int8_and_fp32(name):
    t = load_target(name)
    assert t.runtime == "tflite" and set(t.precisions) == {"int8", "fp32"}
    assert t.input_layout == "NHWC" and t.onnx_opset_max is None


def test_intel_nuc_is_openvino_int8_fp16():
    t = load_target("intel-nuc")
    assert t.runtime == "openvino" and set(t.precisions) == {"int8", "fp16"}


def test_onnx_target_is_boardless():
    t = load_target("onnx")
    assert t.runtime == "onnxruntime" and t.hardware is None and not t.references


def test_every_reference_and_hardware_figure_has_a_source():
    refs = 0
    for t in list_targets():
        for r in t.references:
            refs += 1
            assert r.source.strip() and r.measured.strip()
            assert r.latency_ms > 0 and r.precision in PRECISIONS
        if t.hardware is not None:
            hw = t.hardware
            if hw.cores or hw.clock_ghz or hw.memory_bandwidth_gbps:
                assert hw.source.strip()
            for p in hw.peak:
                assert p.source.strip()
        assert not t.latency_model.calibrated or t.latency_model.source.strip()
    assert refs >= 10
    # the classic reference the latency model is calibrated on
    pi4 = load_target("raspberry-pi-4")
    assert any("MobileNet v2" in r.network and r.latency_ms == 44 for r in pi4.references)


def test_unknown_target_lists_valid_names():
    with pytest.raises(UserError) as e:
        load_target("jetson-tx9")
    msg = str(e.value)
    assert msg.startswith("unknown target 'jetson-tx9'; choose one of: ")
    for n in SHIPPED:
        assert n in msg
    assert "\n" not in msg


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_target(tmp_path / "nope.toml")


def test_good_file_loads_with_defaults(tmp_path):
    t = load_target(write(tmp_path, GOOD))
    assert t.latency_model.efficiency_for("depthwise") == 0.2
    assert t.latency_model.efficiency_for("dense") == 1.0
    assert t.latency_model.overhead_us == 5.0
    assert t.references[0].input_size == (224, 224)
    assert t.hardware.peak[0].macs_per_s == 0.5e9


@pytest.mark.parametrize("edit,field", [
    (lambda s: s + '\nfoo = 1\n', "foo"),
    (lambda s: s.replace('runtime = "tflite"', 'runtime = "coreml"'), "runtime"),
    (lambda s: s.replace('default_precision = "int8"', 'default_precision = "fp16"'), "default_precision"),
    (lambda s: s.replace('precisions = ["int8", "fp32"]', 'precisions = ["int4"]'), "precisions[0]"),
    (lambda s: s.replace('precisions = ["int8", "fp32"]', 'precisions = []'), "precisions"),
    (lambda s: s.replace('batch = 1\n\n[hardware]', 'batch = 8\n\n[hardware]'), "batch"),
    (lambda s: s.replace('input_layout = "NHWC"', 'input_layout = "HWC"'), "input_layout"),
    (lambda s: s.replace('input_layout = "NHWC"', 'input_layout = "NHWC"\nonnx_opset_max = "13"'), "onnx_opset_max"),
    (lambda s: s.replace('description = "test board"\n', ''), "description"),
    (lambda s: s.replace('name = "board"', 'name = "other"'), "name"),
    (lambda s: s.replace('cores = 4', 'cores = "four"'), "hardware.cores"),
    (lambda s: s.replace('source = "spec sheet"\n\n[[hardware.peak]]', '\n[[hardware.peak]]'), "source"),
    (lambda s: s.replace('compute_unit = "cpu"', 'compute_unit = "fpga"'), "hardware.compute_unit"),
    (lambda s: s.replace('counted = "flop"', 'counted = "ips"'), "hardware.peak 1.counted"),
    (lambda s: s.replace('ops_per_s = 1e9', 'ops_per_s = -1'), "hardware.peak 1.ops_per_s"),
    (lambda s: s.replace('depthwise = 0.2', 'depthwise = 1.5'), "latency_model.efficiency.depthwise"),
    (lambda s: s.replace('depthwise = 0.2', 'grouped = 0.5'), "grouped"),
    (lambda s: s.replace('calibrated = false', 'calibrated = true'), "latency_model"),
    (lambda s: s.replace('source = "https://example.org/bench"\n', ''), "reference 1: missing field 'source'"),
    (lambda s: s.replace('source = "https://example.org/bench"', 'source = ""'), "reference 1.source"),
    (lambda s: s.replace('measured = "mean of 100 runs"', 'measured = "x"\nthreads = 4'), "threads"),
    (lambda s: s.replace('latency_ms = 44', 'latency_ms = "44 ms"'), "reference 1.latency_ms"),
    (lambda s: s.replace('input_size = [224, 224]', 'input_size = 224'), "reference 1.input_size"),
])
def test_malformed_file_names_file_and_field(tmp_path, edit, field):
    p = write(tmp_path, edit(GOOD.format(name="board")))
    with pytest.raises(UserError) as e:
        load_target(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg and "\n" not in msg


def test_invalid_toml(tmp_path):
    p = write(tmp_path, 'name = "board"\nruntime = [')
    with pytest.raises(UserError, match="not valid TOML"):
        load_target(p)


def test_format_target_list_has_key_facts():
    text = format_target_list(list_targets())
    lines = text.splitlines()
    nano = next(line for line in lines if line.startswith("jetson-nano "))
    assert "tensorrt" in nano and "fp16*" in nano and " 13 " in nano
    pi = next(line for line in lines if line.startswith("raspberry-pi-4"))
    assert "tflite" in pi and "int8*" in pi and "fp32" in pi and " - " in pi
    assert len([line for line in lines if any(line.startswith(n + " ") for n in SHIPPED)]) == len(SHIPPED)


def test_format_target_has_key_facts():
    text = format_target(load_target("jetson-nano"))
    for fact in ("tensorrt", "TensorRT 8.2", "fp16", "<= 13", "NCHW", "472 GFLOP/s", "25.6 GB/s",
                 "NOT calibrated", "torch2trt", "11.4 ms"):
        assert fact in text, fact
    pi = format_target(load_target("raspberry-pi-4"))
    assert "NHWC" in pi and "n/a (no ONNX step)" in pi and "no published figure for" in pi and "44 ms" in pi
    onnx = format_target(load_target("onnx"))
    assert "board-less" in onnx and "none published" in onnx
