"""An ONNX face model as a PyTorch module: a small node-by-node interpreter over torch functional ops.

Built for the MobileFaceNet teacher (Conv, Clip, Relu, Add, Reshape), so that online teacher views during
distillation run batched in torch (and on a GPU) instead of one image at a time in onnxruntime. It covers the
ops plain CNN face models use; anything else is a UserError naming the op, and the caller falls back to
onnxruntime. A fixed batch dimension in the file (the teacher's input is [1,3,112,112]) is ignored: a Reshape
whose constant shape starts with that batch size keeps the input's leading dimension instead, so the module
takes any batch size. Weights and constants are buffers, so `.to(device)` moves them; the module has no
trainable parameters and is meant for `torch.no_grad()` inference.

On the CPU onnxruntime stays faster, even one image at a time (the module reached ~0.7x its images/s at batch
16-64 with 1 thread; `benchmarks/teacher_speed.py`), so callers pick this module for accelerators
(`load_embedder(..., onnx_runtime="auto")`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

_CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def _conv(m: "OnnxModule", x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, a: dict) -> torch.Tensor:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UserError(f"ONNX Conv with auto_pad={a['auto_pad']} is not supported by the torch conversion; "
                        "use the ONNX runtime for this teacher")
    n = x.dim() - 2
    pads = list(a.get("pads", [0] * 2 * n))
    begin, end = pads[:n], pads[n:]
    if begin != end:  # asymmetric padding: pad explicitly (F.pad lists the last dimension first)
        x = F.pad(x, [p for i in reversed(range(n)) for p in (begin[i], end[i])])
        begin = [0] * n
    return _CONV[x.dim()](x, w, b, stride=a.get("strides", 1), padding=begin, dilation=a.get("dilations", 1),
                          groups=a.get("group", 1))


def _clip(m: "OnnxModule", x: torch.Tensor, lo: np.ndarray | None = None, hi: np.ndarray | None = None, *,
          a: dict) -> torch.Tensor:
    lo = float(lo) if lo is not None else a.get("min")
    hi = float(hi) if hi is not None else a.get("max")
    return x.clamp_(lo, hi) if a["_inplace"] else x.clamp(lo, hi)


def _batchnorm(m: "OnnxModule", x, scale, bias, mean, var, *, a: dict) -> torch.Tensor:
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _gemm(m: "OnnxModule", x, w, c=None, *, a: dict) -> torch.Tensor:
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


def _reshape(m: "OnnxModule", x: torch.Tensor, shape: np.ndarray, *, a: dict) -> torch.Tensor:
    shape = [int(s) for s in shape.reshape(-1)]
    if m.fixed_batch is not None and shape and shape[0] == m.fixed_batch:
        shape[0] = x.shape[0]  # the file's fixed batch: keep the actual one
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(m: "OnnxModule", x: torch.Tensor, *, a: dict) -> torch.Tensor:
    axis = a.get("axis", 1) % max(x.dim(), 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _transpose(m: "OnnxModule", x: torch.Tensor, *, a: dict) -> torch.Tensor:
    return x.permute(a.get("perm", list(reversed(range(x.dim())))))


def _pool(kind: str) -> Callable:
    def pool(m: "OnnxModule", x: torch.Tensor, *, a: dict) -> torch.Tensor:
        n = x.dim() - 2
        pads = list(a.get("pads", [0] * 2 * n))
        if (pads[:n] != pads[n:] or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID")
                or a.get("dilations", 1) not in (1, [1] * n)):
            raise UserError(f"ONNX {kind} with asymmetric/auto padding or dilation is not supported by the torch "
                            "conversion; use the ONNX runtime for this teacher")
        args = dict(kernel_size=a["kernel_shape"], stride=a.get("strides", 1), padding=pads[:n],
                    ceil_mode=bool(a.get("ceil_mode", 0)))
        if kind == "MaxPool":
            return getattr(F, f"max_pool{n}d")(x, **args)
        return getattr(F, f"avg_pool{n}d")(x, **args, count_include_pad=bool(a.get("count_include_pad", 0)))
    return pool


def _binary(fn: Callable) -> Callable:
    return lambda m, x, y, *, a: fn(x, y)


def _add(m: "OnnxModule", x: torch.Tensor, y: torch.Tensor, *, a: dict) -> torch.Tensor:
    return x.add_(y) if a["_inplace"] and x.shape == torch.broadcast_shapes(x.shape, y.shape) else x + y


def _unary(fn: Callable) -> Callable:
    return lambda m, x, *, a: fn(x)


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Clip": _clip,
    "Relu": lambda m, x, *, a: F.relu(x, inplace=a["_inplace"]),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Identity": _unary(lambda x: x),
    "Dropout": lambda m, x, *rest, a: x,
    "PRelu": lambda m, x, slope, *, a: torch.where(x >= 0, x, x * slope),
    "LeakyRelu": lambda m, x, *, a: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Add": _add,
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(torch.div),
    "MatMul": _binary(torch.matmul),
    "Gemm": _gemm,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "GlobalAveragePool": lambda m, x, *, a: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
}
HOST_INPUTS = {"Reshape": (1,), "Clip": (1, 2)}  # inputs that must be constants, passed as numpy arrays
INPLACE = {"Clip", "Relu", "Add"}  # write into the first input when nothing else reads it (saves allocations)


def _buffer_name(i: int) -> str:
    return f"c{i}"


class OnnxModule(nn.Module):
    """Runs an ONNX graph's nodes in order; `forward(x [N,C,H,W] float32) -> first graph output`."""

    def __init__(self, graph: Any, source: str, channels_last: bool = True) -> None:
        super().__init__()
        self.source = source
        self.channels_last = channels_last  # faster convolutions on CPU (oneDNN), the same results
        # on the CPU, big batches run in chunks: activations of 64 faces outgrow the caches and the allocator's
        # reuse (fresh pages each step), 16 at a time was ~1.6x faster per image on a 2-core EPYC host
        self.cpu_chunk = 16
        self._names: dict[str, str] = {}  # ONNX tensor name -> buffer attribute
        self._host: dict[str, np.ndarray] = {}  # small constants (shapes, clip bounds), kept on the host
        from onnx import numpy_helper
        from onnx.helper import get_attribute_value

        def add_const(name: str, arr: np.ndarray) -> None:
            if arr.size <= 16:
                self._host[name] = np.array(arr, copy=True)
            attr = _buffer_name(len(self._names))
            t = torch.from_numpy(np.array(arr, copy=True))
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            self.register_buffer(attr, t, persistent=True)
            self._names[name] = attr

        for init in graph.initializer:
            add_const(init.name, numpy_helper.to_array(init))
        consts = set(self._names)
        inputs = [i.name for i in graph.input if i.name not in consts]
        if len(inputs) != 1:
            raise UserError(f"{source}: expected one image input, found {len(inputs)}; "
                            "use the ONNX runtime for this teacher")
        self.input_name = inputs[0]
        dims = next(i for i in graph.input if i.name == self.input_name).type.tensor_type.shape.dim
        fixed = bool(dims) and dims[0].HasField("dim_value") and dims[0].dim_value > 0
        self.fixed_batch = dims[0].dim_value if fixed else None
        self.input_size = dims[2].dim_value if len(dims) == 4 and dims[2].HasField("dim_value") else 112
        self.output_name = graph.output[0].name
        self.nodes: list[tuple[str, list[str], list[str], dict]] = []
        readers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                readers[name] = readers.get(name, 0) + 1
        for node in graph.node:
            op = node.op_type
            attrs = {a.name: get_attribute_value(a) for a in node.attribute}
            if node.domain not in ("", "ai.onnx"):
                raise UserError(f"{source}: ONNX op {node.domain}.{op} is not supported by the torch conversion; "
                                "use the ONNX runtime for this teacher")
            if op == "Constant":
                if "value" not in attrs:
                    raise UserError(f"{source}: ONNX Constant without a tensor value is not supported by the torch "
                                    "conversion; use the ONNX runtime for this teacher")
                add_const(node.output[0], numpy_helper.to_array(attrs["value"]))
                continue
            if op not in OPS:
                raise UserError(f"{source}: ONNX op {op} is not supported by the torch conversion; "
                                "use the ONNX runtime for this teacher")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            for i in HOST_INPUTS.get(op, ()):
                if i < len(node.input) and node.input[i] and node.input[i] not in self._host:
                    raise UserError(f"{source}: ONNX {op} with a computed (non-constant) input {i} is not supported "
                                    "by the torch conversion; use the ONNX runtime for this teacher")
            ins = list(node.input)

            def writable(name: str) -> bool:  # an intermediate result that only this node reads
                return (readers.get(name) == 1 and name not in self._names
                        and name not in (self.input_name, self.output_name))
            if op == "Add" and not writable(ins[0]) and writable(ins[1]):
                ins.reverse()  # commutative: write into the operand nothing else reads
            attrs["_inplace"] = op in INPLACE and writable(ins[0])
            self.nodes.append((op, ins, list(node.output), attrs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and len(x) > self.cpu_chunk:
            return torch.cat([self._run(c) for c in x.split(self.cpu_chunk)])
        return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, ins, outs, attrs in self.nodes:
            args = []
            for j, name in enumerate(ins):
                if not name:
                    args.append(None)  # an omitted optional input
                elif j in HOST_INPUTS.get(op, ()):
                    args.append(self._host[name])
                else:
                    args.append(env[name] if name in env else getattr(self, self._names[name]))
            env[outs[0]] = OPS[op](self, *args, a=attrs)
        return env[self.output_name]


def onnx_to_torch(path: str | Path, channels_last: bool = True) -> nn.Module:
    """An ONNX file (external weights beside it are read too) -> an equivalent torch module in eval mode.

    UserError when the file cannot be read or uses an op (or form of one) this interpreter does not cover.
    """
    p = Path(path)
    return OnnxModule(load_onnx_file(p).graph, p.name, channels_last).eval()


def load_onnx_file(path: str | Path) -> Any:
    """The ONNX ModelProto of a file (external weights beside it are read too); UserError when it cannot be read."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX model {p} not found")
    try:
        return onnx.load(str(p))
    except Exception as e:  # onnx raises protobuf, OSError and its own errors
        raise UserError(f"cannot read ONNX model {p}: {str(e).splitlines()[0][:160]}") from None
