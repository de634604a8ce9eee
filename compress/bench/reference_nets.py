"""Per-layer specs of networks for the latency estimator (compress/bench/estimate.py).

A network is reduced to the list of its Conv2d / Linear layers, in forward order, each a `LayerSpec`:

    kind        "depthwise" (groups == in == out channels, groups > 1), "pointwise" (1x1, groups == 1) or
                "dense" (every other conv: standard KxK, grouped; and fully connected layers)
    macs        multiply-accumulates: output elements x (in_channels / groups) x kH x kW; Linear: in x out.
                Bias adds are not counted (BatchNorm is folded into the conv, so its bias is free).
    weight / input / output element counts, so bytes = elements x element size of the precision
                (fp32 4, fp16 2, int8 1 byte; int8 biases are int32 in practice, counted at 1 byte here)

What is NOT in the list: BatchNorm (folded into the preceding conv), activations, residual adds, concat,
split, channel shuffle, pooling, squeeze-and-excite multiplies, flatten. They are ignored entirely (neither
compute nor memory); on the boards modelled here the runtimes fuse them into the neighbouring conv or they are
a small share of the time, and the fitted per-layer overhead absorbs what is left.

Layers are found by running the network once with forward hooks on nn.Conv2d / nn.Linear on the "meta" device
(shapes only, no arithmetic, no weights), so even ResNet-50 takes milliseconds.

Reference networks are rebuilt here from their published architecture definitions, without torchvision:

    MobileNet v1 (Howard et al. 2017, arXiv:1704.04861, Table 1), depth multiplier alpha
    MobileNet v2 (Sandler et al. 2018, arXiv:1801.04381, Table 2), width 1.0
    MobileNet v3 Large / Small (Howard et al. 2019, arXiv:1905.02244, Tables 1 and 2; SE width = make_divisible
        (expansion / 4, 8) as in the authors' TF-slim / torchvision code)
    ResNet-18 / 34 / 50 / 101 / 152 (He et al. 2016, arXiv:1512.03385, Table 1; v1.5 = stride on the 3x3 as
        torchvision, which the torch2trt benchmark timed); 'ResNet-50 v1' = stride on the first 1x1 (the paper's
        and MXNet Gluon's v1, e.g. the ONNX model zoo's resnet50-v1-7)
    SqueezeNet 1.0 / 1.1 (arXiv:1602.07360; github.com/forresti/SqueezeNet v1.1 prototxt; torchvision's)
    AlexNet (torchvision's one-GPU variant), VGG-11 / VGG-16 (arXiv:1409.1556 configurations A and D)
    YOLOv3-tiny (darknet yolov3-tiny.cfg; the network only, no box decoding / NMS)
    MobileFaceNet (Chen et al. 2018, arXiv:1804.07573, Table 1; the project's reference face model)
A '(N-class head)' in a [[reference]] network name builds the classifier with N outputs (e.g. NetsPresso's
benchmarks time 3-class heads); otherwise 1000 (ImageNet).

Networks with no builder, and why (the estimator reports them as "not usable for calibration"):

    SSD MobileNet v2 / SSD MobileNet v1 0.75 (COCO detectors): the published latencies time the whole detector
        including non-max suppression and box decoding (on the CPU in A. Allan's TF-TRT runs), which this
        per-layer model does not represent; and the SSD head of the exact timed model file is not pinned down
        (tensorflow/models' ssd_mobilenet_v2_coco.config changed between box-predictor kernel 1 and 3 and
        use_depthwise false / true across commits), so a faithful layer list cannot be built.
    YOLOv8n: C2f / SPPF / decoupled head with DFL post-processing; not rebuilt here (no published per-layer
        definition is reproduced in this repository), and the one published latency is a single reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

KINDS = ("depthwise", "pointwise", "dense")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
ELEMENTWISE_POLICY = ("BatchNorm folded into the conv; activations, adds, concat/split/shuffle, pooling and SE "
                      "multiplies ignored (neither compute nor memory)")


@dataclass(frozen=True)
class LayerSpec:
    name: str
    kind: str                  # depthwise | pointwise | dense
    macs: int
    weight_elems: int          # weights + folded bias
    in_elems: int
    out_elems: int
    out_shape: tuple[int, ...]  # C, H, W for convs; (features,) for Linear

    def bytes(self, precision: str) -> int:
        """Weights + input + output activations at the precision's element size."""
        return (self.weight_elems + self.in_elems + self.out_elems) * ELEMENT_BYTES[precision]


def conv_kind(m: nn.Conv2d) -> str:
    if m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        return "depthwise"
    if m.groups == 1 and tuple(m.kernel_size) == (1, 1):
        return "pointwise"
    return "dense"


def layer_specs(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerSpec]:
    """Conv2d / Linear layers of `model` for one input of shape (C, H, W), batch 1, in forward order.

    Runs where the model's parameters are: a model built under `torch.device("meta")` is traced on shapes only
    (no arithmetic), which is how the reference networks are walked."""
    specs: list[LayerSpec] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inp[0]
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs = out.numel() * (m.in_channels // m.groups) * kh * kw
            w = m.weight.numel() + m.out_channels
            specs.append(LayerSpec(names.get(m, "?"), conv_kind(m), int(macs), int(w), int(x.numel()),
                                   int(out.numel()), tuple(out.shape[1:])))
        else:
            macs = (x.numel() // x.shape[-1]) * m.in_features * m.out_features
            w = m.weight.numel() + m.out_features
            specs.append(LayerSpec(names.get(m, "?"), "dense", int(macs), int(w), int(x.numel()),
                                   int(out.numel()), tuple(out.shape[1:])))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = list(model.parameters())
    dev = params[0].device if params else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=dev))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return specs


# ---------------------------------------------------------------- FaceMobileNet
def face_layers(model_or_schedule) -> list[LayerSpec]:
    """Layer specs of a FaceMobileNet (or of a Schedule / schedule name / path, built on the meta device)."""
    from ..model.network import FaceMobileNet, build_model
    from ..schedules import Schedule, load_schedule

    if isinstance(model_or_schedule, FaceMobileNet):
        model = model_or_schedule
    else:
        sch = model_or_schedule if isinstance(model_or_schedule, Schedule) else load_schedule(model_or_schedule)
        with torch.device("meta"):
            model = build_model(sch)
    size = model.schedule.input_size
    return layer_specs(model, (3, size, size))


# ---------------------------------------------------------------- reference architectures
def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Channel rounding of the MobileNet v2/v3 reference code (never more than 10% below v)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _cbr(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    """arXiv:1704.04861 Table 1: conv 3x3/2 32, 13 depthwise-separable blocks, avgpool, FC 1000."""

    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, alpha: float = 1.0, classes: int = 1000) -> None:
        super().__init__()
        c = int(32 * alpha)
        layers: list[nn.Module] = [_cbr(3, c, 3, 2)]
        for out, s in self.CFG:
            o = int(out * alpha)
            layers += [_cbr(c, c, 3, s, groups=c), _cbr(c, o, 1)]
            c = o
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class _InvRes(nn.Module):
    def __init__(self, cin: int, cout: int, s: int, t: int) -> None:
        super().__init__()
        h = cin * t
        layers: list[nn.Module] = [] if t == 1 else [_cbr(cin, h, 1)]
        layers += [_cbr(h, h, 3, s, groups=h), nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(nn.Module):
    """arXiv:1801.04381 Table 2 (width 1.0): t, c, n, s rows, conv 1x1 1280, avgpool, FC 1000."""

    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        c = 32
        layers: list[nn.Module] = [_cbr(3, c, 3, 2)]
        for t, out, n, s in self.CFG:
            for i in range(n):
                layers.append(_InvRes(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(_cbr(c, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class _SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        sq = _make_divisible(c // 4, 8)
        self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class _V3Block(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, s: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if exp == cin else [_cbr(cin, exp, 1)]
        layers.append(_cbr(exp, exp, k, s, groups=exp))
        if se:
            layers.append(_SE(exp))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV3(nn.Module):
    """arXiv:1905.02244 Table 1 (Large) / Table 2 (Small): (in, kernel, exp, out, SE, stride) rows.
    Activations (ReLU / h-swish) do not change the layer list, so ReLU stands in for both."""

    LARGE = [(16, 3, 16, 16, False, 1), (16, 3, 64, 24, False, 2), (24, 3, 72, 24, False, 1),
             (24, 5, 72, 40, True, 2), (40, 5, 120, 40, True, 1), (40, 5, 120, 40, True, 1),
             (40, 3, 240, 80, False, 2), (80, 3, 200, 80, False, 1), (80, 3, 184, 80, False, 1),
             (80, 3, 184, 80, False, 1), (80, 3, 480, 112, True, 1), (112, 3, 672, 112, True, 1),
             (112, 5, 672, 160, True, 2), (160, 5, 960, 160, True, 1), (160, 5, 960, 160, True, 1)]
    SMALL = [(16, 3, 16, 16, True, 2), (16, 3, 72, 24, False, 2), (24, 3, 88, 24, False, 1),
             (24, 5, 96, 40, True, 2), (40, 5, 240, 40, True, 1), (40, 5, 240, 40, True, 1),
             (40, 5, 120, 48, True, 1), (48, 5, 144, 48, True, 1), (48, 5, 288, 96, True, 2),
             (96, 5, 576, 96, True, 1), (96, 5, 576, 96, True, 1)]

    def __init__(self, size: str = "large", classes: int = 1000) -> None:
        super().__init__()
        cfg, last, hidden = (self.LARGE, 960, 1280) if size == "large" else (self.SMALL, 576, 1024)
        layers: list[nn.Module] = [_cbr(3, 16, 3, 2)]
        layers += [_V3Block(*row) for row in cfg]
        layers.append(_cbr(cfg[-1][3], last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(last, hidden), nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.pool(self.features(x)).flatten(1))))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, s: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, c, 3, s), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.down = None if s == 1 and cin == c else nn.Sequential(nn.Conv2d(cin, c, 1, s, bias=False),
                                                                     nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, s: int) -> None:
        super().__init__()
        out = c * 4
        self.body = nn.Sequential(_cbr(cin, c, 1), _cbr(c, c, 3, s), nn.Conv2d(c, out, 1, bias=False),
                                  nn.BatchNorm2d(out))
        self.down = None if s == 1 and cin == out else nn.Sequential(nn.Conv2d(cin, out, 1, s, bias=False),
                                                                       nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))


class _BottleneckV1(_Bottleneck):
    """ResNet v1 bottleneck as published (He et al. 2016, the authors' Caffe models; MXNet Gluon's BottleneckV1,
    which the ONNX model zoo's resnet50-v1-7 exports): the stride on the first 1x1, not on the 3x3 as in v1.5."""

    def __init__(self, cin: int, c: int, s: int) -> None:
        super().__init__(cin, c, s)
        out = c * 4
        self.body = nn.Sequential(_cbr(cin, c, 1, s), _cbr(c, c, 3), nn.Conv2d(c, out, 1, bias=False),
                                  nn.BatchNorm2d(out))


class ResNet(nn.Module):
    """arXiv:1512.03385 Table 1: conv 7x7/2 64, maxpool 3x3/2, four stages, avgpool, FC 1000."""

    def __init__(self, block: type, counts: tuple[int, ...], classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), counts)):
            for j in range(n):
                layers.append(block(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c * block.expansion
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class _Fire(nn.Module):
    def __init__(self, cin: int, sq: int, e1: int, e3: int) -> None:
        super().__init__()
        self.sq, self.e1, self.e3 = nn.Conv2d(cin, sq, 1), nn.Conv2d(sq, e1, 1), nn.Conv2d(sq, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.sq(x))
        return torch.cat((torch.relu(self.e1(x)), torch.relu(self.e3(x))), 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet v1.1 (forresti/SqueezeNet v1.1 prototxt, = torchvision squeezenet1_1)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        mp = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), mp(),
            _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64), mp(),
            _Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128), mp(),
            _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256))
        self.classifier = nn.Conv2d(512, classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.classifier(self.features(x)))).flatten(1)



class SqueezeNet10(nn.Module):
    """SqueezeNet v1.0 (Iandola et al. 2016, arXiv:1602.07360 Table 1; = torchvision squeezenet1_0)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        mp = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(inplace=True), mp(),
            _Fire(96, 16, 64, 64), _Fire(128, 16, 64, 64), _Fire(128, 32, 128, 128), mp(),
            _Fire(256, 32, 128, 128), _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256),
            mp(), _Fire(512, 64, 256, 256))
        self.classifier = nn.Conv2d(512, classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.classifier(self.features(x)))).flatten(1)


class AlexNet(nn.Module):
    """torchvision's AlexNet (the one-GPU variant of Krizhevsky et al. 2012, arXiv:1404.5997 channel widths)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        mp = lambda: nn.MaxPool2d(3, 2)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), mp(), nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True), mp(), nn.Conv2d(192, 384, 3, padding=1), nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1), mp(), nn.AdaptiveAvgPool2d(6))
        self.fc = nn.Sequential(nn.Linear(256 * 36, 4096), nn.Linear(4096, 4096), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class VGG(nn.Module):
    """Simonyan & Zisserman 2014 (arXiv:1409.1556) Table 1, configurations A (VGG-11) and D (VGG-16)."""

    CFGS = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
            16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}

    def __init__(self, depth: int, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.CFGS[depth]:
            layers.append(nn.MaxPool2d(2) if v == "M" else _cbr(c, int(v), 3))
            c = c if v == "M" else int(v)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7))
        self.fc = nn.Sequential(nn.Linear(512 * 49, 4096), nn.Linear(4096, 4096), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class YoloV3Tiny(nn.Module):
    """Darknet yolov3-tiny.cfg (pjreddie/darknet): 13 convs, two 255-channel detection heads (80 COCO classes);
    box decoding and NMS are outside the network (Open Model Zoo's yolo-v3-tiny-tf IR ends at the heads)."""

    def __init__(self) -> None:
        super().__init__()
        chans = [16, 32, 64, 128, 256]
        body: list[nn.Module] = []
        c = 3
        for o in chans:
            body += [_cbr(c, o, 3), nn.MaxPool2d(2)]
            c = o
        self.body = nn.Sequential(*body[:-1])               # up to the 256-channel 26x26 route layer
        self.tail = nn.Sequential(nn.MaxPool2d(2), _cbr(256, 512, 3), nn.ZeroPad2d((0, 1, 0, 1)),
                                  nn.MaxPool2d(2, 1), _cbr(512, 1024, 3), _cbr(1024, 256, 1))
        self.head1 = nn.Sequential(_cbr(256, 512, 3), nn.Conv2d(512, 255, 1))
        self.lat = _cbr(256, 128, 1)
        self.head2 = nn.Sequential(_cbr(384, 256, 3), nn.Conv2d(256, 255, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.body(x)
        t = self.tail(r)
        up = nn.functional.interpolate(self.lat(t), scale_factor=2.0)
        return torch.cat((self.head1(t).flatten(1), self.head2(torch.cat((up, r), 1)).flatten(1)), 1)


class MobileFaceNet(nn.Module):
    """Chen et al. 2018 (arXiv:1804.07573) Table 1 at 112x112: conv 3x3/2 64, depthwise 3x3 64, bottlenecks
    (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2) (2,128,2,1), conv 1x1 512, linear GDConv 7x7
    (depthwise, no padding), linear conv 1x1 128 (the embedding)."""

    CFG = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]

    def __init__(self, embedding: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [_cbr(3, 64, 3, 2), _cbr(64, 64, 3, 1, groups=64)]
        c = 64
        for t, out, n, s in self.CFG:
            for i in range(n):
                layers.append(_InvRes(c, out, s if i == 0 else 1, t))
                c = out
        layers += [_cbr(c, 512, 1), nn.Conv2d(512, 512, 7, groups=512, bias=False), nn.BatchNorm2d(512),
                   nn.Conv2d(512, embedding, 1, bias=False), nn.BatchNorm2d(embedding)]
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


@dataclass(frozen=True)
class ReferenceNet:
    key: str
    title: str
    build: Callable[..., nn.Module] | None   # build(classes=1000) -> model
    published_macs: float | None      # at published_size; None when not modelled
    published_size: int
    mac_source: str
    not_modelled: str = ""             # why there is no builder (build is None)


_DET = ("whole-detector latency includes non-max suppression and box decoding, which a per-layer conv model does "
        "not represent, and the SSD head of the exact timed model file is not pinned down (box-predictor kernel "
        "1 vs 3, use_depthwise false vs true differ across tensorflow/models ssd_mobilenet_*_coco.config "
        "versions), so no faithful layer list can be built")

NETWORKS: dict[str, ReferenceNet] = {n.key: n for n in [
    ReferenceNet("mobilenet_v1_1.0", "MobileNet v1 1.0", lambda classes=1000: MobileNetV1(1.0, classes), 569e6, 224,
                 "Howard et al. 2017 (arXiv:1704.04861) Table 8: 1.0 MobileNet-224, 569 million mult-adds"),
    ReferenceNet("mobilenet_v1_0.75", "MobileNet v1 0.75", lambda classes=1000: MobileNetV1(0.75, classes), 325e6, 224,
                 "Howard et al. 2017 (arXiv:1704.04861) Table 6: 0.75 MobileNet-224, 325 million mult-adds"),
    ReferenceNet("mobilenet_v2_1.0", "MobileNet v2 1.0", lambda classes=1000: MobileNetV2(classes), 300e6, 224,
                 "Sandler et al. 2018 (arXiv:1801.04381) Table 4: MobileNetV2 (1.0, 224), 300M multiply-adds"),
    ReferenceNet("mobilenet_v3_large", "MobileNet v3 Large 1.0", lambda classes=1000: MobileNetV3("large", classes), 219e6, 224,
                 "Howard et al. 2019 (arXiv:1905.02244) Table 3: V3-Large 1.0, 219M MAdds (torchvision: 0.22 "
                 "GFLOPS); the paper's count includes SE / h-swish element ops that are not conv MACs"),
    ReferenceNet("mobilenet_v3_small", "MobileNet v3 Small 1.0", lambda classes=1000: MobileNetV3("small", classes), 56e6, 224,
                 "Howard et al. 2019 (arXiv:1905.02244) Table 4: V3-Small 1.0, 56M MAdds (torchvision 0.06 GFLOPS)"),
    ReferenceNet("resnet_18", "ResNet-18", lambda classes=1000: ResNet(_Basic, (2, 2, 2, 2), classes), 1.8e9, 224,
                 "He et al. 2016 (arXiv:1512.03385) Table 1: 18-layer, 1.8x10^9 FLOPs (multiply-adds)"),
    ReferenceNet("resnet_50", "ResNet-50", lambda classes=1000: ResNet(_Bottleneck, (3, 4, 6, 3), classes), 4.1e9, 224,
                 "He et al. 2016 (arXiv:1512.03385) Table 1: 50-layer, 3.8x10^9 FLOPs for v1 (torchvision v1.5: "
                 "4.09 GFLOPS = GMACs); the v1.5 figure is used"),
    ReferenceNet("squeezenet_1.1", "SqueezeNet 1.1", lambda classes=1000: SqueezeNet11(classes), 349e6, 224,
                 "torchvision squeezenet1_1 model card: 0.35 GFLOPS (MACs); forresti/SqueezeNet v1.1 README: "
                 "'2.4x less computation than SqueezeNet 1.0' (861M -> ~355M)"),
    ReferenceNet("resnet_50_v1", "ResNet-50 v1", lambda classes=1000: ResNet(_BottleneckV1, (3, 4, 6, 3), classes),
                 3.8e9, 224, "He et al. 2016 (arXiv:1512.03385) Table 1: 50-layer, 3.8x10^9 FLOPs (multiply-adds), "
                 "v1 = stride on the bottleneck's first 1x1"),
    ReferenceNet("resnet_34", "ResNet-34", lambda classes=1000: ResNet(_Basic, (3, 4, 6, 3), classes), 3.6e9, 224,
                 "He et al. 2016 (arXiv:1512.03385) Table 1: 34-layer, 3.6x10^9 FLOPs (multiply-adds)"),
    ReferenceNet("resnet_101", "ResNet-101", lambda classes=1000: ResNet(_Bottleneck, (3, 4, 23, 3), classes), 7.8e9,
                 224, "torchvision resnet101 model card (v1.5, stride on the 3x3 as built here): 7.80 GFLOPS (MACs); "
                 "He et al. 2016 Table 1 gives 7.6x10^9 for v1"),
    ReferenceNet("resnet_152", "ResNet-152", lambda classes=1000: ResNet(_Bottleneck, (3, 8, 36, 3), classes), 11.5e9,
                 224, "torchvision resnet152 model card (v1.5): 11.51 GFLOPS (MACs); He et al. 2016 Table 1: 11.3x10^9 "
                 "for v1"),
    ReferenceNet("squeezenet_1.0", "SqueezeNet 1.0", lambda classes=1000: SqueezeNet10(classes), 819e6, 224,
                 "torchvision squeezenet1_0 model card: 0.82 GFLOPS (MACs)"),
    ReferenceNet("alexnet", "AlexNet", lambda classes=1000: AlexNet(classes), 714e6, 224,
                 "torchvision alexnet model card: 0.71 GFLOPS (MACs)"),
    ReferenceNet("vgg_11", "VGG-11", lambda classes=1000: VGG(11, classes), 7.61e9, 224,
                 "torchvision vgg11 model card: 7.61 GFLOPS (MACs)"),
    ReferenceNet("vgg_16", "VGG-16", lambda classes=1000: VGG(16, classes), 15.47e9, 224,
                 "torchvision vgg16 model card: 15.47 GFLOPS (MACs)"),
    ReferenceNet("yolov3_tiny", "YOLOv3-tiny (network only)", lambda classes=1000: YoloV3Tiny(), 2.78e9, 416,
                 "pjreddie.com/darknet/yolo table: YOLOv3-tiny 416, 5.56 Bn FLOPS (darknet counts 2 FLOPs per MAC)"),
    ReferenceNet("mobilefacenet", "MobileFaceNet", lambda classes=1000: MobileFaceNet(), 221e6, 112,
                 "Chen et al. 2018 (arXiv:1804.07573) Table 3: MobileFaceNet, 0.99M params, 221M MAdds"),
    ReferenceNet("ssd_mobilenet_v2_1.0", "SSD MobileNet v2 (COCO)", None, None, 300, "", _DET),
    ReferenceNet("ssd_mobilenet_v1_0.75", "SSD MobileNet v1 0.75 depth (COCO)", None, None, 300, "", _DET),
    ReferenceNet("yolov8n", "YOLOv8n", None, None, 640, "",
                 "not rebuilt here (C2f / SPPF / decoupled head + DFL decoding); its one published latency is also "
                 "GPU-compute-only in MAXN_SUPER mode, not the clocks of the target's [hardware] figures"),
]}


def network_key(name: str) -> str | None:
    """Normalised key of a [[reference]] `network` string, or None when the family is not recognised.

    'MobileNet v2 1.0X (ImageNet classifier)' -> 'mobilenet_v2_1.0'; 'SSD MobileNet v1 0.75 depth (...)' ->
    'ssd_mobilenet_v1_0.75'; 'ResNet-18 (torchvision classifier)' -> 'resnet_18'."""
    s = name.lower()
    s = re.sub(r"\(.*?\)", " ", s)          # drop parenthetical descriptions
    s = s.replace("_", " ").replace("-", " ")
    ssd = "ssd" in s.split() or s.startswith("ssd")
    if m := re.search(r"mobile\s*net\s*v?\s*(\d)", s):
        ver = m.group(1)
        rest = s[m.end():]
        if ver == "3":
            size = "small" if "small" in rest else "large"
            key = f"mobilenet_v3_{size}"
        else:
            mult = re.search(r"(\d+(?:\.\d+)?)\s*x?\b", rest)
            key = f"mobilenet_v{ver}_{float(mult.group(1)) if mult else 1.0:g}"
            if "." not in key.rsplit("_", 1)[1]:
                key += ".0"
        return ("ssd_" + key) if ssd else key
    if "mobilefacenet" in s.replace(" ", ""):
        return "mobilefacenet"
    if re.search(r"yolo\s*v?\s*3\s*tiny", s):
        return "yolov3_tiny"
    if m := re.search(r"\bvgg\s*(\d+)", s):
        return f"vgg_{m.group(1)}"
    if re.search(r"\balex\s*net\b", s):
        return "alexnet"
    if m := re.search(r"res\s*net\s*(\d+)(\s*v\s*1(?![.\d]))?", s):
        v1 = f"resnet_{m.group(1)}_v1"    # 'v1' names the stride-on-1x1 bottleneck; basic blocks have no variant
        return v1 if m.group(2) and v1 in NETWORKS else f"resnet_{m.group(1)}"
    if m := re.search(r"squeeze\s*net\s*v?\s*(\d\.\d)", s):
        return f"squeezenet_{m.group(1)}"
    if m := re.search(r"yolo\s*v?\s*(\d+)\s*([nsmlx])\b", s):
        return f"yolov{m.group(1)}{m.group(2)}"
    return None


def lookup(name: str) -> ReferenceNet | None:
    key = network_key(name)
    return None if key is None else NETWORKS.get(key)


def head_classes(name: str) -> int:
    """Classifier width named in a [[reference]] network string ('... (3-class head)'); 1000 (ImageNet) otherwise."""
    m = re.search(r"(\d+)[- ]class head", name.lower())
    return int(m.group(1)) if m else 1000


@lru_cache(maxsize=128)
def _cached_specs(key: str, h: int, w: int, classes: int = 1000) -> tuple[LayerSpec, ...]:
    net = NETWORKS[key]
    assert net.build is not None
    with torch.device("meta"):
        model = net.build(classes)
    return tuple(layer_specs(model, (3, h, w)))


def reference_layers(name: str, input_size: tuple[int, int] | int = 224) -> list[LayerSpec]:
    """Layer specs of a reference network named as in a [[reference]] entry, at its input size (and with the
    classifier width the name gives, e.g. '(3-class head)').

    Raises LookupError with the reason when the network is unknown or deliberately not modelled."""
    net = lookup(name)
    if net is None:
        raise LookupError(f"no layer model for network {name!r} (family not recognised)")
    if net.build is None:
        raise LookupError(f"{net.title} is not modelled: {net.not_modelled}")
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    return list(_cached_specs(net.key, int(h), int(w), head_classes(name)))


def total_macs(layers: list[LayerSpec]) -> int:
    return sum(ly.macs for ly in layers)


def macs_by_kind(layers: list[LayerSpec]) -> dict[str, int]:
    out = {k: 0 for k in KINDS}
    for ly in layers:
        out[ly.kind] += ly.macs
    return out


__all__ = ["ELEMENT_BYTES", "ELEMENTWISE_POLICY", "KINDS", "LayerSpec", "NETWORKS", "ReferenceNet", "face_layers",
           "head_classes",
           "layer_specs", "lookup", "macs_by_kind", "network_key", "reference_layers", "total_macs"]
