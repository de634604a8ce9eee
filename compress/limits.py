"""The allowed range of every number a user can type, written once.

A `Range` is attached to a config field (`num(default, Range(...))`: recipes and the library check it) and
turned into a click type (`option_type`) for the CLI option of the same setting, so a value is refused the same
way wherever it comes from: before any work, in one line naming the allowed range and why an upper cap exists.
Every float must be finite: inf or nan as a learning rate trains for hours and ends in "loss became nan".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

import click

from .errors import UserError

CPUS = os.cpu_count() or 1
# Caps, each with its reason. A face crop is 112x112x3 uint8 = 37,632 bytes in memory.
MAX_THREADS = 4 * CPUS  # more threads than that only oversubscribe the cores
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_FACES_IN_MEMORY = 50_000  # 1.9 GB of decoded 112x112 crops
MAX_SECONDS = 3600.0  # one timing of one model; medians settle within seconds


@dataclass(frozen=True)
class Range:
    """lo <= v (lo < v when lo_open) and v <= hi; integers only when integer; floats always finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    integer: bool = False
    why: str = ""  # why the upper cap exists, said in the message

    def bound(self) -> str:
        parts = [f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}"] if self.lo is not None else []
        if self.hi is not None:
            parts.append(f"<= {_fmt(self.hi)}")
        return " and ".join(parts)

    def describe(self) -> str:
        return f"{'an integer' if self.integer else 'a number'} {self.bound()}".strip()

    def ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def check(self, v: Any, name: str) -> Any:
        """v, or a UserError `NAME must be an integer >= 1 and <= 100 (why), got V`."""
        if not self.ok(v):
            why = f" ({self.why})" if self.why else ""
            raise UserError(f"{name} must be {self.describe()}{why}, got {v!r}")
        return v


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def num(default: Any, rng: Range) -> Any:
    """A dataclass field whose value must lie in `rng` (recipes, configs and the CLI check it)."""
    return field(default=default, metadata={"range": rng})


def field_range(cls: type, name: str) -> Range:
    """The Range of config field `name` of dataclass `cls`."""
    return next(f.metadata["range"] for f in fields(cls) if f.name == name)


def check_fields(cfg: Any, names: dict[str, str] | None = None) -> None:
    """Every field of dataclass instance `cfg` that has a Range, checked (None means 'not set'); `names` gives
    a field the name users know it by (s -> "scale s")."""
    for f in fields(cfg):
        rng = f.metadata.get("range")
        v = getattr(cfg, f.name)
        if rng is not None and v is not None:
            rng.check(v, (names or {}).get(f.name, f.name))


class Bounded(click.ParamType):
    """A click option type that parses a number and checks it against a Range; a bad value is a UserError, so
    the CLI prints one line and exits 2 before any work."""

    def __init__(self, rng: Range) -> None:
        self.rng = rng
        self.name = "integer" if rng.integer else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        opt = max(param.opts, key=len) if param is not None and param.opts else "value"
        v = value
        if isinstance(value, str):
            try:
                v = float(value.strip())
            except ValueError:
                raise UserError(f"{opt} must be {self.rng.describe()}, got {value!r}") from None
            if self.rng.integer and math.isfinite(v) and v == int(v):
                v = int(v)  # 1e9 typed for an integer option is 1000000000, checked against the cap below
            elif not self.rng.integer:
                v = float(v)
        return self.rng.check(v, opt)


def option_type(cls_or_range: type | Range, name: str | None = None) -> Bounded:
    """The click type of a config field (option_type(TrainConfig, "lr")) or of a Range."""
    return Bounded(cls_or_range if isinstance(cls_or_range, Range) else field_range(cls_or_range, name or ""))


# Ranges shared by several settings.
THREADS = Range(0, MAX_THREADS, integer=True, why=f"0 = the runtime's default; at most 4 x the {CPUS} CPUs here")
SEED = Range(0, MAX_SEED, integer=True, why="numpy's seed range")
LR = Range(0, 1, lo_open=True, why="a larger step diverges")
SECONDS = Range(0, MAX_SECONDS, lo_open=True, why="one hour per measurement at most")
FACES = Range(1, MAX_FACES_IN_MEMORY, integer=True,
              why=f"{MAX_FACES_IN_MEMORY} decoded 112x112 faces take 1.9 GB of memory")
