"""MobileFaceNet in the project's network: the new schedule fields, the ONNX import (exact), its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compress.errors import UserError
from compress.model.network import FaceMobileNet, build_model
from compress.schedules import load_schedule, parse_schedule
from tests.test_prune import randomized

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER = SHARED / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"
LFW_DIR = SHARED / "data" / "lfw"


def _raw(**over):
    raw = {"name": "x", "stem": {"c": 16, "s": 2}, "head": {"c": 64},
           "stages": [{"t": 1, "c": 16, "n": 1, "s": 1, "residual": "dws"}, {"t": 2, "c": 24, "n": 2, "s": 2}]}
    raw.update(over)
    return raw


# ---------------------------------------------------------------- schedule fields

def test_mobilefacenet_schedule_builds_its_table():
    s = load_schedule("mobilefacenet")
    assert s.head_pool == "gdc" and s.activation == "relu6"
    assert s.stages[0].residual == "dws" and s.stages[0].activation == "relu"
    assert [(st.t, st.c, st.n, st.s) for st in s.stages[1:]] == [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1),
                                                                  (4, 128, 1, 2), (2, 128, 2, 1)]
    m = build_model(s).eval()
    assert sum(p.numel() for p in m.parameters()) == 999_808  # MobileFaceNet's ~0.99 M
    assert isinstance(m.stages[0][0].conv[0][2], nn.ReLU) and isinstance(m.stem[2], nn.ReLU6)
    assert m.pool[0].kernel_size == (7, 7) and m.pool[0].padding == (0, 0) and m.pool[0].groups == 512
    assert m(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_new_fields_validate_with_one_line_errors():
    with pytest.raises(UserError, match="activation must be one of"):
        parse_schedule(_raw(activation="prelu"))
    with pytest.raises(UserError, match="head.pool must be one of"):
        parse_schedule(_raw(head={"c": 64, "pool": "max"}))
    bad = _raw()
    bad["stages"][0]["t"] = 2
    with pytest.raises(UserError, match="t must be 1 for residual 'dws'"):
        parse_schedule(bad)
    bad = _raw()
    bad["stages"][1]["kept"] = [2, 3]
    with pytest.raises(UserError, match="kept must start with 1"):
        parse_schedule(bad)
    ok = _raw()
    ok["stages"][1]["kept"] = [1, 2]
    assert parse_schedule(ok).stages[1].kept == (1, 2)


def test_field_less_schedules_unchanged():
    """table2/table3 keep their module names and their stored schedule dict (no new keys)."""
    for name in ("table2", "table3"):
        s = load_schedule(name)
        d = s.to_dict()
        assert "activation" not in d and "head_pool" not in d
        assert all("activation" not in st and "kept" not in st for st in d["stages"])
        torch.manual_seed(0)
        m = FaceMobileNet(s)
        assert isinstance(m.pool, nn.AdaptiveAvgPool2d)
        assert not any(isinstance(x, nn.ReLU) for x in m.modules())


def test_schedules_show_prints_mobilefacenet():
    r = subprocess.run([sys.executable, "-m", "compress.cli", "schedules", "show", "mobilefacenet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "GDC dw 7x7 + BN" in r.stdout and "depthwise separable" in r.stdout and "999,808" in r.stdout


# ---------------------------------------------------------------- import: self-contained round trip

def _export(model: nn.Module, path: Path, size: int = 112) -> Path:
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["embedding"], do_constant_folding=True)
    return path


def test_exported_mobilefacenet_reimports_exactly(tmp_path):
    from compress.model.onnx_import import import_onnx

    src = randomized(load_schedule("mobilefacenet"))
    f = _export(src, tmp_path / "mfn.onnx")
    got = import_onnx(f)
    assert got.schedule.name == "mobilefacenet"
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        a, b = src(x), got(x)
    cos = torch.nn.functional.cosine_similarity(a, b).min().item()
    assert cos >= 0.99999
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_load_model_takes_an_onnx_file(tmp_path, monkeypatch):
    from compress.model.io import load_model, resolve_model_file

    monkeypatch.setenv("COMPRESS_ONNX_IMPORT_CACHE", str(tmp_path / "cache"))
    f = _export(randomized(load_schedule("mobilefacenet"), 1), tmp_path / "m.onnx")
    m = load_model(f)
    assert m.schedule.name == "mobilefacenet"
    p = resolve_model_file(f)
    assert p.parent.parent == tmp_path / "cache"
    import json

    from compress.artifacts import file_sha256
    assert json.loads((p.parent / "manifest.json").read_text())["source_onnx"]["sha256"] == file_sha256(f)


# ---------------------------------------------------------------- import: files that do not map

def test_non_mapping_onnx_names_the_first_node(tmp_path):
    from compress.model.onnx_import import import_onnx

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU6(), nn.Conv2d(8, 8, 5, 1, 2), nn.ReLU6())
    f = _export(net.eval(), tmp_path / "odd.onnx", size=32)
    with pytest.raises(UserError) as e:
        import_onnx(f)
    msg = str(e.value)
    assert "\n" not in msg and "odd.onnx" in msg and "(Conv)" in msg and "5x5" in msg


def test_residual_b_network_does_not_map(tmp_path):
    from compress.model.onnx_import import import_onnx

    torch.manual_seed(0)
    f = _export(build_model("table3").eval(), tmp_path / "t3.onnx")
    with pytest.raises(UserError, match="does not map onto the project's network"):
        import_onnx(f)


def test_cli_import_refuses_in_one_line(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 5, 1, 2))
    f = _export(net.eval(), tmp_path / "odd.onnx", size=32)
    r = subprocess.run([sys.executable, "-m", "compress.cli", "import-onnx", str(f), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "does not map" in r.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- import: the real teacher

@pytest.mark.shared
@pytest.mark.slow  # ~20 s idle (256 cached alignments + 256 onnxruntime runs); 130 s on a loaded 2-core host
@pytest.mark.skipif(not TEACHER.is_file() or not (LFW_DIR / "pairs.txt").is_file(),
                    reason="../shared teacher or LFW absent")
def test_teacher_imports_exactly_on_256_aligned_faces():
    from compress.data.transforms import to_float
    from compress.evaluate.lfw import align_benchmark_images, parse_pairs, unique_images
    from compress.model.onnx_import import import_onnx, parity_cosine

    model = import_onnx(TEACHER)
    assert model.schedule.name == "mobilefacenet"
    names = unique_images(parse_pairs(LFW_DIR / "pairs.txt"))[:256]
    root = next(p for p in LFW_DIR.iterdir() if p.is_dir())
    images, _ = align_benchmark_images([root / n for n in names], None, progress=False)
    x = to_float(torch.from_numpy(images)).numpy()
    assert parity_cosine(model, TEACHER, x) >= 0.99999
