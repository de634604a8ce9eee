"""int8 quantization (NNCF PTQ/QAT), keep-float scopes, the quantized artifact, calibration sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compress.data.folder import FaceSet
from compress.data.transforms import to_float
from compress.errors import UserError
from compress.model.io import save_model
from compress.model.network import batchnorms_folded, build_model, fold_batchnorms
from compress.quantize import (QuantizedArtifact, calibration_and_held_out, calibration_faces, fake_quant_cosine,
                               is_quantized_artifact, load_quantized, ptq, qat, quantize_artifact,
                               quantizer_placement, resolve_keep_float, save_quantized)
from .conftest import toy_faces, write_image_folder

pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def data():
    calib, held_out, _ = calibration_and_held_out(None, 32, seed=0, n_held_out=8)
    return calib, held_out


@pytest.fixture(scope="module")
def model(data):
    """table3 with real BatchNorm statistics: a freshly initialised net has running var 1 everywhere, which
    would make quantization look better (or worse) than on a trained one."""
    torch.manual_seed(0)
    m = build_model("table3").train()
    calib, _ = data
    imgs = torch.from_numpy(calibration_faces("synthetic", 48, seed=3)[0])
    with torch.no_grad():
        for _ in range(2):
            for i in range(0, len(imgs), 16):
                m(to_float(imgs[i:i + 16]))
    return m.eval()


@pytest.fixture(scope="module")
def q_default(model, data):
    return ptq(model, data[0])


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, model):
    """The whole `compress quantize` path once (full int8, PTQ then 1 QAT step): shared by several tests,
    because every NNCF quantization costs ~20 s on this CPU."""
    root = tmp_path_factory.mktemp("e2e")
    save_model(model, root / "run" / "model.pt")
    folder = write_image_folder(root / "train", toy_faces(classes=3, per_class=4, seed=5))
    manifest = quantize_artifact(root / "run", root / "q", mode="qat", n_calibration=16, n_held_out=4, keep_float=[],
                                 qat_steps=1, qat_batch_size=4, train_spec=str(folder), progress=False,
                                 bias_correction=True)  # the default is off; this path keeps the option tested
    return manifest, root


@pytest.fixture(scope="module")
def q_full(e2e):
    return load_quantized(e2e[1] / "q").qmodel


def _out(m, images):
    with torch.no_grad():
        return m.eval()(to_float(torch.from_numpy(images)))


@pytest.mark.slow
def test_ptq_keeps_embeddings_and_leaves_model_alone(model, data, q_default, q_full):
    calib, held_out = data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for q in (q_default, q_full):
        cos = fake_quant_cosine(model, q, held_out)
        assert cos["n"] == len(held_out)
        assert cos["mean"] > 0.99 and cos["min"] > 0.98, cos
        assert not q.training
        assert _out(q, held_out[:4]).shape == _out(model, held_out[:4]).shape
    # The quantized output really differs from the float one (quantizers are active), just not by much.
    assert not torch.equal(_out(q_full, held_out[:4]), _out(model, held_out[:4]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any("nncf" in n for n, _ in model.named_modules())


@pytest.mark.slow
def test_keep_float_really_leaves_layers_float(q_default, q_full):
    kept = quantizer_placement(q_default)
    full = quantizer_placement(q_full)
    # Full int8: first and last layer have weight and input quantizers. Every BN is folded into its conv
    # before quantization, so the embedding conv's output is the model's output: not quantized.
    assert {"stem.0", "embedding"} <= full["weights"]
    assert {"stem.0", "embedding"} <= full["inputs"] and "bn" not in full["inputs"]
    assert batchnorms_folded(q_full) and batchnorms_folded(q_default)
    # Default keep-float (stem, embedding + its BN): none of their weights or inputs are quantized ...
    for name in ("stem.0", "embedding"):
        assert name not in kept["weights"]
    for name in ("stem.0", "embedding", "bn"):
        assert name not in kept["inputs"]
    # ... while the layers in between still are (stem's output feeds the first block, quantized).
    assert kept["weights"] == full["weights"] - {"stem.0", "embedding"}
    assert "stages.0.0.conv.0.0" in kept["inputs"] and "head.0" in kept["weights"]


@pytest.mark.slow
def test_activation_quantizers_are_per_tensor(q_default, q_full):
    """TensorRT and onnxruntime's QLinear kernels take one scale per activation tensor."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import AsymmetricQuantizer, BaseQuantizer

    for q in (q_default, q_full):
        quantizers = [m for _, m in get_hook_storage(q).named_hooks() if isinstance(m, BaseQuantizer)]
        acts = [m for m in quantizers if isinstance(m, AsymmetricQuantizer)]  # weights are symmetric
        assert len(acts) > 20 and not any(m.per_channel for m in acts)


def test_fold_batchnorms_is_exact_and_round_trips(tmp_path, model, data):
    from compress.model.io import load_model, save_model

    held_out = data[1][:8]
    folded = fold_batchnorms(model.eval())
    assert batchnorms_folded(folded) and not batchnorms_folded(model)
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]  # keep-float names hold
    assert torch.allclose(_out(folded, held_out), _out(model, held_out), atol=1e-4)
    back = load_model(save_model(folded, tmp_path / "m.pt"))
    assert batchnorms_folded(back) and torch.equal(_out(back, held_out), _out(folded, held_out))


def test_keep_float_names(model):
    assert resolve_keep_float(model, ["stem", "embedding"]) == ["stem", "embedding", "bn"]
    # a GDC head (MobileFaceNet) is part of the embedding: per-tensor int8 there broke the pruned entries
    from compress.model.network import FaceMobileNet
    from compress.schedules import load_schedule

    mfn = FaceMobileNet(load_schedule("mobilefacenet"))
    assert resolve_keep_float(mfn, ["stem", "embedding"]) == ["stem", "pool", "embedding", "bn"]
    assert resolve_keep_float(mfn, ["stem"]) == ["stem"]
    assert resolve_keep_float(model, []) == []
    assert resolve_keep_float(model, ["stages.0.0"]) == ["stages.0.0"]
    with pytest.raises(UserError) as e:
        resolve_keep_float(model, ["stem", "classifier"])
    msg = str(e.value)
    assert "classifier" in msg and "\n" not in msg
    for name in ("stem", "stages", "head", "pool", "embedding", "bn"):
        assert name in msg
    with pytest.raises(UserError):
        ptq(model, np.zeros((1, 112, 112, 3), np.uint8), keep_float=["stages.99"])


@pytest.mark.slow
def test_save_load_round_trip_is_exact(tmp_path, model, data, q_default):
    calib, held_out = data
    art = QuantizedArtifact(None, model, q_default, calib, ["stem", "embedding", "bn"], {"mode": "ptq", "x": 1})
    dest = save_quantized(art, tmp_path / "q")
    assert is_quantized_artifact(dest) and not is_quantized_artifact(tmp_path)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["kind"] == manifest["stage"] == "quantize" and manifest["mode"] == "ptq"
    assert manifest["keep_float"] == ["stem", "embedding", "bn"] and manifest["versions"]["nncf"]
    back = load_quantized(dest)
    assert np.array_equal(back.calibration, calib) and back.calibration.dtype == np.uint8
    assert torch.equal(_out(back.qmodel, held_out), _out(q_default, held_out))
    assert torch.equal(_out(back.float_model, held_out), _out(model, held_out))
    assert back.keep_float == art.keep_float and back.meta == {"mode": "ptq", "x": 1}
    assert quantizer_placement(back.qmodel) == quantizer_placement(q_default)
    # model.pt is an ordinary model file: every existing tool reads it.
    from compress.model.io import load_model

    assert torch.equal(_out(load_model(dest), held_out[:2]), _out(model, held_out[:2]))

    with pytest.raises(UserError, match="already exists"):
        save_quantized(art, dest)
    art.meta = {"mode": "qat"}
    save_quantized(art, dest, overwrite=True)
    assert load_quantized(dest).meta == {"mode": "qat"}
    assert not list(tmp_path.glob(".*partial"))

    (dest / "quantized.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="quantized.pt") as e:
        load_quantized(dest)
    assert "\n" not in str(e.value)
    torch.save({"format": "something/else"}, dest / "quantized.pt")
    with pytest.raises(UserError, match="not a compress quantized model"):
        load_quantized(dest)
    with pytest.raises(UserError, match="not a quantized artifact"):
        load_quantized(tmp_path)


@pytest.mark.slow
def test_qat_fine_tunes_without_breaking(model, data, q_default):
    calib, held_out = data
    faces = toy_faces(classes=4, per_class=6)
    # Two unlabelled faces (label -1): distillation only, excluded from the margin loss.
    faces = FaceSet(faces.images, np.where(np.arange(len(faces)) < 2, -1, faces.labels), faces.classes, "toy")
    before = {k: v.clone() for k, v in q_default.state_dict().items()}
    history: list[dict] = []
    q = qat(model, calib, faces, steps=2, lr=1e-4, batch_size=4, qmodel=q_default, progress=False, history=history)
    assert len(history) == 2 and all(np.isfinite(h["loss"]) and np.isfinite(h["cls_loss"]) for h in history)
    assert not q.training
    after = q.state_dict()
    changed = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert any(k.startswith("stages.") and k.endswith("weight") for k in changed)
    assert all(torch.equal(before[k], v) for k, v in q_default.state_dict().items())  # input left alone
    # BN statistics were frozen (eval mode during QAT).
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith("running_mean"))
    assert fake_quant_cosine(model, q, held_out)["mean"] > 0.98


def test_calibration_faces(tmp_path):
    a, desc = calibration_faces(None, 10, seed=1)
    b, _ = calibration_faces("synthetic", 10, seed=1)
    assert a.shape == (10, 112, 112, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert desc["source"] == "synthetic" and desc["n"] == 10 and "500000" in desc["chosen"]
    with pytest.raises(UserError, match="at least 1"):
        calibration_faces(None, 0)
    folder = write_image_folder(tmp_path / "faces", toy_faces(classes=3, per_class=3, seed=2))
    c, d = calibration_faces(str(folder), 5, seed=0)
    assert c.shape == (5, 112, 112, 3) and d["source"] == "folder" and d["available"] == 9
    assert np.array_equal(c, calibration_faces(str(folder), 5, seed=0)[0])
    _, held_out, _ = calibration_and_held_out(str(folder), 5, n_held_out=10)
    assert len(held_out) == 4  # the 4 images not chosen for calibration
    with pytest.raises(UserError, match="only 9 usable images") as e:
        calibration_faces(str(folder), 20)
    assert "--calibration-images 9" in str(e.value)


@pytest.mark.slow
def test_quantize_artifact_end_to_end(e2e):
    manifest, root = e2e
    assert manifest["kind"] == "quantize" and manifest["mode"] == "qat" and manifest["keep_float"] == []
    cos = manifest["metrics"]["cosine"]
    assert cos["n"] == 4 and cos["mean"] > 0.98 and cos["versus"] == "source float model"
    assert manifest["meta"]["cosine_ptq"]["n"] == 4 and np.isfinite(manifest["meta"]["qat"]["final_loss"])
    assert len(manifest["source_model"]["sha256"]) == 64 and manifest["calibration"]["images"] == 16
    assert manifest["calibration"]["source"] == "synthetic" and "held_out" in manifest["calibration"]
    art = load_quantized(root / "q")
    assert art.calibration.shape == (16, 112, 112, 3) and art.meta["qat"]["steps"] == 1
    with pytest.raises(UserError, match="already exists"):
        quantize_artifact(root / "run", root / "q", progress=False)
    with pytest.raises(UserError, match="unknown quantization mode"):
        quantize_artifact(root / "run", root / "q2", mode="int4", progress=False)
    with pytest.raises(UserError, match="unknown layer"):
        quantize_artifact(root / "run", root / "q2", keep_float=["nope"], progress=False)
    with pytest.raises(UserError, match="overflow fix"):
        quantize_artifact(root / "run", root / "q2", overflow_fix="sometimes", progress=False)
    assert manifest["meta"]["nncf"]["overflow_fix"] == "disable"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """NNCF's cost here is Python hook overhead, not maths: one intra-op thread is as fast and does not fight
    a busy 2-core machine (measured: less wall time under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
