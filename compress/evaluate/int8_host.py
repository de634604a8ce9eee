"""How int8 runs on this host: whether its x86 int8 dot products saturate, and so whether an int8 model's
kernels run natively or are emulated in float. Shared by the host runtimes (compress.export.runtimes) and
onnxruntime's embedder (compress.evaluate.embed), below both so that neither imports the other."""

from __future__ import annotations

from pathlib import Path

# x86 int8 dot products without VNNI (AVX2, AVX-512F) go through vpmaddubsw, whose int16 sums of two u8*s8
# products saturate: OpenVINO's int8 kernels then return wrong embeddings for some faces (cosine to the NNCF
# fake-quant model down to -0.2 on an AVX2-only EPYC, 0.99+ on VNNI hosts). NNCF's overflow_fix (7-bit weights)
# avoids it at an accuracy cost on every board; our int8 boards have exact int8 dot products (VNNI, Arm, GPUs).
_X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")
INT8_MODES = ("auto", "native", "emulated")


def host_int8_saturates(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """True on an x86 Linux host whose CPU flags show no VNNI / AMX (int8 dot products saturate int16).
    cpuinfo / machine: /proc/cpuinfo's text and platform.machine() (read from this host when None)."""
    import platform

    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False  # not Linux: flags unknown, run the int8 kernels as they are
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return bool(flags) and not any(f in flags for f in _X86_INT8_DOT)


def int8_execution(quantized: bool, mode: str, saturating: str, emulation: str) -> str:
    """How a model's int8 part runs here: "none" (a float model), "native" or "emulated ..." with the reason.
    mode: INT8_MODES; saturating / emulation: the runtime's int8 kernels and how it emulates them, for the reason."""
    if mode not in INT8_MODES:
        raise ValueError(f"int8 must be one of {INT8_MODES}, got {mode!r}")
    if not quantized:
        return "none"
    if mode == "native":
        return "native"
    if mode == "emulated":
        return "emulated in float (asked for)"
    if host_int8_saturates():
        return (f"emulated in float: this host's x86 CPU has no VNNI, where {saturating} saturate int16 sums; "
                f"{emulation}, as exact int8 hardware (VNNI) computes them")
    return "native"
