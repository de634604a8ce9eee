"""Per-layer table of a network in the paper's format (input, operator, t, c, n, s) plus params and MACs.

MACs come from ptflops' `pytorch` backend, which counts conv/linear multiply-accumulates plus one op per
element of BatchNorm and activation layers; concat, split and shuffle are free. Shapes are the real ones,
traced through the network (the paper's Table 3 rounds some of them).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import nn

from .network import FaceMobileNet

MAC_SOURCE = "ptflops 0.7.5, pytorch backend (conv/linear MACs + BN/activation element ops)"


@dataclass
class Row:
    input_shape: tuple[int, ...]
    operator: str
    t: int | None
    c: int | None
    n: int
    s: int | None
    output_shape: tuple[int, ...]
    params: int
    macs: int


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    from ptflops import get_model_complexity_info

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        macs, _ = get_model_complexity_info(module, tuple(input_shape), as_strings=False,
                                            print_per_layer_stat=False, backend="pytorch")
    return int(macs or 0)


def layer_table(model: FaceMobileNet) -> list[Row]:
    model = model.eval()
    rows = model.rows()
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, (tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
             for k, (_, m, _) in enumerate(rows)]
    size = model.schedule.input_size
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size)
        # rows() lists the head's pieces separately; run them in order so every hook fires.
        for _, m, _ in rows:
            x = m(x)
    for h in hooks:
        h.remove()
    out = []
    for k, (op, m, meta) in enumerate(rows):
        ishape, oshape = shapes[k]
        out.append(Row(ishape, op, meta["t"], meta["c"], meta["n"], meta["s"], oshape,
                       sum(p.numel() for p in m.parameters()), count_macs(m, ishape)))
    return out


def totals(rows: list[Row]) -> tuple[int, int]:
    return sum(r.params for r in rows), sum(r.macs for r in rows)


def format_table(rows: list[Row], title: str = "") -> str:
    def shp(s: tuple[int, ...]) -> str:
        return "x".join(str(v) for v in (s[1:] + s[:1])) if len(s) == 3 else "x".join(map(str, s))

    def f(v: object) -> str:
        return "-" if v is None else str(v)

    head = f"{'input':>12}  {'operator':<24}{'t':>3}{'c':>6}{'n':>3}{'s':>3}  {'output':>12}{'params':>11}{'MACs':>13}"
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{shp(r.input_shape):>12}  {r.operator:<24}{f(r.t):>3}{f(r.c):>6}{r.n:>3}{f(r.s):>3}  "
                     f"{shp(r.output_shape):>12}{r.params:>11,}{r.macs:>13,}")
    p, m = totals(rows)
    lines += ["-" * len(head), f"{'total':>12}  {'':<24}{'':>3}{'':>6}{'':>3}{'':>3}  {'':>12}{p:>11,}{m:>13,}",
              f"MACs: {MAC_SOURCE}; shapes are H x W x C traced at batch 1."]
    return "\n".join(lines)
