"""Import an ONNX face model (MobileFaceNet and other MobileNet-v2-style CNNs) into the project's own network.

The graph is read node by node in order and matched to the layers a schedule can describe: a 3x3 stem conv,
blocks ("dws" depthwise-separable; "a" inverted residual with or without an expand conv, with the identity
Add exactly where stride 1 and equal widths give one), a 1x1 head conv, a global pool (average, or a global
depthwise conv "gdc"), a linear 1x1 embedding, and a Flatten/Reshape (optionally a BatchNormalization after it).
Consecutive blocks of the same kind, width, expansion and activation become one stage. BatchNormalization
nodes after a conv are folded into it; each conv's bias goes into the BN that follows it in the project's
network (weight 1, mean 0, variance 1 - eps), so the imported model keeps the conv + BN form that pruning,
training and quantization expect. The result is checked against onnxruntime on a random input.

The first node that fits none of these is named in a one-line UserError: e.g. a residual (b) network's Split,
a PReLU, a 5x5 conv. Imports are cached by the file's sha256 (`import_cached`), so any command taking a model
also takes the .onnx file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..artifacts import file_sha256, write_json
from ..errors import UserError
from ..schedules import Schedule, list_schedules, parse_schedule
from .network import FaceMobileNet

IMPORT_FORMAT = "compress.onnx-import/1"
PARITY_MIN_COSINE = 0.9999  # the random-input check against onnxruntime; real faces reach > 0.99999


@dataclass
class _Conv:
    node: str
    w: np.ndarray
    b: np.ndarray
    k: int
    s: int
    pad: int
    group: int
    act: str | None
    out: str  # tensor name after the conv (and its BN and activation)

    @property
    def cin(self) -> int:
        return self.w.shape[1] * self.group

    @property
    def cout(self) -> int:
        return self.w.shape[0]

    @property
    def depthwise(self) -> bool:
        return self.group == self.cin == self.cout and self.group > 1


class _Walker:
    """Reads the graph's non-constant nodes in order; every mismatch names the node."""

    def __init__(self, model: Any, source: str) -> None:
        from onnx import numpy_helper
        from onnx.helper import get_attribute_value

        g = model.graph
        self.source = source
        self.attr = lambda n: {a.name: get_attribute_value(a) for a in n.attribute}
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.nodes = []
        for n in g.node:
            if n.op_type == "Constant" and "value" in self.attr(n):
                self.consts[n.output[0]] = numpy_helper.to_array(self.attr(n)["value"])
            else:
                self.nodes.append(n)
        self.i = 0
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UserError(f"{source}: expected one image input, found {len(inputs)}; only single-input face "
                            "models import")
        self.input = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.size = dims[2].dim_value if len(dims) == 4 and dims[2].dim_value else 112
        self.output = g.output[0].name

    def peek(self) -> Any:
        return self.nodes[self.i] if self.i < len(self.nodes) else None

    def fail(self, node: Any, why: str) -> None:
        where = f"node '{node.name or node.output[0]}' ({node.op_type})" if node is not None else "the graph's end"
        raise UserError(f"{self.source}: {where} does not map onto the project's network: {why}")

    def takes(self, op: str | tuple[str, ...], x: str) -> Any:
        n = self.peek()
        ops = (op,) if isinstance(op, str) else op
        return n if n is not None and n.op_type in ops and n.input and n.input[0] == x else None

    def conv(self, x: str, what: str) -> _Conv:
        n = self.peek()
        if n is None or n.op_type != "Conv" or n.input[0] != x:
            self.fail(n, f"expected a Conv ({what}) reading the previous layer's output")
        a = self.attr(n)
        if len(n.input) < 2 or n.input[1] not in self.consts:
            self.fail(n, "the conv's weight is not a constant")
        w = self.consts[n.input[1]].astype(np.float32)
        b = (self.consts[n.input[2]].astype(np.float32) if len(n.input) > 2 and n.input[2]
             else np.zeros(w.shape[0], np.float32))
        ks, st = list(a.get("kernel_shape", w.shape[2:])), list(a.get("strides", [1, 1]))
        pads, dil = list(a.get("pads", [0] * 4)), list(a.get("dilations", [1, 1]))
        if (w.ndim != 4 or ks[0] != ks[1] or st[0] != st[1] or len(set(pads)) > 1 or dil != [1, 1]
                or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID")):
            self.fail(n, f"only square 2-D convs with equal strides and symmetric padding map "
                         f"(kernel {ks}, strides {st}, pads {pads}, dilations {dil})")
        self.i += 1
        out = n.output[0]
        bn = self.takes("BatchNormalization", out)
        if bn is not None:
            w, b, out = *self._fold(bn, w, b), bn.output[0]
            self.i += 1
        act = None
        nxt = self.takes(("Clip", "Relu"), out)
        if nxt is not None:
            act = self._activation(nxt)
            out = nxt.output[0]
            self.i += 1
        return _Conv(n.name or n.output[0], w, b, ks[0], st[0], pads[0], int(a.get("group", 1)), act, out)

    def _fold(self, bn: Any, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not all(i in self.consts for i in bn.input[1:5]):
            self.fail(bn, "BatchNormalization parameters are not constants")
        g, beta, mean, var = (self.consts[i].astype(np.float64) for i in bn.input[1:5])
        scale = g / np.sqrt(var + self.attr(bn).get("epsilon", 1e-5))
        w2 = (w.reshape(len(scale), -1) * scale[:, None]).reshape(w.shape).astype(np.float32)
        return w2, ((b - mean) * scale + beta).astype(np.float32)

    def _activation(self, n: Any) -> str:
        if n.op_type == "Relu":
            return "relu"
        a = self.attr(n)
        lo = self.consts.get(n.input[1]) if len(n.input) > 1 and n.input[1] else a.get("min")
        hi = self.consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else a.get("max")
        if lo is None or hi is None or float(lo) != 0.0 or float(hi) != 6.0:
            self.fail(n, f"a Clip maps only as ReLU6 (min 0, max 6), got min {lo}, max {hi}")
        return "relu6"


def _read_blocks(wk: _Walker, x: str, cin: int, h: int) -> tuple[list[dict[str, Any]], _Conv, str, int]:
    """Blocks until the head conv: ([{kind, cin, cout, s, hidden, act, convs}], head conv, tensor, size)."""
    blocks = []
    while True:
        n = wk.peek()
        c1 = wk.conv(x, "a block or the head")
        if c1.depthwise and c1.k == 3 and c1.pad == 1:
            c2 = wk.conv(c1.out, "the pointwise conv after a depthwise conv")
            if c2.k != 1 or c2.group != 1:
                wk.fail(n, "a depthwise conv must be followed by a 1x1 conv")
            kind, convs, hidden = ("dws" if c2.act else "a"), [c1, c2], cin
            acts = {c1.act, c2.act} if kind == "dws" else {c1.act}
        elif c1.k == 1 and c1.group == 1 and c1.pad == 0:
            nxt = wk.peek()
            na = wk.attr(nxt) if nxt is not None else {}
            if (nxt is None or nxt.op_type != "Conv" or na.get("group", 1) != c1.cout or c1.cout == 1
                    or list(na.get("kernel_shape", [3]))[0] != 3):
                return blocks, c1, c1.out, h  # a 1x1 conv not followed by a 3x3 depthwise: the head
            c2 = wk.conv(c1.out, "the depthwise conv of an inverted residual")
            if not (c2.depthwise and c2.k == 3 and c2.pad == 1):
                wk.fail(wk.nodes[wk.i - 1], "an inverted residual's middle conv must be a 3x3 depthwise, padding 1")
            c3 = wk.conv(c2.out, "the linear 1x1 projection of an inverted residual")
            if c3.k != 1 or c3.group != 1 or c3.act:
                wk.fail(wk.nodes[wk.i - 1], "an inverted residual ends in a 1x1 conv without activation")
            kind, convs, hidden, acts = "a", [c1, c2, c3], c1.cout, {c1.act, c2.act}
        else:
            wk.fail(n, f"a {c1.k}x{c1.k} conv (group {c1.group}, padding {c1.pad}) fits no block: expected a 1x1 "
                       "conv or a 3x3 depthwise conv with padding 1")
        if None in acts or len(acts) > 1:
            wk.fail(n, f"a block's convs need one activation (ReLU6 or ReLU), found {sorted(map(str, acts))}")
        stride = max(c.s for c in convs)
        last = convs[-1]
        out, cout = last.out, last.cout
        add = wk.takes("Add", out) or (wk.peek() if wk.peek() is not None and wk.peek().op_type == "Add"
                                       and set(wk.peek().input) == {x, out} else None)
        if add is not None and set(add.input) == {x, out}:
            if kind == "dws" or stride != 1 or cin != cout:
                wk.fail(add, "an identity Add maps only onto an inverted residual with stride 1 and equal widths")
            wk.i += 1
            out = add.output[0]
        elif kind == "a" and stride == 1 and cin == cout:
            wk.fail(wk.peek(), "an inverted residual with stride 1 and equal widths needs its identity Add here")
        blocks.append({"kind": kind, "cin": cin, "cout": cout, "s": stride, "hidden": hidden, "act": acts.pop(),
                       "convs": convs})
        x, cin, h = out, cout, (h - 1) // stride + 1


def _read_head(wk: _Walker, x: str, h: int) -> tuple[str, list[_Conv]]:
    """Global pool, linear embedding conv, Flatten/Reshape, optional BatchNormalization: (pool kind, convs)."""
    n = wk.peek()
    convs = []
    if wk.takes("GlobalAveragePool", x):
        pool, x = "avg", n.output[0]
        wk.i += 1
    elif wk.takes("Conv", x) and wk.attr(n).get("group", 1) > 1:
        g = wk.conv(x, "the global depthwise conv")
        if not (g.depthwise and g.k == h and g.pad == 0 and g.act is None):
            wk.fail(n, f"a global depthwise conv needs kernel = the feature map ({h}x{h}), no padding and no "
                       f"activation (got kernel {g.k}, padding {g.pad}, activation {g.act})")
        pool, x = "gdc", g.out
        convs.append(g)
    else:
        wk.fail(n, "expected the global pool (GlobalAveragePool or a global depthwise conv) after the head conv")
    e = wk.conv(x, "the linear 1x1 embedding")
    if e.k != 1 or e.group != 1 or e.act:
        wk.fail(wk.nodes[wk.i - 1], "the embedding must be a 1x1 conv without activation")
    convs.append(e)
    n = wk.takes(("Flatten", "Reshape"), e.out)
    if n is None:
        wk.fail(wk.peek(), "expected a Flatten or Reshape after the embedding conv")
    wk.i += 1
    out = n.output[0]
    bn = wk.takes("BatchNormalization", out)
    if bn is not None:
        e.w, e.b = wk._fold(bn, e.w, e.b)
        out = bn.output[0]
        wk.i += 1
    if wk.peek() is not None:
        wk.fail(wk.peek(), "the graph goes on after the embedding; only a plain embedding output maps")
    if out != wk.output:
        wk.fail(n, "the embedding is not the graph's output")
    return pool, convs


def _stages(blocks: list[dict[str, Any]], act: str) -> list[dict[str, Any]]:
    """Consecutive blocks of one kind, width, expansion and activation, later ones stride 1: one stage each."""
    stages: list[dict[str, Any]] = []
    for b in blocks:
        t = 1 if b["kind"] == "dws" or b["hidden"] == b["cin"] and len(b["convs"]) == 2 else max(2, round(b["hidden"] / b["cin"]))
        cur = stages[-1] if stages else None
        if (cur is None or b["s"] != 1 or cur["residual"] != b["kind"] or cur["c"] != b["cout"] or cur["t"] != t
                or cur["_act"] != b["act"]):
            cur = {"t": t, "c": b["cout"], "n": 0, "s": b["s"], "residual": b["kind"], "_act": b["act"], "_h": []}
            stages.append(cur)
        cur["n"] += 1
        cur["_h"].append((b["hidden"], b["cin"]))
    out = []
    for st in stages:
        d = {k: v for k, v in st.items() if not k.startswith("_")}
        if st["_act"] != act:
            d["activation"] = st["_act"]
        if st["t"] != 1 and any(h != st["t"] * cin for h, cin in st["_h"]):
            d["hidden"] = [h for h, _ in st["_h"]]
        out.append(d)
    return out


def read_onnx(path: str | Path) -> tuple[Schedule, list[_Conv]]:
    """The schedule an ONNX face model maps onto and its convs in forward order (UserError naming the first
    node that does not fit)."""
    from .onnx_torch import load_onnx_file

    p = Path(path)
    wk = _Walker(load_onnx_file(p), p.name)
    stem = wk.conv(wk.input, "the 3x3 stem")
    if stem.k != 3 or stem.group != 1 or stem.cin != 3 or stem.act is None or stem.pad != 1:
        wk.fail(model.graph.node[0], "the first layer must be a 3x3 conv on the 3-channel image with padding 1 "
                                     "and an activation")
    h = (wk.size - 1) // stem.s + 1
    blocks, head, x, h = _read_blocks(wk, stem.out, stem.cout, h)
    if not blocks:
        wk.fail(wk.peek(), "no residual block between the stem and the head")
    if head.act != stem.act:
        wk.fail(wk.nodes[wk.i - 1], f"the head conv's activation {head.act} differs from the stem's {stem.act}")
    pool, tail = _read_head(wk, x, h)
    raw = {"name": p.stem, "description": f"imported from {p.name}", "input_size": wk.size,
           "embedding_size": tail[-1].cout, "activation": stem.act, "stem": {"c": stem.cout, "s": stem.s},
           "stages": _stages(blocks, stem.act), "head": {"c": head.cout, "pool": pool}}
    sched = parse_schedule(raw, p.name)
    sched = _builtin_twin(sched)
    return sched, [stem] + [c for b in blocks for c in b["convs"]] + [head] + tail


def _builtin_twin(s: Schedule) -> Schedule:
    """The built-in schedule with exactly this structure (e.g. mobilefacenet), else `s` itself."""
    from dataclasses import replace

    def key(x: Schedule) -> dict:
        d = x.to_dict()
        return {k: v for k, v in d.items() if k not in ("name", "description", "path", "prune_from")}

    for b in list_schedules():
        if key(b) == key(s):
            return replace(s, name=b.name, description=b.description)
    return s


@torch.no_grad()
def import_onnx(path: str | Path) -> FaceMobileNet:
    """The ONNX face model as a FaceMobileNet (eval), weights copied exactly; checked against onnxruntime."""
    sched, convs = read_onnx(path)
    model = FaceMobileNet(sched).eval()
    mods = list(model.modules())
    ours = [m for m in mods if isinstance(m, nn.Conv2d)]
    bns = [m for m in mods if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(ours) == len(convs) == len(bns), (len(ours), len(convs), len(bns))  # the schedule was read from them
    for c, conv, bn in zip(convs, ours, bns):
        if tuple(conv.weight.shape) != c.w.shape:
            raise UserError(f"{Path(path).name}: node '{c.node}' weight {c.w.shape} does not fit the layer "
                            f"{tuple(conv.weight.shape)} of schedule '{sched.name}'")
        conv.weight.copy_(torch.from_numpy(c.w))
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(c.b))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (var + eps) == 1: the BN adds the conv's bias and nothing else
    cos = parity_cosine(model, path)
    if cos < PARITY_MIN_COSINE:
        raise UserError(f"{Path(path).name}: maps onto schedule '{sched.name}' layer by layer but its output "
                        f"differs from onnxruntime's (cosine {cos:.6f} on a random input); the graph computes "
                        "something the schedule does not describe")
    return model


@torch.no_grad()
def parity_cosine(model: FaceMobileNet, path: str | Path, x: np.ndarray | None = None) -> float:
    """Lowest cosine between the model's and onnxruntime's embeddings of `x` ([N,3,H,W] float32; default one
    seeded random image), one image at a time (the file's batch may be fixed at 1)."""
    import onnxruntime as ort

    size = model.schedule.input_size
    if x is None:
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    got = model.eval()(torch.from_numpy(x)).numpy()
    num = (ref * got).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12
    return float((num / den).min())


def import_cache_dir() -> Path:
    """Where on-the-fly imports live, one folder per ONNX sha256 ($COMPRESS_ONNX_IMPORT_CACHE overrides)."""
    env = os.environ.get("COMPRESS_ONNX_IMPORT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "facecompress" / "onnx-import"


def write_import(path: str | Path, out: Path, sha: str | None = None) -> dict[str, Any]:
    """Import `path` and write model.pt + manifest.json (source file, its sha256, schedule, params, MACs) into
    the folder `out` (which the caller owns: a staging folder)."""
    from .complexity import count_macs
    from .checkpoint import save_model

    p = Path(path)
    model = import_onnx(p)
    sha = sha or file_sha256(p)
    save_model(model, out / "model.pt", extra={"source_onnx": {"file": p.name, "sha256": sha}})
    size = model.schedule.input_size
    manifest = {
        "kind": "import", "format": IMPORT_FORMAT, "source_onnx": {"path": str(p.resolve()), "sha256": sha},
        "schedule": model.schedule.to_dict(), "params": sum(q.numel() for q in model.parameters()),
        "macs": count_macs(model, (3, size, size)),
        "parity": {"cosine_min_vs_onnxruntime": parity_cosine(model, p), "input": "1 seeded random image"},
        "note": "BatchNorms of the ONNX are folded into its convs; each conv's bias sits in the BN after it "
                "(weight 1, mean 0, variance 1 - eps)",
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def import_cached(path: str | Path) -> Path:
    """The model.pt of an ONNX file's import, made once per file content (sha256) in import_cache_dir()."""
    from ..artifacts import artifact_dir

    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX model {p} not found")
    sha = file_sha256(p)
    dest = import_cache_dir() / sha[:16]
    if not (dest / "model.pt").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with artifact_dir(dest, "import", overwrite=dest.exists()) as stage:
            write_import(p, stage, sha)
    return dest / "model.pt"
