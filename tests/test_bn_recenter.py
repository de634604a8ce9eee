"""BatchNorms re-expressed around the data's statistics (compress.model.network.recenter_batchnorms): the same
function in eval mode, and train mode then computes what eval mode does, which fine-tuning an imported network
(BNs folded away in the ONNX: mean 0, variance 1) needs."""

import torch
from torch import nn

from compress.model.network import build_model, recenter_batchnorms


def _as_imported(model: nn.Module) -> nn.Module:
    """BN statistics replaced by what an ONNX import has: mean 0, variance 1 - eps, the conv bias in `bias`."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                a = m.weight / torch.sqrt(m.running_var + m.eps)
                m.bias.copy_(m.bias - a * m.running_mean)
                m.weight.copy_(a)
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
    return model


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a, b).min())


def test_recenter_keeps_the_eval_function_and_makes_train_mode_agree():
    torch.manual_seed(0)
    model = build_model("table3")
    with torch.no_grad():  # BN statistics far from the data's, as a trained network's are on new faces
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model = _as_imported(model.eval())
    x = torch.randn(64, 3, 112, 112)
    before_eval = model.eval()(x)
    train_before = model.train()(x.clone()).detach()
    assert _cos(train_before, before_eval) < 0.99  # the defect: train mode re-normalises every layer

    torch.manual_seed(0)
    model = _as_imported(build_model("table3").eval())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.bias.normal_(0, 0.5)
    before_eval = model.eval()(x)
    n = recenter_batchnorms(model, x)
    assert n == sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()) > 0
    after_eval = model.eval()(x)
    assert torch.allclose(after_eval, before_eval, rtol=1e-4, atol=1e-4)
    assert _cos(after_eval, before_eval) > 0.99999
    with torch.no_grad():
        train_after = model.train()(x)  # batch statistics = the stored ones on this batch
    assert _cos(train_after, before_eval) > 0.9999


def test_recenter_keeps_the_mode_it_found():
    model = build_model("table3").eval()
    recenter_batchnorms(model, torch.randn(4, 3, 112, 112))
    assert not model.training
    model.train()
    recenter_batchnorms(model, torch.randn(4, 3, 112, 112))
    assert model.training
