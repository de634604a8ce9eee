"""Robot boards ("targets") as data: one TOML file per board under targets/, loaded and strictly validated.

A target says how a model must be exported for a board and what the board can do. Fields (all files in
targets/ repeat this list in their header comment):

    name               str, required; equals the file stem (`compress export --target NAME`)
    description        str, required; one line
    runtime            required; "tensorrt" | "openvino" | "tflite" | "onnxruntime"
    runtime_version    str, required; what runs on the board (JetPack / TensorRT / OpenVINO / LiteRT version)
    precisions         list of "fp32" | "fp16" | "int8", required, non-empty; what the board's runtime executes
    default_precision  str, required; one of `precisions`
    onnx_opset_max     int, optional; highest ONNX opset the board's importer accepts. Absent = the export
                       path does not go through ONNX (TFLite boards: litert-torch converts from torch)
    input_layout       "NCHW" | "NHWC", required; layout of the exported model's input
    batch              int, required, must be 1 (static batch 1; every board here runs one face at a time)
    notes              str, optional
    board_os           list of str, optional; the board software a bundle runs on (e.g. "JetPack 4.6 ...")
    board_python       list of "3.N", optional; the board's Python version(s): every script in the export
                       bundle must run on the lowest (tests check it with vermin)
    board_runtime      list of str, optional; the runtime version(s) on the board, with its Python bindings
    board_model        str, optional; text in /proc/device-tree/model (or the DMI product name on x86) that
                       identifies the board, so run_on_board.py can say whether it ran on it
    board_cpu          str, optional; the board's CPU core as QEMU's `-cpu` names it ("cortex-a72"), so
                       `compress emulate` runs the bundle with that core's instruction set (and XNNPACK picks
                       that board's kernels); absent = the bundle cannot be emulated

    [hardware]                      optional (a board-less target has none); figures for the latency model
    device                          str, required; the exact board / module / SoC the figures are for
    compute_unit                    "gpu" | "cpu" | "npu"; where the network runs
    cores                           int, optional; CUDA cores for a GPU, physical cores for a CPU
    clock_ghz                       float, optional; clock of `compute_unit` (max/boost, as the source says)
    memory_bandwidth_gbps           float, optional; peak DRAM bandwidth, GB/s
    source                          str, required when any figure above is given: spec sheet URL/title
    [[hardware.peak]]               zero or more; peak compute per precision
        precision                   one of `precisions` (or another of fp32/fp16/int8)
        ops_per_s                   float > 0
        counted                     "flop" (1 MAC = 2 FLOP) | "op" (integer ops, 1 MAC = 2 ops) | "mac"
        source                      str, required
        notes                       str, optional (e.g. "dense; the 40 TOPS headline is 2:4 sparse")

    [latency_model]                 optional; parameters of the per-layer estimate, filled by calibration
    calibrated                      bool; false = the values below are placeholders, not fitted
    overhead_us                     float >= 0; fixed cost per layer (kernel launch, scheduling), µs
    source                          str, optional; how the values were fitted (required when calibrated)
    [latency_model.efficiency]      fraction of peak compute reached, 0 < e <= 1, per layer kind:
        depthwise, pointwise, dense (standard KxK conv and fully connected)

    [[reference]]                   zero or more published latencies of reference networks on this board
    network                         str; what ran (e.g. "MobileNet v2 1.0 (ImageNet classifier)")
    input_size                      [H, W] ints
    precision                       "fp32" | "fp16" | "int8"
    runtime                         str; the software that ran it (may differ from the target runtime,
                                    e.g. "xnnpack end2end_bench", "tf-trt")
    batch                           int >= 1
    latency_ms                      float > 0
    source                          str, required; URL or publication title
    measured                        str, required; what exactly the number is (timer, threads, what is
                                    included, mean/median)
    conditions                      str, optional (power mode, clocks, OS, date)

Validation raises UserError with one line naming the file and the field. Numbers never come from code: a
figure without a published source is left out of the file, and the file's comments say so.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import repo_folder
from .errors import UserError

RUNTIMES = ("tensorrt", "openvino", "tflite", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NCHW", "NHWC")
COMPUTE_UNITS = ("gpu", "cpu", "npu")
COUNTED = ("flop", "op", "mac")
LAYER_KINDS = ("depthwise", "pointwise", "dense")

_TOP_KEYS = {"name", "description", "runtime", "runtime_version", "precisions", "default_precision",
             "onnx_opset_max", "input_layout", "batch", "notes", "hardware",
             "board_os", "board_python", "board_runtime", "board_model", "board_cpu", "latency_model",
             "reference"}
_HW_KEYS = {"device", "compute_unit", "cores", "clock_ghz", "memory_bandwidth_gbps", "source", "peak"}
_PEAK_KEYS = {"precision", "ops_per_s", "counted", "source", "notes"}
_LM_KEYS = {"calibrated", "overhead_us", "source", "efficiency"}
_REF_KEYS = {"network", "input_size", "precision", "runtime", "batch", "latency_ms", "source", "measured",
             "conditions"}


def targets_dir() -> Path:
    """Where built-in target files live (override with COMPRESS_TARGETS)."""
    return repo_folder("COMPRESS_TARGETS", "targets")


@dataclass(frozen=True)
class Peak:
    precision: str
    ops_per_s: float
    counted: str
    source: str
    notes: str = ""

    @property
    def macs_per_s(self) -> float:
        """Peak in multiply-accumulates per second (1 MAC = 2 FLOP = 2 ops)."""
        return self.ops_per_s if self.counted == "mac" else self.ops_per_s / 2


@dataclass(frozen=True)
class Hardware:
    device: str
    compute_unit: str
    source: str = ""
    cores: int | None = None
    clock_ghz: float | None = None
    memory_bandwidth_gbps: float | None = None
    peak: tuple[Peak, ...] = ()

    def peak_for(self, precision: str) -> Peak | None:
        return next((p for p in self.peak if p.precision == precision), None)


@dataclass(frozen=True)
class LatencyModel:
    calibrated: bool = False
    overhead_us: float = 0.0
    efficiency: tuple[tuple[str, float], ...] = tuple((k, 1.0) for k in LAYER_KINDS)
    source: str = ""

    def efficiency_for(self, kind: str) -> float:
        return dict(self.efficiency)[kind]


@dataclass(frozen=True)
class Reference:
    network: str
    input_size: tuple[int, int]
    precision: str
    runtime: str
    batch: int
    latency_ms: float
    source: str
    measured: str
    conditions: str = ""


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runtime: str
    runtime_version: str
    precisions: tuple[str, ...]
    default_precision: str
    input_layout: str
    batch: int = 1
    onnx_opset_max: int | None = None
    notes: str = ""
    hardware: Hardware | None = None
    latency_model: LatencyModel = LatencyModel()
    references: tuple[Reference, ...] = ()
    path: str = ""
    board_os: tuple[str, ...] = ()
    board_python: tuple[str, ...] = ()
    board_runtime: tuple[str, ...] = ()
    board_model: str = ""
    board_cpu: str = ""

    @property
    def board_python_min(self) -> str | None:
        """The lowest Python the board runs ("3.6"), or None when the target file does not say."""
        return min(self.board_python, key=_py_key) if self.board_python else None


# ---------------------------------------------------------------- loading
def list_targets() -> list[Target]:
    """Every target file in the targets folder, sorted by name."""
    return [load_target(p) for p in sorted(targets_dir().glob("*.toml"))]


def _names() -> str:
    return ", ".join(p.stem for p in sorted(targets_dir().glob("*.toml"))) or "none"


def load_target(name_or_path: str | Path) -> Target:
    """Load a built-in target by name (`jetson-nano`) or any target file by path, validated."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        p = targets_dir() / f"{name_or_path}.toml"
        if not p.exists():
            raise UserError(f"unknown target '{name_or_path}'; choose one of: {_names()}")
    if not p.is_file():
        raise UserError(f"target file {p} does not exist; pass a path to a .toml target or one of: {_names()}")
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not valid TOML ({str(e).splitlines()[0][:160]}); fix the syntax") from None
    return parse_target(raw, str(p))


# ---------------------------------------------------------------- validation helpers
def _unknown(where: str, d: dict[str, Any], allowed: set[str]) -> None:
    bad = set(d) - allowed
    if bad:
        raise UserError(f"{where}: unknown field(s) {sorted(bad)}; allowed: {sorted(allowed)}")


def _req(where: str, d: dict[str, Any], key: str) -> Any:
    if key not in d:
        raise UserError(f"{where}: missing field '{key}'")
    return d[key]


def _str(where: str, v: Any, nonempty: bool = True) -> str:
    if not isinstance(v, str):
        raise UserError(f"{where} must be a string, got {v!r}")
    if nonempty and not v.strip():
        raise UserError(f"{where} must not be empty")
    return v


def _choice(where: str, v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise UserError(f"{where} must be one of {list(choices)}, got {v!r}")
    return v


def _int(where: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UserError(f"{where} must be an integer, got {v!r}")
    if v < lo:
        raise UserError(f"{where} must be >= {lo}, got {v}")
    return v


def _num(where: str, v: Any, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"{where} must be a number, got {v!r}")
    if positive and v <= 0:
        raise UserError(f"{where} must be > 0, got {v}")
    if not positive and v < 0:
        raise UserError(f"{where} must be >= 0, got {v}")
    return float(v)


def _table(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise UserError(f"{where} must be a table, got {v!r}")
    return v


def _tables(where: str, v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise UserError(f"{where} must be a list of tables ([[...]])")
    return v


# ---------------------------------------------------------------- parsing
def parse_target(raw: dict[str, Any], origin: str = "<target>") -> Target:
    """Validate a target mapping; every error names `origin` and the offending field."""
    _unknown(origin, raw, _TOP_KEYS)
    name = _str(f"{origin}: name", _req(origin, raw, "name"))
    stem = Path(origin).stem
    if origin.endswith(".toml") and name != stem:
        raise UserError(f"{origin}: name must equal the file name '{stem}', got {name!r}")
    runtime = _choice(f"{origin}: runtime", _req(origin, raw, "runtime"), RUNTIMES)
    precs = _req(origin, raw, "precisions")
    if not isinstance(precs, list) or not precs:
        raise UserError(f"{origin}: precisions must be a non-empty list of {list(PRECISIONS)}")
    precisions = tuple(_choice(f"{origin}: precisions[{i}]", p, PRECISIONS) for i, p in enumerate(precs))
    if len(set(precisions)) != len(precisions):
        raise UserError(f"{origin}: precisions lists a precision twice: {list(precisions)}")
    default = _str(f"{origin}: default_precision", _req(origin, raw, "default_precision"))
    if default not in precisions:
        raise UserError(f"{origin}: default_precision {default!r} is not offered; precisions are {list(precisions)}")
    opset = raw.get("onnx_opset_max")
    batch = _int(f"{origin}: batch", _req(origin, raw, "batch"))
    if batch != 1:
        raise UserError(f"{origin}: batch must be 1 (targets are static batch 1), got {batch}")
    return Target(
        name=name,
        description=_str(f"{origin}: description", _req(origin, raw, "description")),
        runtime=runtime,
        runtime_version=_str(f"{origin}: runtime_version", _req(origin, raw, "runtime_version")),
        precisions=precisions,
        default_precision=default,
        input_layout=_choice(f"{origin}: input_layout", _req(origin, raw, "input_layout"), LAYOUTS),
        batch=batch,
        onnx_opset_max=None if opset is None else _int(f"{origin}: onnx_opset_max", opset, lo=7),
        notes=_str(f"{origin}: notes", raw.get("notes", ""), nonempty=False),
        hardware=None if "hardware" not in raw else _parse_hardware(origin, raw["hardware"]),
        latency_model=(LatencyModel() if "latency_model" not in raw
                       else _parse_latency_model(origin, raw["latency_model"])),
        references=tuple(_parse_reference(f"{origin}: reference {i}", r)
                         for i, r in enumerate(_tables(f"{origin}: reference", raw.get("reference", [])), 1)),
        path=origin,
        **_parse_board(origin, raw),
    )


MIN_BOARD_PYTHON = (3, 6)  # the oldest board Python the bundle scripts are written for (JetPack 4.6)


def _py_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _str_list(where: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise UserError(f"{where} must be a non-empty list of strings, got {v!r}")
    return tuple(_str(f"{where}[{i}]", x) for i, x in enumerate(v))


def _parse_board(origin: str, raw: dict[str, Any]) -> dict[str, Any]:
    """board_os / board_python / board_runtime / board_model: the software the export bundle runs on."""
    out: dict[str, Any] = {k: _str_list(f"{origin}: {k}", raw[k])
                           for k in ("board_os", "board_python", "board_runtime") if k in raw}
    for i, v in enumerate(out.get("board_python", ())):
        if not re.fullmatch(r"3\.\d+", v) or _py_key(v) < MIN_BOARD_PYTHON:
            raise UserError(f"{origin}: board_python[{i}] must be a Python version \"3.N\" with N >= "
                            f"{MIN_BOARD_PYTHON[1]} (the bundle scripts need 3.6+), got {v!r}")
    if "board_model" in raw:
        out["board_model"] = _str(f"{origin}: board_model", raw["board_model"])
    if "board_cpu" in raw:
        cpu = _str(f"{origin}: board_cpu", raw["board_cpu"])
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", cpu):
            raise UserError(f"{origin}: board_cpu must be a CPU name as `qemu-aarch64-static -cpu help` lists it "
                            f"(e.g. \"cortex-a76\"), got {cpu!r}")
        out["board_cpu"] = cpu
    return out


def _parse_hardware(origin: str, v: Any) -> Hardware:
    where = f"{origin}: hardware"
    hw = _table(where, v)
    _unknown(where, hw, _HW_KEYS)
    peaks = []
    for i, pk in enumerate(_tables(f"{where}.peak", hw.get("peak", [])), 1):
        pw = f"{where}.peak {i}"
        _unknown(pw, pk, _PEAK_KEYS)
        peaks.append(Peak(
            precision=_choice(f"{pw}.precision", _req(pw, pk, "precision"), PRECISIONS),
            ops_per_s=_num(f"{pw}.ops_per_s", _req(pw, pk, "ops_per_s")),
            counted=_choice(f"{pw}.counted", _req(pw, pk, "counted"), COUNTED),
            source=_str(f"{pw}.source", _req(pw, pk, "source")),
            notes=_str(f"{pw}.notes", pk.get("notes", ""), nonempty=False),
        ))
    if len({p.precision for p in peaks}) != len(peaks):
        raise UserError(f"{where}.peak: a precision appears twice")
    figures = [k for k in ("cores", "clock_ghz", "memory_bandwidth_gbps") if k in hw]
    source = _str(f"{where}.source", hw.get("source", ""), nonempty=False)
    if figures and not source.strip():
        raise UserError(f"{where}: missing field 'source' (spec sheet for {', '.join(figures)})")
    return Hardware(
        device=_str(f"{where}.device", _req(where, hw, "device")),
        compute_unit=_choice(f"{where}.compute_unit", _req(where, hw, "compute_unit"), COMPUTE_UNITS),
        source=source,
        cores=None if "cores" not in hw else _int(f"{where}.cores", hw["cores"]),
        clock_ghz=None if "clock_ghz" not in hw else _num(f"{where}.clock_ghz", hw["clock_ghz"]),
        memory_bandwidth_gbps=(None if "memory_bandwidth_gbps" not in hw
                               else _num(f"{where}.memory_bandwidth_gbps", hw["memory_bandwidth_gbps"])),
        peak=tuple(peaks),
    )


def _parse_latency_model(origin: str, v: Any) -> LatencyModel:
    where = f"{origin}: latency_model"
    lm = _table(where, v)
    _unknown(where, lm, _LM_KEYS)
    calibrated = lm.get("calibrated", False)
    if not isinstance(calibrated, bool):
        raise UserError(f"{where}.calibrated must be true or false, got {calibrated!r}")
    source = _str(f"{where}.source", lm.get("source", ""), nonempty=False)
    if calibrated and not source.strip():
        raise UserError(f"{where}: missing field 'source' (how the calibrated values were fitted)")
    eff_raw = _table(f"{where}.efficiency", lm.get("efficiency", {}))
    _unknown(f"{where}.efficiency", eff_raw, set(LAYER_KINDS))
    eff = []
    for k in LAYER_KINDS:
        e = _num(f"{where}.efficiency.{k}", eff_raw.get(k, 1.0))
        if e > 1:
            raise UserError(f"{where}.efficiency.{k} is a fraction of peak and must be <= 1, got {e}")
        eff.append((k, e))
    return LatencyModel(calibrated=calibrated,
                        overhead_us=_num(f"{where}.overhead_us", lm.get("overhead_us", 0.0), positive=False),
                        efficiency=tuple(eff), source=source)


def _parse_reference(where: str, r: dict[str, Any]) -> Reference:
    _unknown(where, r, _REF_KEYS)
    size = _req(where, r, "input_size")
    if not (isinstance(size, list) and len(size) == 2):
        raise UserError(f"{where}.input_size must be [height, width], got {size!r}")
    source = _str(f"{where}.source", _req(where, r, "source"))
    return Reference(
        network=_str(f"{where}.network", _req(where, r, "network")),
        input_size=(_int(f"{where}.input_size[0]", size[0]), _int(f"{where}.input_size[1]", size[1])),
        precision=_choice(f"{where}.precision", _req(where, r, "precision"), PRECISIONS),
        runtime=_str(f"{where}.runtime", _req(where, r, "runtime")),
        batch=_int(f"{where}.batch", _req(where, r, "batch")),
        latency_ms=_num(f"{where}.latency_ms", _req(where, r, "latency_ms")),
        source=source,
        measured=_str(f"{where}.measured", _req(where, r, "measured")),
        conditions=_str(f"{where}.conditions", r.get("conditions", ""), nonempty=False),
    )


# ---------------------------------------------------------------- formatting
def _opset(t: Target) -> str:
    return f"<= {t.onnx_opset_max}" if t.onnx_opset_max is not None else "n/a (no ONNX step)"


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= scale:
            return f"{x / scale:g} {unit}"
    return f"{x:g} "


def format_target_list(targets: list[Target]) -> str:
    """One line per target: name, runtime, precisions (default first, marked *), opset cap, description."""
    lines = [f"{'name':<18}{'runtime':<13}{'precisions':<16}{'opset':<7}description"]
    for t in targets:
        precs = ",".join(p + ("*" if p == t.default_precision else "") for p in t.precisions)
        opset = str(t.onnx_opset_max) if t.onnx_opset_max is not None else "-"
        lines.append(f"{t.name:<18}{t.runtime:<13}{precs:<16}{opset:<7}{t.description}")
    lines.append("* = default precision; opset = highest ONNX opset the board accepts (- = no ONNX step); "
                 "`compress targets show NAME` for hardware and reference latencies.")
    return "\n".join(lines)


def format_target(t: Target) -> str:
    """Readable multi-line description of one target (`compress targets show NAME`)."""
    out = [f"{t.name}: {t.description}  [{t.path}]",
           f"  runtime          {t.runtime} ({t.runtime_version})",
           f"  precisions       {', '.join(t.precisions)} (default {t.default_precision})",
           f"  ONNX opset       {_opset(t)}",
           f"  input            {t.input_layout}, static batch {t.batch}"]
    if t.notes:
        out.append(f"  notes            {t.notes}")
    if t.board_python:
        out.append(f"  board software   {'; or '.join(t.board_os)}; Python {' / '.join(t.board_python)}; "
                   f"{'; '.join(t.board_runtime)}  (the export bundle runs there)")
    hw = t.hardware
    if hw is None:
        out.append("  hardware         none (board-less target; latency is measured on the host)")
    else:
        out.append(f"  hardware         {hw.device} (runs on {hw.compute_unit})")
        facts = []
        if hw.cores is not None:
            facts.append(f"{hw.cores} cores")
        if hw.clock_ghz is not None:
            facts.append(f"{hw.clock_ghz:g} GHz")
        if hw.memory_bandwidth_gbps is not None:
            facts.append(f"{hw.memory_bandwidth_gbps:g} GB/s memory bandwidth")
        if facts:
            out.append(f"                   {', '.join(facts)}  (source: {hw.source})")
        for p in hw.peak:
            unit = {"flop": "FLOP/s", "op": "op/s", "mac": "MAC/s"}[p.counted]
            note = f"; {p.notes}" if p.notes else ""
            out.append(f"  peak {p.precision:<5}       {_si(p.ops_per_s)}{unit}{note}  (source: {p.source})")
        missing = [x for x in PRECISIONS if x in t.precisions and hw.peak_for(x) is None]
        if missing:
            out.append(f"  peak             no published figure for {', '.join(missing)}")
    lm = t.latency_model
    eff = ", ".join(f"{k} {v:g}" for k, v in lm.efficiency)
    state = f"calibrated ({lm.source})" if lm.calibrated else "NOT calibrated (placeholders)"
    out.append(f"  latency model    efficiency {eff}; overhead {lm.overhead_us:g} us/layer; {state}")
    if not t.references:
        out.append("  references       none published that we could find")
    else:
        out.append(f"  references       {len(t.references)} published measurement(s):")
        for r in t.references:
            h, w = r.input_size
            out.append(f"    {r.latency_ms:>8g} ms  {r.network}, {h}x{w}, {r.precision}, {r.runtime}, batch {r.batch}")
            out.append(f"                 measured: {r.measured}")
            if r.conditions:
                out.append(f"                 conditions: {r.conditions}")
            out.append(f"                 source: {r.source}")
    return "\n".join(out)
