"""The two residual structures of the paper's Figure 6.

(a) InvertedResidual: MobileNet-v2's 1x1 expand -> 3x3 depthwise -> 1x1 linear project, identity shortcut
    when the stride is 1 and widths match.
(b) ParallelExpansion: ShuffleNet-v2's unit. With stride 1 and equal widths the input is split in half: one
    half is the shortcut, the other runs the expand/depthwise/project branch; the halves are concatenated and
    shuffled. That keeps input and output widths equal and has no element-wise add, which is what cuts memory
    access cost. Otherwise (downsampling or widening) both halves are computed from the whole input: a
    depthwise + pointwise branch ("DW" + "SW") beside the expand branch.
The hidden width of every expand branch is t x (that branch's input width), so a schedule's t means the same
thing for both kinds.
(dws) DepthwiseSeparable: MobileNet-v1's 3x3 depthwise + BN + act -> 1x1 pointwise + BN + act, no shortcut
    (MobileFaceNet's second layer). `act` names the activation ("relu6", the paper's; or "relu").
"""

from __future__ import annotations

import torch
from torch import nn


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def conv_bn(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool | str = True,
            pad: int | None = None) -> nn.Sequential:
    """Conv (no bias) + BN (+ activation: True = ReLU6, or a name from ACTIVATION_MODULES); pad defaults to k//2."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2 if pad is None else pad, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(ACTIVATION_MODULES["relu6" if act is True else act](inplace=True))
    return nn.Sequential(*layers)


def expand_branch(cin: int, cout: int, t: int, stride: int, hidden: int | None = None,
                  act: str = "relu6") -> nn.Sequential:
    """1x1 expand (skipped when t == 1, as in MobileNet-v2) -> 3x3 depthwise -> 1x1 linear project.

    `hidden` overrides the expand width t x cin (a pruned schedule's explicit per-block width)."""
    if hidden is not None and t == 1 and hidden != cin:
        raise ValueError(f"t = 1 has no expand conv, so the hidden width is the input width {cin}, not {hidden}")
    hidden = cin * t if hidden is None else hidden
    layers: list[nn.Module] = []
    if t != 1:
        layers.append(conv_bn(cin, hidden, 1, act=act))
    layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=act), conv_bn(hidden, cout, 1, act=False)]
    return nn.Sequential(*layers)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class InvertedResidual(nn.Module):
    kind = "a"

    def __init__(self, cin: int, cout: int, t: int, stride: int, hidden: int | None = None,
                 act: str = "relu6") -> None:
        super().__init__()
        self.stride = stride
        self.use_shortcut = stride == 1 and cin == cout
        self.conv = expand_branch(cin, cout, t, stride, hidden, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_shortcut else y


class ParallelExpansion(nn.Module):
    kind = "b"

    def __init__(self, cin: int, cout: int, t: int, stride: int, hidden: int | None = None,
                 act: str = "relu6") -> None:
        super().__init__()
        if cout % 2:
            raise ValueError(f"residual (b) needs an even output width, got {cout}")
        self.stride = stride
        self.split = stride == 1 and cin == cout
        half = cout // 2
        if self.split:
            self.shortcut = None
            self.branch = expand_branch(half, half, t, 1, hidden, act)
        else:
            # "DW" + "SW": depthwise then pointwise on the whole input, beside the expand branch.
            self.shortcut = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=False),
                                          conv_bn(cin, half, 1, act=act))
            self.branch = expand_branch(cin, half, t, stride, hidden, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch(b)), dim=1)
        else:
            out = torch.cat((self.shortcut(x), self.branch(x)), dim=1)
        return channel_shuffle(out, 2)


class DepthwiseSeparable(nn.Module):
    kind = "dws"

    def __init__(self, cin: int, cout: int, t: int, stride: int, hidden: int | None = None,
                 act: str = "relu6") -> None:
        super().__init__()
        if t != 1 or (hidden is not None and hidden != cin):
            raise ValueError(f"a depthwise-separable block has no expand conv (t = 1), got t = {t}, hidden = {hidden}")
        self.stride = stride
        self.conv = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=act), conv_bn(cin, cout, 1, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


BLOCKS: dict[str, type[nn.Module]] = {"a": InvertedResidual, "b": ParallelExpansion, "dws": DepthwiseSeparable}
