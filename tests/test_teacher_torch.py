"""compress.model.onnx_torch: an ONNX face model as a torch module, matching onnxruntime at any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compress.errors import UserError
from compress.evaluate.embed import OnnxEmbedder, OnnxTorchEmbedder, load_embedder, normalise_nchw
from compress.model.onnx_torch import onnx_to_torch

from .conftest import SHARED

TEACHER = SHARED / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    from compress.data.sources import synthetic_faces

    return synthetic_faces(128, 2, seed=0, progress=False).images  # uint8 [256,112,112,3]


@pytest.mark.slow
@pytest.mark.skipif(not TEACHER.is_file(), reason="needs ../shared/models/mobilefacenet-teacher")
def test_mobilefacenet_teacher_matches_onnxruntime(faces):
    torch.set_num_threads(1)
    x = normalise_nchw(faces)
    ref = OnnxEmbedder(TEACHER, threads=1).forward_nchw(x)  # the file's batch is fixed to 1: a loop
    module = onnx_to_torch(TEACHER)
    assert module.fixed_batch == 1 and not any(p.requires_grad for p in module.parameters())
    with torch.no_grad():
        for bs in (1, 64, len(x)):
            got = np.concatenate([module(torch.from_numpy(x[i:i + bs])).numpy() for i in range(0, len(x), bs)])
            assert got.shape == ref.shape == (256, 128)
            assert cosines(got, ref).min() >= 0.99999, bs
    # the embedder wrapper: same normalised embeddings as the onnxruntime one, batched
    emb = load_embedder(TEACHER, onnx_runtime="torch")
    assert isinstance(emb, OnnxTorchEmbedder) and emb.runtime == "torch-from-onnx" and emb.input_size == 112
    assert (emb.embed(faces[:64], batch_size=64) * OnnxEmbedder(TEACHER).embed(faces[:64])).sum(1).min() >= 0.99999
    t = torch.from_numpy(x[:8])
    assert torch.allclose(emb.forward_tensor(t), torch.from_numpy(ref[:8]), atol=1e-4)


class Tiny(nn.Module):
    """conv + BN + PReLU, a BN that cannot fold into a conv, depthwise conv, residual add, ReLU6, pool, Gemm."""

    def __init__(self, reshape: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.bn2 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.reshape = reshape
        for bn in (self.bn, self.bn2):  # non-trivial statistics
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
        self.act.weight.data.uniform_(0.05, 0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.act(self.bn(self.conv(x))))
        x = self.pool(x + torch.clamp(self.dw(x), 0, 6))
        x = x.reshape(x.size(0), -1) if self.reshape else x.flatten(1)
        return self.fc(x)


def export(tmp_path, fixed_batch: bool) -> str:
    torch.manual_seed(0)
    path = str(tmp_path / f"tiny_{'fixed' if fixed_batch else 'dynamic'}.onnx")
    dyn = None if fixed_batch else {"x": {0: "b"}, "e": {0: "b"}}
    torch.onnx.export(Tiny(reshape=fixed_batch).eval(), torch.zeros(1, 3, 32, 32), path, input_names=["x"],
                      output_names=["e"], dynamic_axes=dyn, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
    return path


@pytest.mark.parametrize("fixed_batch", [True, False])
def test_tiny_onnx_converts_and_matches_onnxruntime(tmp_path, fixed_batch):
    import onnx

    path = export(tmp_path, fixed_batch)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Conv", "BatchNormalization", "PRelu", "Gemm", "Add", "Clip"} <= ops
    assert ("Reshape" if fixed_batch else "Flatten") in ops
    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    ref = OnnxEmbedder(path).forward_nchw(x)  # per image for the fixed batch of 1
    module = onnx_to_torch(path).to("cpu")
    assert module.fixed_batch == (1 if fixed_batch else None)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
        module.cpu_chunk = 2  # the CPU's chunked path (uneven last chunk): the same result
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), got, atol=1e-6)
    assert got.shape == (5, 16)
    assert np.array_equal(x, np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32))  # input intact
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def erf_onnx(path) -> str:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Erf", ["f"], ["e"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_unsupported_op_is_a_user_error_and_the_embedder_falls_back(tmp_path, capsys):
    from compress.evaluate.embed import torch_beats_onnxruntime

    assert not torch_beats_onnxruntime("cpu") and torch_beats_onnxruntime("cuda:0")
    with pytest.raises(ValueError, match="onnx_runtime"):
        load_embedder(tmp_path / "x.onnx", onnx_runtime="ort")
    path = erf_onnx(tmp_path / "erf.onnx")
    with pytest.raises(UserError, match=r"ONNX op Erf is not supported.*use the ONNX runtime for this teacher"):
        onnx_to_torch(path)
    with pytest.raises(UserError, match="not found"):
        onnx_to_torch(tmp_path / "missing.onnx")
    emb = load_embedder(path, onnx_runtime="torch")
    assert isinstance(emb, OnnxEmbedder) and emb.runtime == "onnxruntime"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Erf" in err and "running erf.onnx in onnxruntime instead" in err


def test_online_teacher_runtime_is_recorded(tmp_path, monkeypatch):
    """The trainer's online teacher runs the converted module on accelerators (onnxruntime on the CPU), the same
    losses either way; the manifest says which."""
    from compress.train.config import TrainConfig
    from compress.train.trainer import train

    from .conftest import toy_faces

    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tc"))
    torch.manual_seed(0)
    teacher = tmp_path / "t.onnx"

    class Teacher(nn.Module):  # fixed batch 1, 128-d like table3's embedding
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 7, stride=7)
            self.fc = nn.Linear(8 * 16 * 16, 128)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.reshape(y.size(0), -1))

    torch.onnx.export(Teacher().eval(), torch.zeros(1, 3, 112, 112), str(teacher), input_names=["x"],
                      output_names=["e"], dynamo=False)
    c = TrainConfig(schedule="table3", epochs=1, batch_size=24, lr=0.05, s=16, m=0.2, warmup_epochs=0.5,
                    progress=False, threads=1, augment=False, teacher=str(teacher), distill_weight=1.0,
                    teacher_views="online")
    faces = toy_faces(classes=4, per_class=6)
    m = train(c, tmp_path / "cpu", faces=faces)  # "auto" on the CPU: onnxruntime, the faster one there
    assert m["teacher"]["online_runtime"] == "onnxruntime"
    monkeypatch.setattr("compress.evaluate.embed.torch_beats_onnxruntime", lambda device: True)  # as on a GPU
    t = train(c, tmp_path / "gpu-like", faces=faces)
    assert t["teacher"]["online_runtime"] == "torch-from-onnx"
    assert t["history"][0]["distill_loss"] == pytest.approx(m["history"][0]["distill_loss"], rel=1e-4)
