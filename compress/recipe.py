"""A recipe (profiles/*.toml, or any .toml file): loading, `base` inheritance, paths, one typed config per section.

The whole recipe, [train] typed as TrainConfig, is compress.full_recipe.load_recipe (above train.config, which
reads recipes through this module). A recipe holds `base = "other"` (optional: inherit that recipe's sections, then override them key by key) and
sections: [train] (compress.train.config.TrainConfig) and the pipeline's [evaluate], [prune], [quantize],
[export], [bench], [reference], [pipeline] (the dataclasses below). Each setting's default is written once, in
its dataclass; the library functions, the pipeline and the CLI take it from there. A key that no dataclass
has is an error naming the nearest valid one: a typo fails at load time, not after an hour of training.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .data.prefixes import PREFIXES
from .errors import UserError
from .limits import FACES, LR, SECONDS, THREADS, Range, num
from .schedules import profiles_dir

# Pair verification deals identities to identity-disjoint folds: 2 folds of 2 identities at the least.
MIN_EVAL_IDENTITIES = 4
# Held-out synthetic identities are generated 10 images each, in memory.
MAX_EVAL_IDENTITIES = 5000
_EVAL_WHY = f"{MAX_EVAL_IDENTITIES} identities are {10 * MAX_EVAL_IDENTITIES} images, 1.9 GB in memory"
MAX_PRUNE_STEPS = 100
MAX_OPTIMIZER_STEPS = 1_000_000
MAX_ROUND_TO = 256


@dataclass(frozen=True)
class EvaluateConfig:
    """[evaluate]: the one evaluation set and protocol every pipeline stage is measured with."""
    # held-out synthetic identities (when there is no lfw)
    identities: int = num(100, Range(MIN_EVAL_IDENTITIES, MAX_EVAL_IDENTITIES, integer=True, why=_EVAL_WHY))
    flip: bool = True  # horizontal-flip feature fusion
    lfw: str | None = None  # LFW folder: its 10-fold protocol instead of synthetic pairs
    bins: tuple[str, ...] = ()  # extra insightface verification .bin files, each an extra accuracy row

    def check(self, where: str) -> None:
        if not all(b.endswith(".bin") for b in self.bins):
            raise UserError(f"{where}: [evaluate] bins must be a list of .bin paths, e.g. [\"data/lfw.bin\"], "
                            f"got {list(self.bins)!r}")


@dataclass(frozen=True)
class PruneConfig:
    """[prune] (compress.prune.folders.prune_artifact): structured pruning with short fine-tuning."""
    schedule: str | None = None  # target channel schedule (or ratio)
    ratio: float | None = num(None, Range(0, 1, lo_open=True))  # keep this fraction of every layer's channels
    criterion: str = "l1"  # channel importance: l1, l2, bn, taylor
    # prune in this many steps (widths interpolated)
    steps: int = num(1, Range(1, MAX_PRUNE_STEPS, integer=True, why="more steps change widths by under a channel"))
    depth: str = "first"  # which blocks a shortened stage keeps: first, importance
    # optimizer steps of fine-tuning after every pruning step
    finetune_steps: int = num(0, Range(0, MAX_OPTIMIZER_STEPS, integer=True))
    finetune_lr: float = num(1e-3, LR)
    # round widths up to a multiple
    round_to: int | None = num(None, Range(1, MAX_ROUND_TO, integer=True, why="a channel multiple such as 8"))
    data: str | None = None  # faces for Taylor and fine-tuning
    align: bool = False  # data holds raw photos: MTCNN-align them


@dataclass(frozen=True)
class QuantizeConfig:
    """[quantize] (compress.quantize.quantize_artifact): NNCF int8, PTQ or QAT."""
    mode: str = "ptq"  # ptq: calibration only; qat: calibration, then fine-tuning with the training loss
    calibration: str | None = None  # calibration faces (None: synthetic)
    images: int = num(256, FACES)  # calibration images
    # Layers left in float (mixed precision). First and last by default: they have the least redundancy (3 input
    # channels; the 128-d embedding itself), where int8 costs face embeddings most, and few of the MACs.
    keep_float: tuple[str, ...] = ("stem", "embedding")
    qat_steps: int = num(300, Range(1, MAX_OPTIMIZER_STEPS, integer=True))
    qat_lr: float = num(5e-5, LR)
    train_data: str | None = None  # QAT training faces (None: synthetic)
    align: bool = False  # the data folders hold raw photos: MTCNN-align them
    overflow_fix: str = "disable"  # NNCF's 7-bit weights for CPUs without VNNI (costs accuracy)
    activations: str = "asymmetric"  # per-tensor activation quantizers: asymmetric (uint8 + zero point) or symmetric
    threads: int = num(0, THREADS)  # torch CPU threads (0 = default)


@dataclass(frozen=True)
class ExportConfig:
    """[export] (compress.export.folders.export_artifact): which targets, and the parity check."""
    targets: str | tuple[str, ...] = "all"  # "all" (each at its default precision) or ["name", "name:precision"]
    parity_images: int = num(256, FACES)
    parity_data: str | None = None  # parity faces (None: LFW unpaired when evaluating on LFW, else synthetic)
    threads: int = num(0, THREADS)  # runtime CPU threads for the checks (0 = runtime default)


@dataclass(frozen=True)
class BenchConfig:
    """[bench]: latency of every export on the host running the pipeline."""
    seconds: float = num(2.0, SECONDS)  # minimum timed seconds per export
    threads: int = num(0, THREADS)  # runtime CPU threads (0 = runtime default)


@dataclass(frozen=True)
class ReferenceConfig:
    """[reference]: an ONNX face model measured in the same runtimes and run (skipped when absent)."""
    model: str | None = None


@dataclass(frozen=True)
class PipelineConfig:
    """[pipeline]: model = a finished model (zoo:NAME or a path) loaded instead of training one."""
    model: str | None = None


# Every pipeline section and its config; [train] is compress.train.config.TrainConfig.
SECTIONS: dict[str, type] = {"evaluate": EvaluateConfig, "prune": PruneConfig, "quantize": QuantizeConfig,
                             "export": ExportConfig, "bench": BenchConfig, "reference": ReferenceConfig,
                             "pipeline": PipelineConfig}
RECIPE_SECTIONS = {"train", *SECTIONS}


# ---------------------------------------------------------------- paths
def resolve_path(value: str) -> Path:
    """A path from a recipe: absolute, relative to the working directory, or else to the repository root
    (so `../shared/...` in a recipe works from anywhere inside a checkout)."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (profiles_dir().parent / p).resolve()


def resolve_sources(value: str) -> list[str]:
    """A recipe's comma-separated `data` or `unlabelled` sources with their paths resolved as resolve_path does;
    a source's prefix (`lfw-unpaired:`, `aligned:`) is kept."""
    out = []
    for spec in (u.strip() for u in value.split(",") if u.strip()):
        prefix = next((p for p in PREFIXES if spec.startswith(p)), "")
        out.append(prefix + str(resolve_path(spec[len(prefix):])))
    return out


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: a .toml path, or a name in profiles/."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    q = profiles_dir() / f"{name_or_path}.toml"
    if q.is_file():
        return q
    raise UserError(f"recipe '{name_or_path}' not found; pass a .toml file or a name from {profiles_dir()}")


def _base_path(value: str, recipe: Path) -> Path:
    """A recipe's `base`: a relative path is relative to the recipe's own folder (not the working directory, so
    a recipe works from anywhere); a bare name is a recipe in profiles/."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return resolve_recipe(p)
    near = recipe.parent / p
    if near.is_file():
        return near
    q = profiles_dir() / f"{value}.toml"
    if q.is_file():
        return q
    raise UserError(f"{recipe}: base '{value}' is neither a file beside the recipe ({near}) nor a recipe name in "
                    f"{profiles_dir()}; fix the path")


# ---------------------------------------------------------------- loading
def read_recipe_toml(p: Path) -> dict[str, Any]:
    """A recipe file's TOML, as read (read_sections checks its layout)."""
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not valid TOML ({str(e).splitlines()[0][:160]}); fix the syntax") from None
    except OSError as e:
        raise UserError(f"recipe {p} cannot be read ({e.strerror or type(e).__name__}); check the path") from None


def _nearest(name: str, valid: typing.Iterable[str]) -> str:
    return difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.0)[0]


def unknown_key(where: str | Path, section: str, key: str, valid: typing.Iterable[str]) -> UserError:
    """The one-line error for a key a section does not have, naming the nearest valid one."""
    return UserError(f"{where}: unknown [{section}] key '{key}'; did you mean '{_nearest(key, valid)}'? "
                     "(fix or remove it)")


def check_recipe_layout(raw: dict[str, Any], p: Path) -> None:
    """Reject what a recipe may not hold: unknown sections, keys outside any section, a non-string base."""
    unknown = sorted(k for k, v in raw.items() if isinstance(v, dict) and k not in RECIPE_SECTIONS)
    if unknown:
        raise UserError(f"{p}: unknown recipe section [{unknown[0]}]; did you mean "
                        f"[{_nearest(unknown[0], RECIPE_SECTIONS)}]? (known: {', '.join(sorted(RECIPE_SECTIONS))})")
    loose = sorted(k for k, v in raw.items() if not isinstance(v, dict) and k != "base")
    if loose:
        raise UserError(f"{p}: key(s) {loose} outside any section; put them under a section such as [train] "
                        f"(only `base` may stand at the top)")
    if "base" in raw and not isinstance(raw["base"], str):
        raise UserError(f"{p}: base must be a recipe name or .toml path (a string), got {raw['base']!r}")


def read_sections(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, dict[str, Any]]:
    """A recipe's sections as TOML tables, its `base` chain merged in (a section's keys override its base's).
    The chain must end in a recipe with a [train] table and may not loop (a recipe naming itself included)."""
    raw = read_recipe_toml(path)
    check_recipe_layout(raw, path)
    sections = {k: v for k, v in raw.items() if isinstance(v, dict)}
    if "base" not in raw:
        if "train" not in sections:
            raise UserError(f"{path}: no [train] table; a recipe needs one (or a `base` recipe that has one)")
        return sections
    base = _base_path(raw["base"], path)
    if base.resolve() == path.resolve():
        raise UserError(f"{path}: a recipe cannot be its own base; name another recipe or remove `base`")
    chain = _chain + (path.resolve(),)
    if base.resolve() in chain:
        raise UserError(f"{path}: base recipes form a cycle ({' -> '.join(q.name for q in chain)} -> "
                        f"{raw['base']}); break it")
    merged = read_sections(base, chain)
    for k, v in sections.items():
        merged[k] = {**merged.get(k, {}), **v}
    return merged


# ---------------------------------------------------------------- typed sections
def _accepts(tp: Any, v: Any) -> bool:
    """Whether TOML value v fits annotation tp (int, float, bool, str, tuple[str, ...] and unions of them)."""
    if len(_union(tp)) > 1:
        return any(_accepts(a, v) for a in _union(tp))
    if tp is type(None):
        return v is None
    if typing.get_origin(tp) is tuple:  # a TOML array of strings
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, tp)


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(tp: Any) -> str:
    return " or ".join(_KIND.get(a, "a list of strings") for a in _union(tp) if a is not type(None))


def _union(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if typing.get_origin(tp) in (types.UnionType, typing.Union) else (tp,)


def _value(tp: Any, v: Any, where: str, rng: Range | None) -> Any:
    """v checked against its field's type and range, as the field holds it (arrays as tuples, ints as floats)."""
    if rng is not None:
        if not _accepts(tp, v):
            raise UserError(f"{where} must be {rng.describe()}, got {v!r}")
        rng.check(v, where)
    elif not _accepts(tp, v):
        raise UserError(f"{where} must be {_describe(tp)}, got {v!r}")
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, int) and not isinstance(v, bool) and float in _union(tp) and int not in _union(tp):
        return float(v)
    return v


def section_config(name: str, values: dict[str, Any], where: str | Path = "recipe") -> Any:
    """A pipeline section's table as its typed config: every key known, every value of its field's type."""
    cls = SECTIONS[name]
    known = {f.name: f for f in fields(cls)}
    for key in sorted(values):
        if key not in known:
            raise unknown_key(where, name, key, known)
    hints = typing.get_type_hints(cls)
    typed = {k: _value(hints[k], v, f"{where}: [{name}] {k}", known[k].metadata.get("range"))
             for k, v in values.items()}
    cfg = cls(**typed)
    if hasattr(cfg, "check"):
        cfg.check(str(where))
    return cfg


def __getattr__(name: str) -> Any:
    """`compress.recipe.load_recipe` / `Recipe` moved to compress.full_recipe (above train.config, so that the two
    modules no longer import each other); the old names still resolve, on first use, for existing callers."""
    if name in ("load_recipe", "Recipe"):
        import importlib

        return getattr(importlib.import_module("compress.full_recipe"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
