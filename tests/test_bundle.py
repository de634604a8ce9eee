"""The board bundle (compress.export.bundle + run_on_board.py) on real exports of the small table3 network.

run_on_board.py runs as a separate process from the bundle folder, as on a board, with the compress package
made unimportable. The onnxruntime, OpenVINO and LiteRT paths run for real; TensorRT runs through the fake
bindings in tests/data/fake_tensorrt (onnxruntime behind the TensorRT API) and a representative trtexec log.
No timing figure is asserted: the runner is given tiny timing budgets and only the record's shape is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from compress.errors import UserError
from compress.export import board_runner, export_model
from compress.export.bundle import (CONFIG_FILE, FACES_FILE, RUNNER_FILE, SUMS_FILE, board_scripts, check_tar_out,
                                    tar_path, write_tar)
from compress.targets import list_targets, load_target, parse_target

from .conftest import table3_with_bn_statistics

DATA = Path(__file__).parent / "data"
FAKE_TRT = DATA / "fake_tensorrt"
TRTEXEC_LOG = DATA / "trtexec-8.2-jetson-nano-fp16.log"
QUICK = ["--seconds", "0.05", "--max-seconds", "1", "--min-runs", "5", "--warmup", "1"]
N_FACES = 16


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from compress.data.sources import synthetic_faces

    return synthetic_faces(4, N_FACES // 4, seed=0, progress=False).images


@pytest.fixture(scope="module")
def model(images):
    return table3_with_bn_statistics(images)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, model, images):
    """Export each (target, precision) once for the module; tests copy the folder before changing it."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def get(target: str, precision: str) -> Path:
        if (target, precision) not in cache:
            out = root / f"{target}-{precision}"
            export_model(model, target, precision, out, parity_images=images, parity_desc="synthetic test faces",
                         progress=False, source_sha256="0" * 64)
            cache[target, precision] = out
        return cache[target, precision]

    return get


def run_board(folder: Path, *args: str, fake_trt_api: str | None = None, path: Path | None = None
              ) -> subprocess.CompletedProcess:
    """python run_on_board.py ARGS in `folder`, as a user runs it, with `import compress` made to fail (it must
    not need it): a `compress` on PYTHONPATH that raises, which the runner's own isolation keeps."""
    stub = Path(__file__).parent / "data" / "no_compress"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(stub)
    if fake_trt_api:
        env.update(PYTHONPATH=f"{stub}{os.pathsep}{FAKE_TRT}", FAKE_TRT_API=fake_trt_api)
    if path:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, "run_on_board.py", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


def result(folder: Path) -> dict:
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    return json.loads((folder / f"{cfg['target']}-{cfg['precision']}.json").read_text())


def _on_target_expected(target: str) -> bool:
    """What the runner should find on this test machine (a board-less host, unless it really is one)."""
    model = ""
    for f in ("/proc/device-tree/model", "/sys/class/dmi/id/product_name"):
        try:
            model += Path(f).read_bytes().decode("utf-8", "replace")
        except OSError:
            pass
    return load_target(target).board_model.lower() in model.lower()


def check_record(rec: dict, folder: Path, runtime: str, min_cos: float) -> None:
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    man = json.loads((folder / "manifest.json").read_text())
    assert rec["format"] == "compress.bench/1" and rec["runtime"] == runtime
    assert rec["target"] == cfg["target"] and rec["precision"] == cfg["precision"]
    assert rec["model_sha256"] == man["model_sha256"]
    assert rec["median_ms"] > 0 and rec["runs"] >= 5 and rec["batch"] == 1
    assert rec["runner"]["bundle"] == f"{len((folder / SUMS_FILE).read_text().splitlines())} files verified " \
                                      f"against {SUMS_FILE}"
    par = rec["parity"]
    assert par["n"] == cfg["parity"]["n"] > 0 and par["cosine_min"] >= min_cos
    assert rec["board"]["python"] == ".".join(map(str, sys.version_info[:3]))


def merged(folder: Path, run: Path) -> tuple[dict, dict]:
    """(report, variant): the bundle as RUN/exports/<key> and its board JSON in RUN/board/, through collect."""
    from compress.report.collect import collect

    rec = result(folder)
    key = f"{rec['target']}-{rec['precision']}"
    shutil.copytree(folder, run / "exports" / key)
    (run / "board").mkdir(parents=True)
    (run / "board" / f"{key}.json").write_text(json.dumps(rec))
    report = collect(run)
    return report, next(v for t in report["targets"] for v in t["variants"] if v["key"] == key)


# ---------------------------------------------------------------- the runner on real bundles
@pytest.mark.slow
def _copy(src: Path, tmp_path: Path) -> Path:
    """A private copy of a module-wide bundle: a runner writes its result into the folder it runs in."""
    folder = tmp_path / src.name
    shutil.copytree(src, folder)
    return folder


def test_onnxruntime_bundle(bundles, tmp_path):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    r = run_board(folder, *QUICK)
    assert r.returncode == 0, r.stderr
    rec = result(folder)
    check_record(rec, folder, "onnxruntime", 0.9999)
    assert rec["board"]["on_target"] is None and "names no board model" in rec["measured"]
    assert "onnxruntime" in r.stdout and rec["model_sha256"][:12] in r.stdout  # the line says what produced it
    again = run_board(folder, *QUICK)  # the result is never overwritten without --overwrite
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    report, v = merged(folder, tmp_path / "run")
    board = v["latency"]["board"]
    assert board["status"] == "measured on board" and board["median_ms"] == rec["median_ms"]
    assert board["provenance"].startswith("measured on board (") and board["runtime"] == "onnxruntime"
    assert board["parity"]["check"] == "on_board" and board["parity"]["cosine_min"] == rec["parity"]["cosine_min"]
    assert v["export"]["artifact_bytes"] == (folder / "model.onnx").stat().st_size  # the bundle's files not counted
    from compress.report.render import tables

    rows = [r for title, _, _, rs in tables(report) if title.startswith("Parity") for r in rs]
    assert [r[1] for r in rows if r[0] == "onnx-fp32"] == ["vs_float", "on_board"]


@pytest.mark.slow
def test_openvino_bundle(bundles, tmp_path):
    folder = _copy(bundles("intel-nuc", "fp16"), tmp_path)
    r = run_board(folder, *QUICK, "--threads", "1")
    assert r.returncode == 0, r.stderr
    rec = result(folder)
    check_record(rec, folder, "openvino", 0.999)
    assert rec["threads"] == 1
    assert rec["board"]["on_target"] is _on_target_expected("intel-nuc")
    if not rec["board"]["on_target"]:
        assert "NOT the target board" in rec["measured"] and "NOT the target board" in r.stdout
        report, v = merged(folder, tmp_path / "run")  # the report does not pass it off as a board figure
        assert "NOT the target board" in v["latency"]["board"]["provenance"]
        assert any("NOT the target board" in w for w in report["warnings"])


@pytest.mark.slow
def test_litert_bundle(bundles, tmp_path):
    folder = _copy(bundles("raspberry-pi-4", "fp32"), tmp_path)
    r = run_board(folder, *QUICK)
    assert r.returncode == 0, r.stderr
    rec = result(folder)
    check_record(rec, folder, "litert", 0.9999)
    assert rec["board"]["on_target"] is _on_target_expected("raspberry-pi-4")


@pytest.mark.slow
@pytest.mark.parametrize("api", ["8", "10"])
def test_tensorrt_fake_bindings(bundles, tmp_path, api):
    """build_engine.py then run_on_board.py through fake TensorRT 8.2 / 10 bindings (onnxruntime inside)."""
    folder = tmp_path / "jetson-nano-fp16"
    shutil.copytree(bundles("jetson-nano", "fp16"), folder)
    missing = run_board(folder, *QUICK, fake_trt_api=api)
    assert missing.returncode == 2 and "model.engine not found: build it on this board first" in missing.stderr
    env = {**os.environ, "PYTHONPATH": str(FAKE_TRT), "FAKE_TRT_API": api}
    b = subprocess.run([sys.executable, "build_engine.py", "model.onnx", "model.engine", "--precision", "fp16"],
                       cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert b.returncode == 0, b.stderr
    r = run_board(folder, *QUICK, fake_trt_api=api)
    assert r.returncode == 0, r.stderr
    rec = result(folder)
    check_record(rec, folder, "tensorrt", 0.9999)  # the fake engine is the fp32 ONNX: parity is exact
    assert rec["runtime_version"] == "0.0+fake-for-tests" and rec["model_file"] == "model.engine"
    assert rec["engine_sha256"] == board_runner.sha256_file(str(folder / "model.engine"))
    assert ("named-tensor" if api == "10" else "bindings API") in rec["timed"]
    assert rec["board"]["on_target"] is False and "NOT the target board" in rec["measured"]


@pytest.mark.slow
def test_tensorrt_trtexec_log(bundles, tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(bundles("jetson-nano", "fp16"), folder)
    r = run_board(folder, "--trtexec-log", str(TRTEXEC_LOG))
    assert r.returncode == 0, r.stderr
    rec = result(folder)
    # the figures of the Latency line of the recorded log, and nothing this runner timed
    assert (rec["median_ms"], rec["p90_ms"], rec["mean_ms"], rec["min_ms"]) == (2.09033, 2.19141, 2.13318, 2.03662)
    assert rec["runs"] == 1391 and rec["runtime_version"] == "TensorRT 8.2.1 (trtexec)"
    assert "NOT timed by this runner" in rec["timed"] and "NVIDIA Tegra X1" in rec["timed"]
    assert rec["parity"]["status"] == "not measured" and "parity not measured" in r.stdout
    assert rec["board"]["on_target"] is False and "NOT the target board" in r.stdout


@pytest.mark.slow
def test_tensorrt_without_bindings_uses_trtexec(bundles, tmp_path):
    """No tensorrt module: the runner times the engine with trtexec (here a script printing the recorded log)."""
    folder = tmp_path / "b"
    shutil.copytree(bundles("jetson-nano", "fp16"), folder)
    (folder / "model.engine").write_bytes(b"an engine built on the board")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\ncat "{TRTEXEC_LOG}"\n')
    fake.chmod(0o755)
    r = run_board(folder, "--seconds", "2", path=bin_dir)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "args").read_text()
    assert f"--loadEngine={folder / 'model.engine'}" in args and "--percentile=90" in args and "--duration=2" in args
    rec = result(folder)
    assert rec["median_ms"] == 2.09033 and rec["timed"].startswith("trtexec's own protocol")
    assert rec["engine_sha256"] == board_runner.sha256_file(str(folder / "model.engine"))
    assert rec["parity"]["status"] == "not measured" and "python3-libnvinfer" in rec["parity"]["why"]


def test_parse_trtexec_variants():
    text = TRTEXEC_LOG.read_text().replace("percentile(90%)", "percentile(99%)")  # trtexec 8.2's default
    stats = board_runner.parse_trtexec(text)
    assert stats["p90_ms"] is None and "--percentile=90" in stats["p90_note"] and stats["median_ms"] == 2.09033
    with pytest.raises(board_runner.BundleError, match="no '\\[I\\] Latency"):
        board_runner.parse_trtexec("[I] GPU Compute Time: min = 1 ms, max = 2 ms, mean = 1 ms, median = 1 ms")


# ---------------------------------------------------------------- verification and the tar
@pytest.mark.slow
def test_changed_or_missing_file_stops_the_runner(bundles, tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(bundles("onnx", "fp32"), folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-1] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    r = run_board(folder, *QUICK)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "model.onnx does not match its sha256 in SHA256SUMS" in r.stderr
    shutil.copy(bundles("onnx", "fp32") / "model.onnx", folder)
    (folder / FACES_FILE).unlink()
    with pytest.raises(board_runner.BundleError, match=f"{FACES_FILE} is missing"):
        board_runner.verify_bundle(str(folder))
    assert not list(folder.glob("onnx-fp32.json"))


@pytest.mark.slow
def test_bundle_contents_and_tar(bundles, tmp_path):
    src = bundles("jetson-nano", "fp16")
    folder = tmp_path / "jetson-nano-fp16"
    shutil.copytree(src, folder)
    man = json.loads((folder / "manifest.json").read_text())
    assert {RUNNER_FILE, CONFIG_FILE, FACES_FILE, "BOARD.md", SUMS_FILE} <= set(man["bundle"]["files"])
    assert man["bundle"]["board_python_min"] == "3.6"
    summed = {line.split("  ", 1)[1] for line in (folder / SUMS_FILE).read_text().splitlines()}
    assert summed == set(man["artifact_files"]) - {"manifest.json", SUMS_FILE}
    faces = np.load(folder / FACES_FILE)
    assert faces["images"].dtype == np.uint8 and faces["images"].shape[1:] == (112, 112, 3)
    assert faces["embeddings"].shape == (len(faces["images"]), 128)
    board = (folder / "BOARD.md").read_text()
    assert "python3 build_engine.py model.onnx model.engine --precision fp16" in board and "run_on_board.py" in board
    tar = write_tar(folder)
    assert tar == tar_path(folder) and tar.parent == folder.parent
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        check_tar_out(folder, overwrite=False)
    check_tar_out(folder, overwrite=True)  # our own tar may be replaced
    with tarfile.open(tar) as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    assert board_runner.verify_bundle(str(tmp_path / "unpacked" / folder.name)) == len(summed)


def test_foreign_tar_is_never_replaced(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (tmp_path / "mine.txt").write_text("user data")
    with tarfile.open(tar_path(folder), "w:gz") as tf:
        tf.add(tmp_path / "mine.txt", arcname="mine.txt")
    with pytest.raises(UserError, match="is not a bundle that compress wrote"):
        check_tar_out(folder, overwrite=True)


@pytest.mark.slow
def test_export_artifact_writes_the_tar(tmp_path):
    from compress.export.folders import export_artifact

    out = tmp_path / "zoo-onnx"
    m = export_artifact("zoo:table3", "onnx", out=out, n_parity=8, progress=False, bundle=True)
    assert Path(m["tar"]) == tar_path(out) and tarfile.is_tarfile(m["tar"])
    other = tmp_path / "other"
    tar_path(other).write_bytes(b"a file of the user's")
    with pytest.raises(UserError, match="other.tar.gz already exists; pass --overwrite"):
        export_artifact("zoo:table3", "onnx", out=other, n_parity=8, progress=False, bundle=True)
    assert not other.exists() and tar_path(other).read_bytes() == b"a file of the user's"


# ---------------------------------------------------------------- the runner's own pieces
class FakeClock:
    """A clock that advances only when the timed call runs, by the next of the given durations."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, iter(durations)

    def __call__(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += next(self.durations)


@pytest.mark.parametrize("drift", [0.0, 0.05])  # settles / never settles (stops at max_seconds)
def test_runner_timing_matches_compress_bench(monkeypatch, drift):
    from compress.bench import timing

    rng = np.random.default_rng(1)
    durations = [1e-3 * (1 + drift * i) * rng.lognormal(0, 0.2) for i in range(5000)]
    kw = dict(warmup=3, min_runs=20, min_seconds=0.05, max_seconds=0.4)
    a = FakeClock(durations)
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=a))
    ours = timing.measure(a.call, **kw)
    b = FakeClock(durations)
    theirs = board_runner.measure(b.call, clock=b, **kw)
    assert theirs == ours
    assert ours["stable"] is (drift == 0.0) and ours["runs"] >= 20


def test_runner_cosine_matches_parity():
    from compress.export.parity import cosine_stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 128))
    b = a + rng.normal(scale=0.1, size=a.shape)
    ref = cosine_stats(a, b)
    assert board_runner.cosine_stats(a, b) == {k: ref[k] for k in ("cosine_mean", "cosine_min")}


def test_runner_imports_only_the_standard_library_numpy_and_runtimes():
    import ast

    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "openvino", "tensorrt", "pycuda",
                                              "ai_edge_litert", "tflite_runtime", "cv2"}  # cv2: --frame's detector
    src = Path(board_runner.__file__).read_text()
    names = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need the compress package"
            names.add(node.module.split(".")[0])
    names |= {m.split(".")[0] for m in __import__("re").findall(r'\("([\w.]+)", "[\w-]+"\)', src)}
    assert names <= allowed, names - allowed


# ---------------------------------------------------------------- the board's Python
def vermin(paths: list[Path], python: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vermin")
    return subprocess.run([str(exe), f"-t={python}-", "--no-tips", "--eval-annotations", "--violations",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_bundle_scripts_run_on_each_boards_python():
    """Every Python file a bundle carries, against the lowest Python its target board runs."""
    for t in list_targets():
        assert t.board_python and t.board_os and t.board_runtime, f"{t.name}: board software not stated"
        files = list(board_scripts(t).values())
        r = vermin(files, t.board_python_min)
        assert r.returncode == 0, f"{t.name} (Python {t.board_python_min}): {r.stdout}"
    assert load_target("jetson-nano").board_python_min == "3.6"
    assert load_target("jetson-orin-nano").board_python_min == "3.8"


@pytest.mark.slow
def test_exported_bundle_files_pass_vermin(bundles):
    folder = bundles("jetson-nano", "fp16")
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} == {"build_engine.py", RUNNER_FILE}
    r = vermin(files, "3.6")
    assert r.returncode == 0, r.stdout


def test_vermin_catches_newer_syntax(tmp_path):
    """The check above can fail: the syntax build_engine.py once had needs 3.7, and a walrus needs 3.8."""
    f = tmp_path / "new.py"
    f.write_text("from __future__ import annotations\n\nif (n := 3):\n    print(n)\n")
    r = vermin([f], "3.6")
    assert r.returncode != 0 and "3.8" in r.stdout


BASE = {"name": "b", "description": "d", "runtime": "onnxruntime", "runtime_version": "v", "precisions": ["fp32"],
        "default_precision": "fp32", "input_layout": "NCHW", "batch": 1}


@pytest.mark.parametrize("field, value, message", [
    ("board_python", ["2.7"], r"board_python\[0\] must be a Python version"),
    ("board_python", ["3.5"], r"N >= 6"),
    ("board_python", "3.6", "must be a non-empty list of strings"),
    ("board_os", [], "must be a non-empty list"),
    ("board_model", 3, "board_model must be a string"),
])
def test_board_fields_are_validated(field, value, message):
    with pytest.raises(UserError, match=message):
        parse_target({**BASE, field: value}, "b.toml")
    t = parse_target({**BASE, "board_python": ["3.10", "3.8"], "board_model": "X"}, "b.toml")
    assert t.board_python_min == "3.8" and t.board_model == "X"


# ---------------------------------------------------------------- tampering (issue 28 #3)
def _resum(folder: Path, drop: str | None = None, add: list[str] = ()) -> None:
    """Rewrite SHA256SUMS as an attacker would: consistent with the files, leaving out `drop`, adding `add`."""
    from compress.artifacts import file_sha256

    lines = [ln for ln in (folder / SUMS_FILE).read_text().splitlines() if not ln.endswith("  " + str(drop))]
    lines = [f"{file_sha256(folder / ln.split('  ', 1)[1])}  {ln.split('  ', 1)[1]}" for ln in lines]
    (folder / SUMS_FILE).write_text("".join(f"{ln}\n" for ln in lines + list(add)))


PLANT = "import pathlib; pathlib.Path({!r}).write_text('planted code ran')\n"


@pytest.mark.parametrize("module", ["hashlib.py", "numpy.py", "json.py", "argparse.py", "numpy/__init__.py"])
def test_planted_module_never_runs(bundles, tmp_path, module):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    flag = tmp_path / "ran"
    (folder / module).parent.mkdir(exist_ok=True)
    (folder / module).write_text(PLANT.format(str(flag)))
    r = run_board(folder, *QUICK)
    assert not flag.exists(), "a module planted in the bundle was imported"
    assert r.returncode == 2 and f"{module} is in the bundle but not in SHA256SUMS" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "verified" not in r.stdout


def test_planted_module_listed_in_sums_still_never_runs(bundles, tmp_path):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    flag = tmp_path / "ran"
    (folder / "hashlib.py").write_text(PLANT.format(str(flag)))
    _resum(folder, add=[])
    from compress.artifacts import file_sha256
    with open(folder / SUMS_FILE, "a") as f:
        f.write(f"{file_sha256(folder / 'hashlib.py')}  hashlib.py\n")
    r = run_board(folder, *QUICK)
    assert not flag.exists(), "the runner imported from its own folder"
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("tamper", ["model_line_deleted", "outside_relative", "outside_absolute", "malformed",
                                    "config_model_outside", "config_unreadable", "extra_file"])
def test_tampered_bundle_is_refused_in_one_line(bundles, tmp_path, tamper):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(b"x")
    if tamper == "model_line_deleted":  # a changed model whose SHA256SUMS line was deleted
        data = bytearray((folder / "model.onnx").read_bytes())
        data[-1] ^= 1
        (folder / "model.onnx").write_bytes(bytes(data))
        _resum(folder, drop="model.onnx")
        want = "model.onnx"
    elif tamper == "outside_relative":
        _resum(folder, add=[f"{'0' * 64}  ../victim.onnx"])
        want = "outside the bundle"
    elif tamper == "outside_absolute":
        _resum(folder, add=[f"{'0' * 64}  {victim}"])
        want = "outside the bundle"
    elif tamper == "malformed":
        _resum(folder, add=["not a sums line"])
        want = "malformed"
    elif tamper == "config_model_outside":
        cfg = json.loads((folder / CONFIG_FILE).read_text())
        cfg["model_file"] = "../victim.onnx"
        (folder / CONFIG_FILE).write_text(json.dumps(cfg))
        _resum(folder)
        want = "outside the bundle"
    elif tamper == "config_unreadable":
        (folder / CONFIG_FILE).write_text("{not json")
        _resum(folder)
        want = "bundle.json is unreadable"
    else:
        (folder / "notes.txt").write_text("x")
        want = "notes.txt is in the bundle but not in SHA256SUMS"
    r = run_board(folder, *QUICK)
    assert r.returncode == 2 and want in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (folder / "onnx-fp32.json").exists()


def test_runner_result_and_engine_may_be_added(bundles, tmp_path):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    (folder / "onnx-fp32.json").write_text("{}")  # an earlier run's result
    assert board_runner.verify_bundle(str(folder), ["onnx-fp32.json"]) == len(
        (folder / SUMS_FILE).read_text().splitlines())
    board_runner.check_model(str(folder), cfg)


def test_runner_out_never_replaces_a_users_file(bundles, tmp_path):
    folder = _copy(bundles("onnx", "fp32"), tmp_path)
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    r = run_board(folder, *QUICK, "--out", str(mine), "--overwrite")
    assert r.returncode == 2 and "not written by run_on_board.py" in r.stderr and mine.read_text() == '{"my": "notes"}'
    r = run_board(folder, *QUICK, "--out", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr


@pytest.mark.parametrize("extra", ["exp/mine.txt", "mine.txt", "exp/../mine.txt"])
def test_tar_with_other_files_is_never_replaced(tmp_path, extra):
    """A tar that looks like a bundle (manifest, bundle.json) but also holds a user's file (issue 28)."""
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text("{}")
    (folder / "manifest.json").write_text(json.dumps({"kind": "export", "artifact_files": [CONFIG_FILE,
                                                                                           "manifest.json"]}))
    (tmp_path / "mine.txt").write_text("user data")
    with tarfile.open(tar_path(folder), "w:gz") as tf:
        tf.add(folder / CONFIG_FILE, arcname=f"exp/{CONFIG_FILE}")
        tf.add(folder / "manifest.json", arcname="exp/manifest.json")
        tf.add(tmp_path / "mine.txt", arcname=extra)
    with pytest.raises(UserError, match="is not a bundle that compress wrote"):
        check_tar_out(folder, overwrite=True)
    (folder / "mine.txt").unlink(missing_ok=True)
    write_tar(folder)  # the same folder, as compress packs it, may be replaced
    check_tar_out(folder, overwrite=True)
