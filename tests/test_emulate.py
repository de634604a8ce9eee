"""compress emulate: the arm64 root's cache and bad input (fast, no QEMU needed), the report's emulated status,
and (slow) one Raspberry Pi 5 bundle run on the emulated Cortex-A76."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from compress.bench import emulate as em
from compress.errors import UserError
from compress.targets import load_target, parse_target

from .conftest import run_cli


def _fake_bin(folder: Path, *names: str) -> Path:
    """Executables that exist only to be found on PATH (a stand-in for an installed tool)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        p = folder / n
        p.write_text("#!/bin/sh\necho 'fake tool' >&2\nexit 1\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return folder


def _bundle(folder: Path, target: str) -> Path:
    """The two files that make a folder look like an export bundle (enough to be refused or accepted)."""
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps({"target": target, "precision": "fp32"}))
    (folder / "run_on_board.py").write_text("raise SystemExit('not run in these tests')\n")
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty emulate cache and a PATH with nothing on it but `bin` (filled per test)."""
    monkeypatch.setenv(em.ENV_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()
    return tmp_path


# ---------------------------------------------------------------- targets
def test_pi_targets_name_the_board_cpu():
    assert load_target("raspberry-pi-4").board_cpu == "cortex-a72"  # Armv8.0: no dot product
    assert load_target("raspberry-pi-5").board_cpu == "cortex-a76"  # Armv8.2: dot product
    assert load_target("jetson-nano").board_cpu == ""


def test_board_cpu_is_validated():
    raw = {"name": "x", "description": "d", "runtime": "tflite", "runtime_version": "v", "precisions": ["fp32"],
           "default_precision": "fp32", "input_layout": "NHWC", "batch": 1, "board_cpu": "Cortex A76"}
    with pytest.raises(UserError, match="board_cpu must be a CPU name"):
        parse_target(raw, "x.toml")


# ---------------------------------------------------------------- bad input, one line each
def test_missing_qemu(isolated):
    bundle = _bundle(isolated / "b", "raspberry-pi-5")
    r = run_cli("emulate", bundle, "--json", isolated / "o.json", check_rc=2)
    assert "qemu-aarch64-static" in r.stderr and "apt-get install qemu-user-static" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (isolated / "o.json").exists()


def test_missing_root_builder(isolated):
    _fake_bin(isolated / "bin", "qemu-aarch64-static")
    with pytest.raises(UserError, match="mmdebstrap .* apt-get install mmdebstrap"):
        em.emulate_bundle(_bundle(isolated / "b", "raspberry-pi-4"), isolated / "o.json")


def test_non_arm_bundle_is_refused(isolated):
    _fake_bin(isolated / "bin", "qemu-aarch64-static")
    with pytest.raises(UserError, match="jetson-nano .*no emulated Arm CPU.*raspberry-pi-4, raspberry-pi-5"):
        em.emulate_bundle(_bundle(isolated / "b", "jetson-nano"), isolated / "o.json")


def test_not_a_bundle(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(UserError, match="not an export bundle"):
        em.emulate_bundle(isolated / "empty", isolated / "o.json")
    (isolated / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(UserError, match="not a readable bundle .tar.gz"):
        em.emulate_bundle(isolated / "junk.tar.gz", isolated / "o.json")


def test_existing_output_is_kept(isolated):
    (isolated / "o.json").write_text("{}")
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        em.emulate_bundle(_bundle(isolated / "b", "raspberry-pi-5"), isolated / "o.json")
    assert (isolated / "o.json").read_text() == "{}"


def _cached_root(folder: Path) -> Path:
    """A tiny stand-in root with a sealed manifest, as build_root leaves it."""
    root = folder / "root" / "usr" / "bin"
    root.mkdir(parents=True)
    (root / "python3.11").write_text("stand-in")
    (root / "python3").symlink_to("python3.11")
    manifest = {"format": em.ROOT_FORMAT, "key": folder.name, "files": em.file_table(folder / "root")}
    (folder / em.MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_damaged_cache_is_refused_with_the_fix(tmp_path):
    folder = _cached_root(tmp_path / "bookworm-arm64-x")
    assert em.check_root(folder)["key"] == folder.name
    (folder / "root" / "usr" / "bin" / "python3.11").write_text("changed")
    with pytest.raises(UserError, match=r"damaged \(1 file.*usr/bin/python3.11\).*--rebuild"):
        em.check_root(folder)
    (folder / em.MANIFEST).unlink()  # e.g. a folder copied in by hand, or a build that never finished
    with pytest.raises(UserError, match="no readable manifest.json .*rm -rf"):
        em.check_root(folder)


def test_half_built_root_is_never_used(isolated):
    """Only a renamed-in folder counts: a `.partial` staging folder left by an interrupted build is rebuilt."""
    _fake_bin(isolated / "bin", "qemu-aarch64-static")
    spec = em.RootSpec(wheels={"numpy": "0", "ai-edge-litert": "0"})
    partial = isolated / "cache" / f".{spec.key()}.partial"
    _cached_root(partial)
    with pytest.raises(UserError, match="mmdebstrap"):  # it goes to build, and the builder is missing
        em.ensure_root(spec)


def test_unreachable_registry(tmp_path, monkeypatch):
    for k, v in {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0",
                 "PIP_TIMEOUT": "2", "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UserError, match="pip download .*failed.*PyPI .* reachable"):
        em.download_wheels(em.RootSpec(wheels={"numpy": "2.4.6"}), tmp_path / "w")


@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap not installed")
def test_unreachable_debian_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(em.ENV_MIRROR, "http://127.0.0.1:9/debian")
    with pytest.raises(UserError, match=f"mmdebstrap .*failed.*127.0.0.1:9/debian.*{em.ENV_MIRROR}"):
        em.extract_debian(shutil.which("mmdebstrap"), em.RootSpec(), tmp_path / "root")


# ---------------------------------------------------------------- the report
def _record(target: str, precision: str, emulated: bool) -> dict:
    rec = {"format": "compress.bench/1", "target": target, "precision": precision, "median_ms": 900.0,
           "p90_ms": 950.0, "runtime": "litert", "created": "2026-01-01T00:00:00+00:00",
           "measured_on": "TEST FIXTURE (hand-written record, not a measurement)", "model_sha256": "0" * 64,
           "parity": {"cosine_mean": 0.99, "cosine_min": 0.98, "n": 32, "runtime": "litert 2.3.0"}}
    if emulated:
        rec.update(measured=em.EMULATED_STATUS, emulated={"cpu": "cortex-a76"}, board={"on_target": None})
    return rec


def test_report_shows_emulated_under_its_own_status(tmp_path):
    from compress.report.collect import EMULATED, MEASURED_BOARD, collect
    from compress.report.render import fmt_latency

    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "raspberry-pi-5-int8.json").write_text(json.dumps(_record("raspberry-pi-5", "int8", True)))
    (tmp_path / "board" / "raspberry-pi-4-int8.json").write_text(json.dumps(_record("raspberry-pi-4", "int8", True)))
    (tmp_path / "board" / "raspberry-pi-4-int8-board.json").write_text(
        json.dumps(_record("raspberry-pi-4", "int8", False)))
    rep = collect(tmp_path)
    lat = {t["name"]: next(v for v in t["variants"] if v["precision"] == "int8")["latency"]["board"]
           for t in rep["targets"] if t["name"].startswith("raspberry-pi")}
    assert lat["raspberry-pi-5"]["status"] == EMULATED and lat["raspberry-pi-5"]["parity"]["check"] == "emulated_arm64"
    assert "measured on board" not in lat["raspberry-pi-5"]["provenance"]
    cell = fmt_latency(lat["raspberry-pi-5"], {})
    assert "timing not meaningful" in cell and "900" not in cell and "measured on board" not in cell
    assert lat["raspberry-pi-4"]["status"] == MEASURED_BOARD  # a record from the board itself wins
    assert not any("matches no target" in w for w in rep["warnings"])
    assert any("emulated record not shown" in w for w in rep["warnings"])


# ---------------------------------------------------------------- end to end (QEMU, Debian mirror, PyPI)
def _can_emulate() -> str:
    try:
        em.find_qemu()
        if not (em.cache_root() / em.RootSpec(wheels=em.wheel_pins()).key()).is_dir():
            em.find_root_builder()
    except UserError as e:
        return str(e)
    return ""


@pytest.mark.slow
@pytest.mark.skipif(bool(_can_emulate()), reason=_can_emulate() or "ok")
def test_pi5_bundle_on_the_emulated_cortex_a76(tmp_path):
    """A Pi 5 fp32 bundle of a small model, exported here, run by `compress emulate`: aarch64, the A76's dot
    product, the Arm kernels' parity, the emulated label. Cold cache: builds the root first (~1.5 min)."""
    from compress.data.sources import synthetic_faces
    from compress.export import export_model
    from compress.export.bundle import write_tar

    from .conftest import table3_with_bn_statistics

    images = synthetic_faces(4, 2, seed=0, progress=False).images
    bundle = tmp_path / "pi5"
    export_model(table3_with_bn_statistics(images), "raspberry-pi-5", "fp32", bundle, parity_images=images,
                 parity_desc="synthetic test faces", progress=False, source_sha256="0" * 64)
    out = tmp_path / "pi5.json"
    run_cli("emulate", write_tar(bundle), "--json", out)
    rec = json.loads(out.read_text())
    assert rec["board"]["machine"] == "aarch64" and rec["emulated"]["cpu"] == "cortex-a76"
    assert rec["emulated"]["dot_product"] and rec["measured"] == em.EMULATED_STATUS
    assert rec["board"]["os"].startswith("Debian GNU/Linux 12") and rec["board"]["python"].startswith("3.11")
    assert rec["parity"]["n"] == len(images) and rec["parity"]["cosine_min"] > 0.999


def test_board_view_shows_the_boards_cpu(tmp_path):
    """The guest's /proc/cpuinfo names the board's core (MIDR) and the features QEMU gives it; the root itself is
    linked, never written."""
    root = _cached_root(tmp_path / "k") / "root"
    (root / "proc").mkdir()
    view = em.board_view(root, tmp_path / "view", "cortex-a76", ["fp", "asimd", "asimddp"], 4)
    info = (view / "proc" / "cpuinfo").read_text()
    assert info.count("processor\t:") == 4 and "CPU part\t: 0xd0b" in info and "Features\t: fp asimd asimddp" in info
    assert (view / "sys/devices/system/cpu/online").read_text() == "0-3\n"
    assert (view / "usr").is_symlink() and not (root / "proc" / "cpuinfo").exists()
    cmd = em.guest_command("qemu-aarch64-static", root, "cortex-a76", ["x.py"], view)
    assert cmd[:5] == ["qemu-aarch64-static", "-cpu", "cortex-a76", "-L", str(view)] and "-I" in cmd
