"""Channel schedules: the paper's Tables 2 and 3, and any user file of the same format, as data.

A schedule is a TOML file (see profiles/table3.toml): a stem, a list of stages (t, c, n, s, residual kind,
optional `source` stage for pruning) and a head. Fields for other MobileNet-v2-style networks (MobileFaceNet,
profiles/mobilefacenet.toml): `activation` (top level, or per stage) "relu6" | "relu"; residual "dws" (a
depthwise-separable block: 3x3 depthwise + BN + act, 1x1 pointwise + BN + act, no shortcut); `[head] pool =
"gdc"` (a global depthwise conv over the whole last feature map + BN, MobileFaceNet's head, instead of the
average pool); `kept` (per stage, 1-based source blocks a pruned stage keeps, written by budget pruning).
Every new field has a default that builds exactly the network the field-less file built. Validation names the file and the exact field, because a
schedule is hand-written and the network builder must never see a malformed one.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import repo_folder
from .errors import UserError

RESIDUAL_KINDS = ("a", "b", "dws")
ACTIVATIONS = ("relu6", "relu")
HEAD_POOLS = ("avg", "gdc")
DEFAULT_ACTIVATION, DEFAULT_POOL = "relu6", "avg"
_TOP_KEYS = {"name", "description", "input_size", "embedding_size", "prune_from", "stem", "stages", "head",
             "activation"}
_STAGE_KEYS = {"t", "c", "n", "s", "residual", "source", "hidden", "activation", "kept"}
# Caps on a schedule's numbers: the paper's networks have at most 1280 channels, 6x expansion, 4 repeats and
# about 1M parameters; a stored or hand-written schedule far beyond that (c = 400000, n = 1e8) would allocate
# until the machine runs out of memory. MAX_PARAMS (200 MB of float32 weights) is checked on the whole network.
MAX_CHANNELS = 8192
MAX_REPEATS = 64
MAX_EXPANSION = 32
MAX_INPUT_SIZE = 1024
MAX_PARAMS = 50_000_000


def profiles_dir() -> Path:
    """Where built-in schedules and recipes live (override with COMPRESS_PROFILES)."""
    return repo_folder("COMPRESS_PROFILES", "profiles")


@dataclass(frozen=True)
class Stage:
    t: int
    c: int
    n: int
    s: int
    residual: str = "a"
    source: int | None = None
    # Optional explicit hidden (expand) width of each of the n blocks, overriding t x (branch input width).
    # Written by pruning when a uniform/iterative width is not an integer multiple of the input width.
    hidden: tuple[int, ...] | None = None
    activation: str | None = None  # None: the schedule's activation
    kept: tuple[int, ...] | None = None  # 1-based source blocks kept (pruned stages); None: the first n

    def hidden_of(self, block: int) -> int | None:
        """The explicit hidden width of block `block` (0-based), or None for t x (branch input width)."""
        return None if self.hidden is None else self.hidden[block]


@dataclass(frozen=True)
class Schedule:
    name: str
    stem_c: int
    stem_s: int
    stages: tuple[Stage, ...]
    head_c: int
    embedding_size: int = 128
    input_size: int = 112
    description: str = ""
    prune_from: str | None = None
    path: str = field(default="", compare=False)
    activation: str = DEFAULT_ACTIVATION
    head_pool: str = DEFAULT_POOL

    def act_of(self, stage: Stage) -> str:
        return stage.activation or self.activation

    def to_dict(self) -> dict[str, Any]:
        """Plain data, stored inside model artifacts so a model rebuilds without the profiles folder.

        Fields at their defaults that older files lack are left out, so a Table 2/3 artifact's dict is unchanged."""
        d = asdict(self)
        d["stages"] = [{k: v for k, v in asdict(s).items() if not (k in ("activation", "kept") and v is None)}
                       for s in self.stages]
        for k, default in (("activation", DEFAULT_ACTIVATION), ("head_pool", DEFAULT_POOL)):
            if d[k] == default:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "<stored schedule>") -> "Schedule":
        """The schedule stored in a model file, re-checked: a damaged or hostile file names what is wrong."""
        d = dict(d)
        d["stages"] = tuple(Stage(**{**s, **{k: None if s.get(k) is None else tuple(s[k]) for k in ("hidden", "kept")}})
                            for s in d["stages"])
        out = cls(**d)
        check_size(out, origin)
        return out


def list_schedules() -> list[Schedule]:
    """Every schedule file in the profiles folder (recipes, which have no [[stages]], are skipped)."""
    out = []
    for p in sorted(profiles_dir().glob("*.toml")):
        with open(p, "rb") as f:
            if "stages" in tomllib.load(f):
                out.append(load_schedule(p))
    return out


def load_schedule(name_or_path: str | Path) -> Schedule:
    """Load a built-in schedule by name (`table3`) or any schedule file by path, validated."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        p = profiles_dir() / f"{name_or_path}.toml"
        if not p.exists():
            names = ", ".join(s.name for s in list_schedules()) or "none"
            raise UserError(f"unknown schedule '{name_or_path}'; choose one of: {names}, or pass a .toml file path")
    if not p.is_file():
        raise UserError(f"schedule file {p} does not exist; pass a path to a .toml schedule or a built-in name")
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not valid TOML ({str(e).splitlines()[0][:160]}); fix the syntax") from None
    return parse_schedule(raw, str(p))


def _int(where: str, v: Any, lo: int = 1, choices: tuple[int, ...] | None = None, hi: int = MAX_CHANNELS) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UserError(f"{where} must be an integer, got {v!r}")
    if choices and v not in choices:
        raise UserError(f"{where} must be one of {list(choices)}, got {v}")
    if v < lo:
        raise UserError(f"{where} must be >= {lo}, got {v}")
    if v > hi:
        raise UserError(f"{where} must be <= {hi} (a cap that keeps a schedule within memory), got {v}")
    return v


def param_bound(s: Schedule) -> int:
    """An upper bound on the network's parameter count, from the schedule alone (no tensors allocated)."""
    total, cin = 27 * s.stem_c, s.stem_c
    for st in s.stages:
        for i in range(st.n):
            h = st.hidden_of(i) or st.t * cin
            total += cin * h + 9 * h + h * st.c + 9 * cin + cin * st.c + 4 * (h + st.c)
            cin = st.c
    return total + cin * s.head_c + s.head_c * s.embedding_size


def check_size(s: Schedule, origin: str) -> None:
    """Every number of a schedule (parsed or stored in a model file) within its cap, and the network too."""
    for k in ("stem_c", "head_c", "embedding_size"):
        _int(f"{origin}: {k}", getattr(s, k))
    _int(f"{origin}: input_size", s.input_size, lo=16, hi=MAX_INPUT_SIZE)
    if not 1 <= len(s.stages) <= MAX_REPEATS:
        raise UserError(f"{origin}: {len(s.stages)} stages; a schedule has 1..{MAX_REPEATS}")
    for i, st in enumerate(s.stages, 1):
        _int(f"{origin}: stage {i}.c", st.c)
        _int(f"{origin}: stage {i}.n", st.n, hi=MAX_REPEATS)
        _int(f"{origin}: stage {i}.t", st.t, hi=MAX_EXPANSION)
        for h in st.hidden or ():
            _int(f"{origin}: stage {i}.hidden", h, hi=MAX_CHANNELS * MAX_EXPANSION)
    n = param_bound(s)
    if n > MAX_PARAMS:
        raise UserError(f"{origin}: the network would have about {n:,} parameters ({4 * n / 2**30:.1f} GiB), more "
                        f"than the cap of {MAX_PARAMS:,}; the paper's networks have about 1M: narrow the schedule")


def _hidden(where: str, v: Any, t: int, n: int) -> tuple[int, ...] | None:
    """`hidden` is one integer (every block) or a list of n integers; absent means t x (branch input width)."""
    if v is None:
        return None
    if t == 1:
        raise UserError(f"{where}.hidden is not allowed with t = 1 (no expand conv: the depthwise runs on the input)")
    if isinstance(v, list):
        if len(v) != n:
            raise UserError(f"{where}.hidden must list one width per block (n = {n}), got {len(v)}")
        return tuple(_int(f"{where}.hidden[{i}]", h) for i, h in enumerate(v))
    return (_int(f"{where}.hidden", v),) * n


def parse_schedule(raw: dict[str, Any], origin: str = "<schedule>") -> Schedule:
    """Validate a schedule mapping; every error names `origin` and the offending field."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise UserError(f"{origin}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("stem", "stages", "head"):
        if key not in raw:
            raise UserError(f"{origin}: missing [{key}] section")
    stem, head = raw["stem"], raw["head"]
    if not isinstance(stem, dict) or set(stem) - {"c", "s"}:
        raise UserError(f"{origin}: [stem] takes only c and s")
    if not isinstance(head, dict) or set(head) - {"c", "pool"}:
        raise UserError(f"{origin}: [head] takes only c and pool")
    pool = head.get("pool", DEFAULT_POOL)
    if pool not in HEAD_POOLS:
        raise UserError(f"{origin}: head.pool must be one of {list(HEAD_POOLS)}, got {pool!r}")
    activation = _choice(f"{origin}: activation", raw.get("activation", DEFAULT_ACTIVATION), ACTIVATIONS)
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        raise UserError(f"{origin}: [[stages]] must be a non-empty list of tables")
    stages = []
    for i, st in enumerate(stages_raw, start=1):
        where = f"{origin}: stage {i}"
        if not isinstance(st, dict):
            raise UserError(f"{where} must be a table with t, c, n, s")
        bad = set(st) - _STAGE_KEYS
        if bad:
            raise UserError(f"{where}: unknown field(s) {sorted(bad)}; allowed: {sorted(_STAGE_KEYS)}")
        for k in ("t", "c", "n", "s"):
            if k not in st:
                raise UserError(f"{where}: missing field '{k}'")
        residual = st.get("residual", "a")
        if residual not in RESIDUAL_KINDS:
            raise UserError(f"{where}.residual must be one of {list(RESIDUAL_KINDS)}, got {residual!r}")
        c = _int(f"{where}.c", st["c"])
        if residual == "b" and c % 2:
            raise UserError(f"{where}.c must be even for residual 'b' (it splits channels in half), got {c}")
        source = st.get("source")
        t = _int(f"{where}.t", st["t"], hi=MAX_EXPANSION)
        n = _int(f"{where}.n", st["n"], hi=MAX_REPEATS)
        if residual == "dws" and t != 1:
            raise UserError(f"{where}.t must be 1 for residual 'dws' (depthwise-separable: no expand conv), got {t}")
        act = st.get("activation")
        stages.append(Stage(
            t=t, c=c, n=n,
            s=_int(f"{where}.s", st["s"], choices=(1, 2)), residual=residual,
            source=None if source is None else _int(f"{where}.source", source),
            hidden=_hidden(where, st.get("hidden"), t, n),
            activation=None if act is None else _choice(f"{where}.activation", act, ACTIVATIONS),
            kept=_kept(where, st.get("kept"), n),
        ))
    size = _int(f"{origin}: input_size", raw.get("input_size", 112), lo=16, hi=MAX_INPUT_SIZE)
    out = Schedule(
        name=str(raw.get("name") or Path(origin).stem),
        description=str(raw.get("description", "")),
        input_size=size,
        embedding_size=_int(f"{origin}: embedding_size", raw.get("embedding_size", 128)),
        stem_c=_int(f"{origin}: stem.c", stem.get("c", 32)),
        stem_s=_int(f"{origin}: stem.s", stem.get("s", 2), choices=(1, 2)),
        stages=tuple(stages),
        head_c=_int(f"{origin}: head.c", head.get("c", 1280)),
        prune_from=raw.get("prune_from"),
        path=origin,
        activation=activation,
        head_pool=pool,
    )
    check_size(out, origin)
    return out


def _choice(where: str, v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise UserError(f"{where} must be one of {list(choices)}, got {v!r}")
    return v


def _kept(where: str, v: Any, n: int) -> tuple[int, ...] | None:
    """`kept`: the n source blocks (1-based, increasing, starting with 1) a pruned stage keeps."""
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n:
        raise UserError(f"{where}.kept must list n = {n} source block numbers (1-based), got {v!r}")
    k = tuple(_int(f"{where}.kept[{i}]", b) for i, b in enumerate(v))
    if k[0] != 1 or any(b >= c for b, c in zip(k, k[1:])):
        raise UserError(f"{where}.kept must start with 1 (the block carrying the stride) and increase, got {list(k)}")
    return k
