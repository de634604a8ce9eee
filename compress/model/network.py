"""FaceMobileNet: the paper's backbone and embedding head, read top to bottom like torchvision's MobileNetV2.

stem conv3x3 -> stages of residual blocks (a)/(b) from the schedule -> conv1x1 to head width -> global average
pool -> conv1x1 to the embedding size -> BatchNorm (the usual face-embedding normaliser, ArcFace's "BN" head).
With `[head] pool = "gdc"` (MobileFaceNet) the pool is a global depthwise conv (kernel = the last feature map's
size, no padding) + BN instead of the average pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..schedules import Schedule, load_schedule
from .blocks import BLOCKS, conv_bn


class FaceMobileNet(nn.Module):
    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        self.schedule = schedule
        act = schedule.activation
        self.stem = conv_bn(3, schedule.stem_c, 3, schedule.stem_s, act=act)
        stages = []
        cin = schedule.stem_c
        for st in schedule.stages:
            block = BLOCKS[st.residual]
            blocks = [block(cin if i == 0 else st.c, st.c, st.t, st.s if i == 0 else 1, st.hidden_of(i),
                            act=schedule.act_of(st)) for i in range(st.n)]
            stages.append(nn.Sequential(*blocks))
            cin = st.c
        self.stages = nn.Sequential(*stages)
        self.head = conv_bn(cin, schedule.head_c, 1, act=act)
        if schedule.head_pool == "gdc":
            k = final_size(schedule)
            self.pool = conv_bn(schedule.head_c, schedule.head_c, k, 1, groups=schedule.head_c, act=False, pad=0)
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Conv2d(schedule.head_c, schedule.embedding_size, 1, bias=False)
        self.bn = nn.BatchNorm1d(schedule.embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = self.pool(self.head(x))
        return self.bn(self.embedding(x).flatten(1))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(embedding, [the stem's, every stage's and the head's output maps]): the points where a pruned
        network keeps its source's widths (pruning narrows only the hidden channels inside the blocks), so
        block-wise feature distillation can compare them without adapters."""
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        feats.append(self.head(feats[-1]))
        return self.bn(self.embedding(self.pool(feats[-1])).flatten(1)), feats

    def rows(self) -> list[tuple[str, nn.Module, dict[str, Any]]]:
        """The paper's table rows: (operator, module, {t, c, n, s}) in forward order."""
        sch = self.schedule
        out: list[tuple[str, nn.Module, dict[str, Any]]] = [
            ("conv2d 3x3", self.stem, {"t": None, "c": sch.stem_c, "n": 1, "s": sch.stem_s})
        ]
        for st, mod in zip(sch.stages, self.stages):
            op = {"a": "bottleneck (a)", "b": "parallel expansion (b)", "dws": "depthwise separable"}[st.residual]
            out.append((op, mod, {"t": st.t, "c": st.c, "n": st.n, "s": st.s}))
        out.append(("conv2d 1x1", self.head, {"t": None, "c": sch.head_c, "n": 1, "s": 1}))
        if sch.head_pool == "gdc":
            k = final_size(sch)
            out.append((f"GDC dw {k}x{k} + BN", self.pool, {"t": None, "c": sch.head_c, "n": 1, "s": 1}))
        else:
            out.append(("avgpool", self.pool, {"t": None, "c": None, "n": 1, "s": None}))
        out.append(("conv2d 1x1 + BN", nn.Sequential(self.embedding, _Flatten(), self.bn),
                    {"t": None, "c": sch.embedding_size, "n": 1, "s": None}))
        return out


def fold_embedding_bn(model: FaceMobileNet) -> FaceMobileNet:
    """A copy of an eval-mode model whose final BatchNorm1d is folded into the embedding conv (weights scaled, a
    bias added, the BN an identity): the same function, and one op fewer for runtimes, which cannot fuse a BN
    that follows a Flatten (onnxruntime ran it as a separate op: 2.7% of the fp32 time)."""
    import copy

    out = copy.deepcopy(model).eval()
    bn, conv = out.bn, out.embedding
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
    out.embedding, out.bn = folded, nn.Identity()
    return out


def fold_batchnorms(model: FaceMobileNet) -> FaceMobileNet:
    """A copy of an eval-mode model with every BatchNorm folded into the conv before it (each conv gains a bias,
    each BN becomes an Identity at the same index, so module names are unchanged): the same function, in the
    Conv -> activation form integer runtimes fuse. Quantizing this form puts each weight quantizer on the weights
    the board multiplies with; quantizing before folding leaves a float BN between the int8 conv and its output
    quantizer, which onnxruntime then runs as dequantize -> float conv -> BN -> quantize."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = fold_embedding_bn(model) if not isinstance(model.bn, nn.Identity) else copy.deepcopy(model).eval()
    for mod in out.modules():
        if isinstance(mod, nn.Sequential):
            for i in range(len(mod) - 1):
                if isinstance(mod[i], nn.Conv2d) and isinstance(mod[i + 1], nn.BatchNorm2d):
                    mod[i] = fuse_conv_bn_eval(mod[i], mod[i + 1])
                    mod[i + 1] = nn.Identity()
    if not batchnorms_folded(out):
        raise ValueError("a BatchNorm does not follow a conv in the same Sequential: the model cannot be folded")
    return out


@torch.no_grad()
def recenter_batchnorms(model: nn.Module, images: torch.Tensor) -> int:
    """Re-express every BatchNorm around the statistics of its input on ``images`` (normalised NCHW floats):
    its running mean and variance become the data's, and its weight and bias change so that the eval-mode
    function stays exactly the same. A network whose BNs hold no data statistics (an imported ONNX, whose BNs
    were folded into the convs: mean 0, variance 1) then computes in train mode what it computes in eval mode,
    so fine-tuning starts from the network it was given instead of re-normalising every layer. Returns how many
    BNs were re-expressed."""
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def grab(mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        z = inputs[0].double()
        dims = tuple(d for d in range(z.dim()) if d != 1)  # all but the channels
        stats[mod] = (z.mean(dim=dims), z.var(dim=dims, unbiased=False))

    hooks = [m.register_forward_pre_hook(grab) for m in bns]
    was_training = model.training
    try:
        model.eval()(images)  # eval: every BN's input is what the unchanged network feeds it
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for bn in bns:
        mu, var = stats[bn]
        a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)  # eval: a * (z - mean) + bias
        bn.bias.copy_(bn.bias.double() + a * (mu - bn.running_mean.double()))
        bn.weight.copy_(a * torch.sqrt(var + bn.eps))
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
    return len(bns)


def batchnorms_folded(model: nn.Module) -> bool:
    """True for a model made by fold_batchnorms (no BatchNorm left)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def final_size(schedule: Schedule) -> int:
    """Spatial size of the last feature map (3x3 convs with padding 1: each stride-2 layer gives ceil(h / 2))."""
    h = schedule.input_size
    for s in [schedule.stem_s] + [st.s for st in schedule.stages]:
        h = (h - 1) // s + 1
    return h


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def build_model(schedule: Schedule | str | Path) -> FaceMobileNet:
    if not isinstance(schedule, Schedule):
        schedule = load_schedule(schedule)
    return FaceMobileNet(schedule)
