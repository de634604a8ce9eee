"""Run an export bundle on the board: verify it, time the model, check its numerics, write the result.

This file is copied verbatim into every export folder as ``run_on_board.py``. It runs on the board's own
Python (3.6 on a Jetson Nano with JetPack 4.6) with only the standard library, numpy and the board's runtime:
TensorRT (Python bindings, or trtexec), LiteRT (ai_edge_litert / tflite_runtime), OpenVINO or onnxruntime.
So it imports nothing from the compress package, and uses no syntax newer than Python 3.6 (the tests check it
with vermin)::

    python3 run_on_board.py                     # verify SHA256SUMS, time, parity -> <target>-<precision>.json
    python3 run_on_board.py --frame [PHOTO]     # also the robot's whole frame: detect, align, embed, match

The JSON it writes is a "compress.bench/1" record: copy it into RUN/board/ and `compress report --run RUN`
shows it as "measured on board", with the on-board parity (and, with --frame, the per-stage frame times).
--frame also needs OpenCV (any 4.x: resize, warpAffine) and runs the YuNet detector the bundle carries (with
MTCNN's ONet for its points) in onnxruntime, decoded in numpy as the host does, or else in OpenCV 4.8+'s
cv2.FaceDetectorYN (--detector-runtime).
BOARD.md in the bundle has the exact commands.

Exit codes: 0 done; 2 a problem the user can fix, said in one line on stderr (a missing, changed or unlisted
file, a runtime or OpenCV that is not importable, an unreadable photo, a photo without exactly one face).
"""

import os
import sys

if __name__ == "__main__" and not sys.flags.isolated and sys.executable:
    # Python puts this script's folder first on sys.path, so a file planted in the bundle (hashlib.py, numpy.py)
    # would be imported instead of the real module, and run before any check. Run again isolated (-I: neither
    # the script's folder nor the working directory nor user site-packages on sys.path) before importing more.
    os.execv(sys.executable, [sys.executable, "-I", os.path.abspath(__file__)] + sys.argv[1:])

_HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    # -I also drops PYTHONPATH, where a board's runtime may live (OpenVINO's setupvars.sh puts it there): keep
    # its entries, never this folder or the working directory.
    _keep = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and os.path.abspath(p) not in (_HERE, os.getcwd())]
    sys.path[:] = _keep + [p for p in sys.path if p and os.path.abspath(p) not in (_HERE, os.getcwd())]

import argparse  # noqa: E402  (after the isolation above, on purpose)
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402

BENCH_FORMAT = "compress.bench/1"
CONFIG = "bundle.json"
SUMS = "SHA256SUMS"
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")


class BundleError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


# ---------------------------------------------------------------- bundle
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_name(name: str, what: str) -> str:
    """A file name the bundle gives (SHA256SUMS line, bundle.json field), checked to stay inside the bundle."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or any(
            ord(c) < 32 for c in name):
        raise BundleError("{} names a file outside the bundle ({!r}): the bundle was tampered with; copy the "
                          "export folder again".format(what, name))
    return name


def _present(folder: str) -> List[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/") for f in files]
    return out


def verify_bundle(folder: str, may_add: Optional[List[str]] = None) -> int:
    """Check every file listed in SHA256SUMS, and that no other file is in the bundle (a planted file) except
    manifest.json, SHA256SUMS and `may_add` (what the board writes: the engine, the result JSON); return how
    many were checked. A missing, changed, unlisted or outside name is a BundleError."""
    sums = os.path.join(folder, SUMS)
    if not os.path.isfile(sums):
        raise BundleError("{} has no {}: copy the whole export folder (or its .tar.gz) to the board".format(
            folder, SUMS))
    listed = set()
    with open(sums) as f:
        for line in f:
            if not line.strip():
                continue
            digest, sep, name = line.rstrip("\n").partition("  ")
            if not sep or not re.match(r"^[0-9a-f]{64}$", digest):
                raise BundleError("{} has a malformed line ({!r}): copy the export folder again".format(
                    SUMS, line[:80]))
            path = os.path.join(folder, bundle_name(name, SUMS))
            if not os.path.isfile(path):
                raise BundleError("{} is missing from the bundle: copy the export folder again".format(name))
            if sha256_file(path) != digest:
                raise BundleError("{} does not match its sha256 in {}: it changed or was copied incompletely; "
                                  "copy the export folder again".format(name, SUMS))
            listed.add(name)
    extra = sorted(set(_present(folder)) - listed - {SUMS, "manifest.json"} - set(may_add or []))
    if extra:
        raise BundleError("{} is in the bundle but not in {} (a file that was not exported, and could be run by "
                          "this script): remove it or copy the export folder again".format(extra[0], SUMS))
    return len(listed)


def check_model(folder: str, cfg: Dict[str, Any]) -> None:
    """The model file named by bundle.json is inside the bundle and has bundle.json's sha256 (a model whose
    SHA256SUMS line was deleted must not be timed as the export)."""
    for name in [cfg["model_file"], cfg.get("engine_file"), cfg["parity"]["file"]]:
        if name is not None:
            bundle_name(str(name), "a file name in {}".format(CONFIG))
    path = os.path.join(folder, cfg["model_file"])
    if not os.path.isfile(path) or sha256_file(path) != cfg["model_sha256"]:
        raise BundleError("{} does not match the sha256 in {} ({}...): copy the export folder again".format(
            cfg["model_file"], CONFIG, str(cfg["model_sha256"])[:12]))


def read_config(folder: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(folder, CONFIG)) as f:
            cfg = json.load(f)
        for key in ("target", "precision", "model_file", "model_sha256", "parity", "board", "input"):
            cfg[key]  # noqa: B018  (each must be there)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BundleError("{} is unreadable or incomplete ({}: {}): copy the export folder again".format(
            CONFIG, type(e).__name__, e))
    return cfg


# ---------------------------------------------------------------- board identity
def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except (IOError, OSError):
        return ""


def _command(args: List[str], timeout: float = 10.0) -> str:
    try:
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           universal_newlines=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def _os_release() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def _l4t() -> str:
    """'L4T R32.7.1' from /etc/nv_tegra_release ("# R32 (release), REVISION: 7.1, ...") on a Jetson."""
    m = re.match(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", _read("/etc/nv_tegra_release"))
    return "L4T R{}.{}".format(m.group(1), m.group(2)) if m else ""


def _cpu_name() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _power_mode() -> str:
    """nvpmodel's mode on a Jetson, else the CPU frequency governor, where readable."""
    out = _command(["nvpmodel", "-q"])
    m = re.search(r"NV Power Mode:\s*(\S+)", out)
    if m:
        return "nvpmodel {}".format(m.group(1))
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    if gov:
        return "cpu governor {}{}".format(gov, ", max {:.2f} GHz".format(int(khz) / 1e6) if khz.isdigit() else "")
    return "not readable"


def board_identity(expected: Optional[str]) -> Dict[str, Any]:
    """What this machine is, from the files the board's OS provides, and whether it is the target board
    (`expected`: a substring of /proc/device-tree/model or, on x86, of the DMI product name)."""
    model = _read("/proc/device-tree/model")
    dmi = _read("/sys/class/dmi/id/product_name")
    jetpack = _command(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    cpu = _cpu_name()
    ident = {"model": model or dmi or "{} (no /proc/device-tree/model or DMI product name)".format(cpu), "cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
             "os": _os_release(), "kernel": platform.release(), "l4t": _l4t(),
             "jetpack": "nvidia-jetpack {}".format(jetpack) if jetpack else "",
             "power_mode": _power_mode(), "python": platform.python_version(), "numpy": np.__version__}
    if expected:
        ident["on_target"] = expected.lower() in (model + " " + dmi).lower()
        ident["expected_model"] = expected
    else:
        ident["on_target"] = None
    return ident


def describe(ident: Dict[str, Any]) -> str:
    power = ident["power_mode"] if ident["power_mode"] != "not readable" else ""
    parts = [ident["model"], ident["l4t"], ident["jetpack"], ident["os"], power,
             "{} cores {}".format(ident["cores"], ident["machine"])]
    return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------- timing
# The same protocol as compress/bench/timing.py (warm-up, then timed calls until the medians of the two halves
# agree), re-implemented here because this file must run without the compress package; tests/test_bundle.py
# checks that both give the same statistics on the same sequence of call times.
def half_drift(times: List[float]) -> float:
    """Relative difference of the medians of the first and second half of the runs."""
    h = len(times) // 2
    if h < 2:
        return float("inf")
    a, b = float(np.median(times[:h])), float(np.median(times[h:]))
    return abs(a - b) / max(min(a, b), 1e-12)


def summarize(times: List[float], warmup: int, seconds: float, stable_within: float = 0.03) -> Dict[str, Any]:
    ms = np.asarray(times) * 1e3
    drift = half_drift(times)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "runs": len(ms), "warmup": warmup, "seconds": round(float(seconds), 3),
            "half_drift": round(drift, 4), "stable": drift <= stable_within}


def measure(call: Callable[[], Any], warmup: int = 20, min_runs: int = 100, min_seconds: float = 3.0,
            max_seconds: float = 30.0, stable_within: float = 0.03,
            clock: Callable[[], float] = time.perf_counter) -> Dict[str, Any]:
    """Time `call()`: median/p90/mean/min in ms, runs, seconds, and whether the median settled."""
    for _ in range(warmup):
        call()
    times = []  # type: List[float]
    start = clock()
    while True:
        t0 = clock()
        call()
        times.append(clock() - t0)
        elapsed = clock() - start
        if len(times) >= min_runs and elapsed >= min_seconds:
            if half_drift(times) <= stable_within or elapsed >= max_seconds:
                break
    return summarize(times, warmup, clock() - start, stable_within)


def cosine_stats(reference: np.ndarray, got: np.ndarray) -> Dict[str, float]:
    a = np.asarray(reference, np.float64)
    b = np.asarray(got, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = np.sum(a * b, axis=1)
    return {"cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6)}


# ---------------------------------------------------------------- input preparation
def prepare(images: np.ndarray, cfg: Dict[str, Any]) -> np.ndarray:
    """uint8 RGB faces [N,H,W,3] -> the model's float input (normalised, NCHW or NHWC) as in the export."""
    mean = np.array(cfg["input"]["mean"], np.float32)
    std = np.array(cfg["input"]["std"], np.float32)
    x = (images.astype(np.float32) / 255.0 - mean) / std
    if cfg["input"]["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, np.float32)


def _version(module: Any, dist: str) -> str:
    v = getattr(module, "__version__", "")
    if v:
        return str(v)
    try:
        from importlib import metadata  # novm: Python 3.8+; older boards fall through to "unknown"
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - any failure means the version is unknown
        return "unknown"


# ---------------------------------------------------------------- runtimes
class Backend(object):
    """One loaded model: run(x) on a prepared [1,...] input -> [1,D] embedding."""

    runtime = ""
    version = ""
    how = ""

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def invoker(self, x: np.ndarray) -> Callable[[], Any]:
        return lambda: self.run(x)


def ort_session(path: str, threads: int) -> Any:
    """An onnxruntime CPU session with `threads` intra-op threads (0: the runtime's default): the embedding model's,
    and with --frame the detector's."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int) -> None:
        import onnxruntime as ort
        self.session = ort_session(path, threads)
        self.name = self.session.get_inputs()[0].name
        self.ort, self.version = ort, ort.__version__
        self.how = ("onnxruntime CPUExecutionProvider, run_with_iobinding() on input and output bound once "
                    "(as compress bench)")

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x})[0]

    def invoker(self, x: np.ndarray) -> Callable[[], Any]:
        y = self.run(x)
        io = self.session.io_binding()
        io.bind_cpu_input(self.name, x)
        io.bind_ortvalue_output(self.session.get_outputs()[0].name, self.ort.OrtValue.ortvalue_from_numpy(
            np.empty_like(y)))
        return lambda: self.session.run_with_iobinding(io)


class OpenVinoBackend(Backend):
    runtime = "openvino"

    def __init__(self, path: str, threads: int) -> None:
        try:
            import openvino as ov
            core = ov.Core()
        except (ImportError, AttributeError):  # OpenVINO 2022.x: the API lives in openvino.runtime
            import openvino.runtime as ov
            core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        self.compiled = core.compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.ov, self.version = ov, ov.get_version()
        self.how = "OpenVINO CPU plugin, InferRequest.infer() with the input tensor set once (as compress bench)"

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)

    def invoker(self, x: np.ndarray) -> Callable[[], Any]:
        self.request.set_input_tensor(self.ov.Tensor(np.ascontiguousarray(x)))
        return self.request.infer


def _tflite_interpreter() -> Any:
    """(Interpreter class, package, version) from whichever TFLite runtime the board has."""
    for module, dist in (("ai_edge_litert.interpreter", "ai-edge-litert"),
                         ("tflite_runtime.interpreter", "tflite-runtime")):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        pkg = sys.modules[module.split(".")[0]]
        return mod.Interpreter, dist, _version(pkg, dist)
    raise ImportError("ai_edge_litert or tflite_runtime")


class LiteRtBackend(Backend):
    runtime = "litert"

    def __init__(self, path: str, threads: int) -> None:
        interpreter, dist, self.version = _tflite_interpreter()
        self.it = interpreter(model_path=path, num_threads=threads or None)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        self.how = "{} Interpreter.invoke() with the input tensor set once (as compress bench)".format(dist)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.inp["dtype"])
        if dtype == np.float32:
            return x
        scale, zero = self.inp["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.inp["index"], self.quantize(x))
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])
        if np.dtype(self.out["dtype"]) != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32).reshape(1, -1)

    def invoker(self, x: np.ndarray) -> Callable[[], Any]:
        self.it.set_tensor(self.inp["index"], self.quantize(x))
        return self.it.invoke


class _PyCudaMemory(object):
    """Device buffers through pycuda, when the board has it installed."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401 - creates the CUDA context
        import pycuda.driver as cuda
        self.cuda = cuda
        self.keep = []  # type: List[Any]

    def alloc(self, nbytes: int) -> int:
        buf = self.cuda.mem_alloc(nbytes)
        self.keep.append(buf)
        return int(buf)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod(ptr, host)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh(host, ptr)

    def sync(self) -> None:
        self.cuda.Context.synchronize()


class _CudartMemory(object):
    """Device buffers through the CUDA runtime library with ctypes: JetPack always ships libcudart, while
    pycuda has to be built on the board."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util
        names = [ctypes.util.find_library("cudart") or "", "libcudart.so", "/usr/local/cuda/lib64/libcudart.so"]
        lib = None
        for name in [n for n in names if n]:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise ImportError("libcudart.so (CUDA runtime)")
        self.ct, self.lib = ctypes, lib

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            raise RuntimeError("CUDA {} failed with error {}".format(what, err))

    def alloc(self, nbytes: int) -> int:
        ptr = self.ct.c_void_p()
        self._check(self.lib.cudaMalloc(self.ct.byref(ptr), self.ct.c_size_t(nbytes)), "cudaMalloc")
        return int(ptr.value)

    def htod(self, ptr: int, host: np.ndarray) -> None:  # kind 1 = cudaMemcpyHostToDevice
        self._check(self.lib.cudaMemcpy(self.ct.c_void_p(ptr), self.ct.c_void_p(host.ctypes.data),
                                        self.ct.c_size_t(host.nbytes), 1), "cudaMemcpy")

    def dtoh(self, host: np.ndarray, ptr: int) -> None:  # kind 2 = cudaMemcpyDeviceToHost
        self._check(self.lib.cudaMemcpy(self.ct.c_void_p(host.ctypes.data), self.ct.c_void_p(ptr),
                                        self.ct.c_size_t(host.nbytes), 2), "cudaMemcpy")

    def sync(self) -> None:
        self._check(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


def cuda_memory() -> Any:
    try:
        return _PyCudaMemory()
    except ImportError:
        return _CudartMemory()


class TensorRtBackend(Backend):
    """A serialized engine (built on this board by build_engine.py) through the TensorRT Python bindings:
    the bindings API of TensorRT 8.x, or the named-tensor API of TensorRT 8.5+ / 10."""

    runtime = "tensorrt"

    def __init__(self, engine_path: str) -> None:
        import tensorrt as trt
        self.trt = trt
        self.version = trt.__version__
        logger = trt.Logger(trt.Logger.WARNING)
        with open(engine_path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise BundleError("TensorRT could not load {}: build it on this board with build_engine.py "
                              "(an engine only runs with the TensorRT version and GPU it was built on)".format(
                                  engine_path))
        self.context = self.engine.create_execution_context()
        self.mem = cuda_memory()
        self.v3 = hasattr(self.engine, "num_io_tensors")
        self.io = self._io()
        self.ptrs = [self.mem.alloc(host.nbytes) for _, _, host in self.io]
        if self.v3:
            for (name, _, _), ptr in zip(self.io, self.ptrs):
                self.context.set_tensor_address(name, ptr)
        self.how = "TensorRT Python bindings ({} API), {} device buffers; timed: copy in, execute, copy out".format(
            "named-tensor" if self.v3 else "bindings", type(self.mem).__name__.strip("_").replace("Memory", ""))

    def _io(self) -> List[Any]:
        """[(name, is_input, host buffer)] in engine order."""
        trt, e, out = self.trt, self.engine, []
        if self.v3:
            for i in range(e.num_io_tensors):
                name = e.get_tensor_name(i)
                is_in = e.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                out.append((name, is_in, np.zeros(tuple(e.get_tensor_shape(name)), trt.nptype(e.get_tensor_dtype(name)))))
        else:
            for i in range(e.num_bindings):
                out.append((e.get_binding_name(i), e.binding_is_input(i),
                            np.zeros(tuple(e.get_binding_shape(i)), trt.nptype(e.get_binding_dtype(i)))))
        if sum(1 for _, is_in, _ in out if is_in) != 1:
            raise BundleError("the engine must have exactly one input (the face image); rebuild it from model.onnx")
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        self.invoker(x)()
        host = [h for _, is_in, h in self.io if not is_in][0]
        return np.asarray(host, np.float32).reshape(1, -1).copy()

    def invoker(self, x: np.ndarray) -> Callable[[], Any]:
        i_in = [i for i, (_, is_in, _) in enumerate(self.io) if is_in][0]
        np.copyto(self.io[i_in][2], x.reshape(self.io[i_in][2].shape).astype(self.io[i_in][2].dtype))
        outs = [(h, p) for (_, is_in, h), p in zip(self.io, self.ptrs) if not is_in]

        def call() -> None:
            self.mem.htod(self.ptrs[i_in], self.io[i_in][2])
            if self.v3:
                self.context.execute_async_v3(0)  # the default stream; synchronised below
            else:
                self.context.execute_v2(self.ptrs)
            for host, ptr in outs:
                self.mem.dtoh(host, ptr)
            self.mem.sync()
        return call


# ---------------------------------------------------------------- the robot's frame (--frame)
# The host's frame path (compress/bench/frame.py, identify/pipeline.py run_frame, data/align.py) re-implemented
# with numpy and OpenCV only, every setting read from bundle.json's "frame"; tests/test_board_frame.py checks the
# geometry against the package's.
CV2_INSTALL = ("pip install opencv-python-headless, or the board's own OpenCV (with onnxruntime any OpenCV 4 "
               "serves, JetPack 4.6's 4.1 too; --detector-runtime opencv needs 4.8+ for cv2.FaceDetectorYN)")
YN_INSTALL = ("pip install opencv-python-headless (4.8+; none is built for Python 3.6, JetPack 4.6's), or "
              "--detector-runtime onnxruntime")
ORT_INSTALL = "pip3 install onnxruntime (on a Jetson: NVIDIA's onnxruntime-gpu wheel for its JetPack)"
DETECTOR_RUNTIMES = ("auto", "onnxruntime", "opencv")


def import_cv2() -> Any:
    """OpenCV (resize, warpAffine; FaceDetectorYN too with --detector-runtime opencv), or a BundleError naming how
    to install it."""
    try:
        import cv2
    except ImportError as e:
        raise BundleError("--frame needs OpenCV (resize, warp) and it is not importable here ({}): {}".format(
            e, CV2_INSTALL))
    return cv2


def detector_runtime(cv2: Any, wanted: str) -> str:
    """What runs YuNet and ONet for --frame: "onnxruntime" (YuNet decoded in numpy, auto's first choice) or "opencv"
    (cv2.FaceDetectorYN, OpenCV 4.8+, and ONet through cv2.dnn); a BundleError when the one wanted is missing."""
    if wanted != "opencv" and _importable("onnxruntime"):
        return "onnxruntime"
    if wanted != "onnxruntime" and hasattr(cv2, "FaceDetectorYN"):
        return "opencv"
    if wanted == "opencv":
        raise BundleError("OpenCV {} has no FaceDetectorYN (--detector-runtime opencv needs 4.8+): {}".format(
            cv2.__version__, YN_INSTALL))
    if wanted == "onnxruntime":
        raise BundleError("--detector-runtime onnxruntime: onnxruntime is not importable here: {}".format(
            ORT_INSTALL))
    raise BundleError("--frame's face detector needs onnxruntime or OpenCV 4.8+'s FaceDetectorYN, and neither is "
                      "here (OpenCV {}): {}; or pip install opencv-python-headless (4.8+)".format(cv2.__version__,
                                                                                                ORT_INSTALL))


def frame_config(folder: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """bundle.json's "frame", its detector file inside the bundle with the sha256 it names."""
    fr = cfg.get("frame")
    if not isinstance(fr, dict) or not isinstance(fr.get("detector"), dict):
        raise BundleError("this bundle carries no face detector (no \"frame\" in {}): export it again with a newer "
                          "compress to time the whole frame".format(CONFIG))
    for d in (fr["detector"], fr["detector"].get("landmarks")):
        if d is None:
            continue
        name = bundle_name(str(d.get("file")), "a file name in {}".format(CONFIG))
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or sha256_file(path) != d.get("sha256"):
            raise BundleError("{} does not match the sha256 in {}: copy the export folder again".format(name, CONFIG))
    return fr


# YuNet through onnxruntime, decoded in numpy as cv2.FaceDetectorYN decodes it: the host's default
# (compress/data/yunet_onnx.py), re-implemented; tests/test_board_frame.py checks both give the same rows. The graph
# takes BGR floats, unnormalised, zero-padded right and bottom to a multiple of 32, and gives per stride and grid
# cell a class and an objectness score, a box (centre offset, log size, in cells) and five points (offsets).
YUNET_STRIDES = (8, 16, 32)


def yunet_pad_hw(height: int, width: int, stride: int = YUNET_STRIDES[-1]) -> Tuple[int, int]:
    """The (H, W) the graph runs at: each side rounded up to a multiple of the deepest stride."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def yunet_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, top_k: int) -> np.ndarray:
    """Greedy non-maximum suppression over (N, 4) x, y, w, h boxes; indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    keep = []  # type: List[int]
    while order.size and len(keep) < top_k:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def yunet_decode(outputs: Dict[str, np.ndarray], pad_h: int, pad_w: int, score: float, iou: float,
                 top_k: int) -> np.ndarray:
    """The graph's outputs to FaceDetectorYN's rows: (N, 15) x, y, w, h, five (x, y) points, sqrt(cls * obj)."""
    rows = []
    for s in YUNET_STRIDES:
        cols, nrow = pad_w // s, pad_h // s
        cls = np.clip(outputs["cls_{}".format(s)].reshape(-1), 0, 1)
        obj = np.clip(outputs["obj_{}".format(s)].reshape(-1), 0, 1)
        if cols * nrow != cls.size:
            raise BundleError("YuNet's stride-{} output does not match its padded {}x{} input: the detector file "
                              "is not the YuNet the bundle was made with; copy the export folder again".format(
                                  s, pad_w, pad_h))
        conf = np.sqrt(cls * obj)
        idx = np.nonzero(conf >= score)[0]
        if not idx.size:
            continue
        c, r = (idx % cols).astype(np.float32), (idx // cols).astype(np.float32)
        box = outputs["bbox_{}".format(s)].reshape(-1, 4)[idx]
        kps = outputs["kps_{}".format(s)].reshape(-1, 10)[idx]
        cx, cy = (c + box[:, 0]) * s, (r + box[:, 1]) * s
        w, h = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
        pts = (kps.reshape(-1, 5, 2) + np.stack([c, r], 1)[:, None, :]) * s
        rows.append(np.concatenate([np.stack([cx - w / 2, cy - h / 2, w, h], 1), pts.reshape(-1, 10),
                                    conf[idx, None]], 1))
    if not rows:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(rows).astype(np.float32)
    return faces[yunet_nms(faces[:, :4], faces[:, 14], iou, top_k)]


class YunetOrt(object):
    """YuNet in an onnxruntime session; detect(bgr) gives FaceDetectorYN's rows."""

    def __init__(self, path: str, score: float, iou: float, top_k: int, threads: int) -> None:
        self.session = ort_session(path, threads)
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.score, self.iou, self.top_k = score, iou, top_k

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ph, pw = yunet_pad_hw(h, w)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(self.names, self.session.run(self.names, {self.input: x})))
        return yunet_decode(out, ph, pw, self.score, self.iou, self.top_k)


class YunetCv(object):
    """YuNet in OpenCV's cv2.FaceDetectorYN (4.8+); detect(bgr) gives its rows (None when no face)."""

    def __init__(self, cv2: Any, path: str, side: int, score: float, iou: float, top_k: int) -> None:
        try:
            self.net = cv2.FaceDetectorYN.create(path, "", (side, side), score, iou, top_k)
        except cv2.error as e:
            raise BundleError("OpenCV {} cannot load {} ({}): {}".format(
                cv2.__version__, os.path.basename(path), str(e).strip().splitlines()[-1], YN_INSTALL))
        self.size = (side, side)

    def detect(self, bgr: np.ndarray) -> Any:
        if self.size != (bgr.shape[1], bgr.shape[0]):
            self.size = (bgr.shape[1], bgr.shape[0])
            self.net.setInputSize(self.size)
        return self.net.detect(bgr)[1]


def onet_runner(cv2: Any, path: str, runtime: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """MTCNN's ONet as a function of its (N, 3, 48, 48) input to its (N, 10) points, in onnxruntime or cv2.dnn."""
    if runtime == "onnxruntime":
        session = ort_session(path, threads)
        name = session.get_inputs()[0].name
        return lambda x: session.run(["pts"], {name: x})[0]
    net = cv2.dnn.readNetFromONNX(path)

    def run(x: np.ndarray) -> np.ndarray:
        net.setInput(x)
        return net.forward("pts")
    return run


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 grown to squares around their centres, as MTCNN squares its boxes."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1, y1 = boxes[:, 0] + w * 0.5 - side * 0.5, boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], 1)


def onet_points(cv2: Any, run_onet: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, boxes: np.ndarray,
                lm: Dict[str, Any]) -> np.ndarray:
    """MTCNN's five points (N, 5, 2) for 0-based boxes in rgb: ONet (`run_onet`, from onet_runner) once on each
    squared box, cut with zero padding and area-resized to 48x48 (the host's compress.data.mtcnn.onet_landmarks)."""
    b = np.trunc(square_boxes(boxes.astype(np.float64) + 1)).astype(np.int64)  # MTCNN's boxes are 1-based
    size, (H, W) = int(lm["input"]), rgb.shape[:2]
    crops = np.zeros((len(b), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(b - 1):
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw <= 0 or bh <= 0:
            continue
        tmp = np.zeros((bh, bw, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, W - 1), min(y2, H - 1)
        if sx2 >= sx1 and sy2 >= sy1:
            tmp[sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = rgb[sy1:sy2 + 1, sx1:sx2 + 1]
        crops[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
    x = (crops.astype(np.float32) - float(lm["mean"])) * float(lm["scale"])
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    pts = np.asarray(run_onet(x), np.float64).reshape(len(b), 10)
    bw, bh = (b[:, 2] - b[:, 0] + 1)[:, None], (b[:, 3] - b[:, 1] + 1)[:, None]
    return np.stack([bw * pts[:, :5] + b[:, 0:1] - 1, bh * pts[:, 5:10] + b[:, 1:2] - 1], 2)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src (N,2) onto dst: the (2,3) matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    u, s, vt = np.linalg.svd(d0.T.dot(s0) / len(src))
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    r = u.dot(d).dot(vt)
    scale = (s * np.diag(d)).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r.dot(mu_s)
    return m


class FramePath(object):
    """detect -> align -> embed (flip) -> match on one RGB frame, as the host's run_frame. The detector (YuNet, and
    ONet for yunet-onet) runs in `runtime` (DETECTOR_RUNTIMES) with `threads` intra-op threads (0: its default)."""

    def __init__(self, cv2: Any, folder: str, fr: Dict[str, Any], backend: Backend, cfg: Dict[str, Any],
                 runtime: str = "auto", threads: int = 0) -> None:
        d = fr["detector"]
        self.cv2, self.fr, self.backend, self.cfg = cv2, fr, backend, cfg
        self.runtime = detector_runtime(cv2, runtime)
        score, iou, top_k = float(d["score_threshold"]), float(d["nms_threshold"]), int(d["top_k"])
        if self.runtime == "onnxruntime":
            import onnxruntime
            self.net = YunetOrt(os.path.join(folder, d["file"]), score, iou, top_k, threads)  # type: Any
            self.detect_how = "onnxruntime {} YuNet + numpy decode".format(onnxruntime.__version__)
        else:
            self.net = YunetCv(cv2, os.path.join(folder, d["file"]), int(fr["detect_max_side"]), score, iou, top_k)
            self.detect_how = "OpenCV {} cv2.FaceDetectorYN".format(cv2.__version__)
        self.onet = None
        if d.get("landmarks"):  # yunet-onet: MTCNN's output net places the five points
            self.onet = onet_runner(cv2, os.path.join(folder, d["landmarks"]["file"]), self.runtime, threads)
            self.detect_how += " + MTCNN ONet ({})".format("onnxruntime" if self.runtime == "onnxruntime" else
                                                            "OpenCV dnn")
        self.template = np.asarray(fr["template"], np.float64)
        self.crop = int(fr["crop_size"])
        n, dim = int(fr["templates"]), int(backend.run(prepare(np.zeros((1, self.crop, self.crop, 3), np.uint8),
                                                                   cfg)).shape[1])
        # random unit templates, as the host's: matching costs the same whoever is enrolled
        g = np.random.RandomState(0).standard_normal((n, dim)).astype(np.float32)
        self.gallery = g / np.linalg.norm(g, axis=1, keepdims=True)
        self.names = ["person_{:04d}".format(i) for i in range(n)]

    def detect(self, rgb: np.ndarray) -> Any:
        """(boxes [N,4], landmarks [N,5,2], scores [N]) in frame pixels, best score first."""
        cv2, fr = self.cv2, self.fr
        h, w = rgb.shape[:2]
        py, px = int(round(h * fr["pad_frac"])), int(round(w * fr["pad_frac"]))
        img = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_REPLICATE)
        f, big = 1.0, max(img.shape[:2])
        if big > fr["detect_max_side"]:
            f = float(fr["detect_max_side"]) / big
            img = cv2.resize(img, (int(round(img.shape[1] * f)), int(round(img.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
        faces = self.net.detect(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros((0,))
        faces = faces[np.argsort(-faces[:, 14], kind="stable")].astype(np.float64)
        if self.onet is not None:
            boxes = np.concatenate([faces[:, 0:2], faces[:, 0:2] + faces[:, 2:4]], 1)
            faces[:, 4:14] = onet_points(cv2, self.onet, img, boxes.astype(np.float32),
                                         fr["detector"]["landmarks"]).reshape(-1, 10)
        pts = np.concatenate([faces[:, 0:2], faces[:, 0:2] + faces[:, 2:4], faces[:, 4:14]], 1).reshape(-1, 7, 2)
        if f != 1.0:  # cv2.resize maps pixel centres: x' = (x + 0.5) * f - 0.5
            pts = (pts + 0.5) / f - 0.5
        pts = pts - np.array([px, py], np.float64)
        return pts[:, :2].reshape(-1, 4), pts[:, 2:], faces[:, 14].astype(np.float64)

    def align(self, rgb: np.ndarray, landmarks: np.ndarray) -> List[np.ndarray]:
        """Each face warped so its five points land on the template (two steps when shrinking below half)."""
        cv2, out = self.cv2, []
        for lm in landmarks:
            m = similarity_transform(lm, self.template)
            src = rgb
            scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
            if scale < 0.5:
                h, w = rgb.shape[:2]
                src = cv2.resize(rgb, (max(1, int(round(w * 2 * scale))), max(1, int(round(h * 2 * scale)))),
                                 interpolation=cv2.INTER_AREA)
                r = np.array([src.shape[1] / float(w), src.shape[0] / float(h)])
                m = similarity_transform((lm + 0.5) * r - 0.5, self.template)
            out.append(cv2.warpAffine(src, m, (self.crop, self.crop), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE))
        return out

    def embed(self, crops: List[np.ndarray]) -> np.ndarray:
        rows = []
        for c in crops:
            e = self.backend.run(prepare(c[None], self.cfg))
            if self.fr["flip"]:
                e = e + self.backend.run(prepare(np.ascontiguousarray(c[None, :, ::-1]), self.cfg))
            rows.append(np.asarray(e, np.float32).reshape(1, -1))
        emb = np.concatenate(rows) if rows else np.zeros((0, self.gallery.shape[1]), np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def match(self, emb: np.ndarray) -> List[Any]:
        scores = emb.dot(self.gallery.T)
        k = max(1, int(self.fr["match_top_k"]))
        return [[(self.names[j], round(float(row[j]), 4)) for j in np.argsort(-row, kind="stable")[:k]]
                for row in scores]

    def run(self, rgb: np.ndarray) -> Dict[str, float]:
        """The whole chain once, timed per stage (ms)."""
        t0 = time.perf_counter()
        _, landmarks, _ = self.detect(rgb)
        t1 = time.perf_counter()
        crops = self.align(rgb, landmarks)
        t2 = time.perf_counter()
        emb = self.embed(crops)
        t3 = time.perf_counter()
        if len(crops):
            self.match(emb)
        t4 = time.perf_counter()
        return {"detect": 1e3 * (t1 - t0), "align": 1e3 * (t2 - t1), "embed": 1e3 * (t3 - t2), "match": 1e3 * (t4 - t3)}


def place_in_frame(cv2: Any, img: np.ndarray, fr: Dict[str, Any]) -> np.ndarray:
    """The photo at the frame's centre on grey (shrunk to fit when larger), as the host's place_in_frame."""
    fw, fh = fr["frame_size"]
    h, w = img.shape[:2]
    if w > fw or h > fh:
        f = min(float(fw) / w, float(fh) / h)
        img = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    frame = np.full((fh, fw, 3), fr["canvas_grey"], np.uint8)
    y0, x0 = (fh - h) // 2, (fw - w) // 2
    frame[y0:y0 + h, x0:x0 + w] = img
    return frame


def read_photo(cv2: Any, path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise BundleError("--frame {}: no such file; pass a photo with one face (JPEG or PNG)".format(path))
    try:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise BundleError("--frame {}: not a readable image (JPEG, PNG, BMP or WebP expected)".format(path))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_input(cv2: Any, path: FramePath, folder: str, photo: str) -> Any:
    """(frame, what it shows): the photo, or else the first parity face the detector finds alone in the frame."""
    fr = path.fr
    if photo:
        frame = place_in_frame(cv2, read_photo(cv2, photo), fr)
        n = len(path.detect(frame)[0])
        if n != 1:
            raise BundleError("--frame {}: {} faces found by {} in the {}x{} frame; pass a photo with exactly one "
                              "face".format(photo, n, fr["detector"]["file"], *fr["frame_size"]))
        return frame, "{}, centred on grey".format(os.path.basename(photo))
    faces = np.load(os.path.join(folder, path.cfg["parity"]["file"]))["images"]
    for i, face in enumerate(faces):
        # doubled: an aligned crop is tight, and a face of LFW-photo size is what the host benchmark sees
        big = cv2.resize(np.ascontiguousarray(face), (2 * face.shape[1], 2 * face.shape[0]),
                         interpolation=cv2.INTER_LINEAR)
        frame = place_in_frame(cv2, big, fr)
        if len(path.detect(frame)[0]) == 1:
            return frame, "parity face {} of {} (enlarged 2x), centred on grey".format(i, path.cfg["parity"]["file"])
    raise BundleError("{} found no face alone in any of the {} parity faces (synthetic faces are not found): pass "
                      "--frame PHOTO, a photo with one face".format(fr["detector"]["file"], len(faces)))


def _frame_stats(values: List[float]) -> Dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "min_ms": round(float(a.min()), 3)}


def cpu_flags() -> List[str]:
    """The CPU's SIMD flags that matter to these runtimes (as compress/bench/frame.py cpu_flags)."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
              "asimd", "asimddp", "neon")
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("flags") or line.startswith("Features"):  # x86 / Arm
            have = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in have]
    return []


def time_frame(path: FramePath, frame_shows: Any, a: argparse.Namespace) -> Dict[str, Any]:
    """The whole frame (from frame_input), timed per stage: the record's "frame" object. The warm-up, runs and
    seconds of the host's frame benchmark unless given on the command line."""
    fr, backend, cv2, threads = path.fr, path.backend, path.cv2, a.threads
    frame, shows = frame_shows
    warmup = a.explicit.get("warmup", fr["warmup"])
    min_runs = a.explicit.get("min_runs", fr["min_runs"])
    seconds = a.explicit.get("seconds", fr["seconds"])
    for _ in range(warmup):
        path.run(frame)
    per = dict((s, []) for s in fr["stages"])  # type: Dict[str, List[float]]
    totals = []  # type: List[float]
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(totals) < min_runs:
        ms = path.run(frame)
        for s in fr["stages"]:
            per[s].append(ms[s])
        totals.append(sum(ms.values()))
    d = fr["detector"]
    runtime = "{} {}".format(backend.runtime, backend.version)
    return {"photo": shows, "frame": "{}x{}".format(*fr["frame_size"]), "runs": len(totals), "warmup": warmup,
            "stages": dict((s, _frame_stats(per[s])) for s in fr["stages"]), "total": _frame_stats(totals),
            "detector": {"name": d["name"], "file": d["file"], "sha256": d["sha256"],
                         "detect_max_side": fr["detect_max_side"], "pad_frac": fr["pad_frac"],
                         "score_threshold": d["score_threshold"], "nms_threshold": d["nms_threshold"],
                         "top_k": d["top_k"]},
            "stage_runtime": {"detect": path.detect_how,
                              "align": "numpy similarity fit + OpenCV {} warpAffine".format(cv2.__version__),
                              "embed": runtime + (", with its mirror image" if fr["flip"] else ""),
                              "match": "numpy {} (cosine, top {})".format(np.__version__, fr["match_top_k"])},
            "templates": len(path.names), "flip": fr["flip"], "threads": threads or "runtime default",
            "cpu_flags": cpu_flags(), "timed": "per stage, perf_counter, the same frame every run, as `{}` on the "
                                               "host".format(fr["host"])}


def frame_line(f: Dict[str, Any]) -> str:
    parts = ", ".join("{} {:.2f}".format(k, v["median_ms"]) for k, v in f["stages"].items())
    return ("frame {} ({}): total median {:.2f} ms, p90 {:.2f} ms ({} ms medians; {} runs); detector {} at {}; "
            "embed {}; {} templates; threads {}; CPU flags {}".format(
                f["frame"], f["photo"], f["total"]["median_ms"], f["total"]["p90_ms"], parts, f["runs"],
                f["detector"]["file"], f["detector"]["detect_max_side"], f["stage_runtime"]["embed"], f["templates"],
                f["threads"], " ".join(f["cpu_flags"]) or "unknown"))


# ---------------------------------------------------------------- trtexec
def parse_trtexec(text: str) -> Dict[str, Any]:
    """Timing from a trtexec 8.x log: its "Latency" summary line (H2D + GPU compute + D2H per query)."""
    line = re.search(r"\]\s+Latency:\s*(.*)", text)
    if not line:
        raise BundleError("no '[I] Latency: min = ...' line in the trtexec output: is it a complete trtexec log?")
    vals = {}  # type: Dict[str, float]
    for key, pct, value in re.findall(r"(min|max|mean|median|percentile\(([\d.]+)%\))\s*=\s*([\d.eE+-]+)\s*ms",
                                      line.group(1)):
        vals["p" + pct if pct else key] = float(value)
    if "median" not in vals:
        raise BundleError("the trtexec Latency line has no median: use trtexec 8.x or newer")
    version = re.search(r"TensorRT version:\s*([\d.]+)", text)
    device = re.search(r"Selected Device:\s*(.+)", text)
    runs = re.search(r"Timing trace has (\d+) queries over ([\d.]+) s", text)
    out = {"median_ms": vals["median"], "p90_ms": vals.get("p90"), "mean_ms": vals.get("mean"),
           "min_ms": vals.get("min"), "runs": int(runs.group(1)) if runs else None,
           "seconds": float(runs.group(2)) if runs else None, "half_drift": None, "stable": None,
           "trtexec_version": version.group(1) if version else "unknown",
           "trtexec_device": device.group(1).strip() if device else "unknown"}
    if out["p90_ms"] is None:
        out["p90_note"] = "trtexec printed no percentile(90%); run it with --percentile=90"
    return out


def find_trtexec() -> str:
    found = shutil.which("trtexec")
    return found or next((p for p in TRTEXEC_PATHS if os.path.isfile(p)), "")


def run_trtexec(exe: str, engine: str, a: argparse.Namespace) -> str:
    cmd = [exe, "--loadEngine=" + engine, "--warmUp={}".format(int(a.warmup_ms)),
           "--duration={}".format(max(1, int(round(a.seconds)))), "--iterations={}".format(a.min_runs),
           "--percentile=90"]
    print("running: " + " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        last = (r.stdout.strip().splitlines() or ["no output"])[-1]
        raise BundleError("trtexec failed (exit {}): {}".format(r.returncode, last))
    return r.stdout


# ---------------------------------------------------------------- loading
INSTALL = {"onnxruntime": "pip3 install onnxruntime", "openvino": "pip3 install openvino",
           "litert": "pip3 install ai-edge-litert (or tflite-runtime)",
           "tensorrt": "JetPack ships it: sudo apt install python3-libnvinfer (or use trtexec)"}


def load_backend(runtime: str, folder: str, cfg: Dict[str, Any], threads: int) -> Backend:
    model = os.path.join(folder, cfg["model_file"])
    classes = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend, "litert": LiteRtBackend}
    try:
        if runtime == "tensorrt":
            return TensorRtBackend(engine_path(folder, cfg))
        return classes[runtime](model, threads)
    except ImportError as e:
        raise BundleError("the {} runtime is not importable here ({}): {}".format(runtime, e, INSTALL[runtime]))


def engine_path(folder: str, cfg: Dict[str, Any]) -> str:
    path = os.path.join(folder, cfg["engine_file"])
    if not os.path.isfile(path):
        raise BundleError("{} not found: build it on this board first: {}".format(cfg["engine_file"], cfg["build"]))
    return path


def board_runtime(cfg: Dict[str, Any], wanted: str) -> str:
    """The runtime to use: the bundle's own, or onnxruntime on any bundle that holds an ONNX model."""
    if wanted == "auto":
        return {"tflite": "litert"}.get(cfg["runtime"], cfg["runtime"])
    if wanted == "onnxruntime" and not cfg["model_file"].endswith(".onnx"):
        raise BundleError("--runtime onnxruntime needs an ONNX model; this bundle holds {}".format(cfg["model_file"]))
    if wanted not in ("onnxruntime", board_runtime(cfg, "auto")):
        raise BundleError("this bundle is for {}; pass --runtime auto".format(cfg["runtime"]))
    return wanted


# ---------------------------------------------------------------- measuring
def board_parity(backend: Backend, folder: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Cosine between this runtime's embeddings and the PyTorch float embeddings stored in the bundle."""
    p = cfg["parity"]
    data = np.load(os.path.join(folder, p["file"]))
    images, reference = data["images"], data["embeddings"]
    got = np.concatenate([backend.run(prepare(images[i:i + 1], cfg)) for i in range(len(images))])
    rec = {"reference": p["reference"], "reference_runtime": "pytorch (on the export host, stored in {})".format(
        p["file"]), "runtime": "{} {}".format(backend.runtime, backend.version), "images": p["images"],
        "n": int(len(images))}
    rec.update(cosine_stats(reference, got))
    return rec


def time_backend(backend: Backend, cfg: Dict[str, Any], a: argparse.Namespace) -> Dict[str, Any]:
    size = cfg["input"]["size"]
    image = np.random.RandomState(0).randint(0, 256, (1, size, size, 3)).astype(np.uint8)
    call = backend.invoker(prepare(image, cfg))
    return measure(call, warmup=a.warmup, min_runs=a.min_runs, min_seconds=a.seconds, max_seconds=a.max_seconds)


def measured_text(ident: Dict[str, Any], target: str) -> str:
    if ident["on_target"]:
        return "measured on board ({}) by run_on_board.py".format(ident["model"])
    if ident["on_target"] is None:
        return "measured by run_on_board.py on {} (target {} names no board model to check)".format(
            ident["model"], target)
    return ("measured by run_on_board.py on {}, which is NOT the target board ({}: expected '{}' in the board "
            "model); not a board measurement".format(ident["model"], target, ident["expected_model"]))


def measure_bundle(folder: str, cfg: Dict[str, Any], ident: Dict[str, Any], a: argparse.Namespace) -> Dict[str, Any]:
    """Timing (and parity where the runtime gives embeddings) as the fields of a compress.bench/1 record."""
    runtime = board_runtime(cfg, a.runtime)
    if a.trtexec_log and runtime != "tensorrt":
        raise BundleError("--trtexec-log is for TensorRT bundles; this one runs {}".format(runtime))
    if a.frame is not None and runtime == "tensorrt" and (a.trtexec_log or not _importable("tensorrt")):
        raise BundleError("--frame runs the engine from Python, which trtexec cannot: install TensorRT's Python "
                          "bindings (sudo apt install python3-libnvinfer)")
    if runtime == "tensorrt" and a.trtexec_log:
        if not os.path.isfile(a.trtexec_log):
            raise BundleError("--trtexec-log {} not found; pass the file trtexec's output was saved to".format(
                a.trtexec_log))
        with open(a.trtexec_log) as f:
            stats = parse_trtexec(f.read())
        return trtexec_fields(stats, cfg, "timing parsed from a trtexec log, no model run",
                              "parsed from the trtexec log {} given with --trtexec-log: its Latency line (H2D + GPU "
                              "compute + D2H); NOT timed by this runner, and where the log was made is not checked "
                              "(trtexec names the device: {})".format(os.path.basename(a.trtexec_log),
                                                                       stats["trtexec_device"]))
    if runtime == "tensorrt" and not _importable("tensorrt") and find_trtexec():
        stats = parse_trtexec(run_trtexec(find_trtexec(), engine_path(folder, cfg), a))
        return dict(trtexec_fields(stats, cfg, "trtexec gives no embeddings; for on-board parity install TensorRT's Python bindings "
                                   "(sudo apt install python3-libnvinfer)",
                                   "trtexec's own protocol (--warmUp, --duration, --iterations), its Latency line: "
                                   "H2D + GPU compute + D2H per query, batch 1"),
                    engine_sha256=sha256_file(engine_path(folder, cfg)))
    fpath = frame = None
    if a.frame is not None:  # OpenCV, the detector, the photo and its face: checked before minutes of timing
        fr = frame_config(folder, cfg)
        cv2 = import_cv2()
        det_runtime = detector_runtime(cv2, a.detector_runtime)
        if a.frame:
            read_photo(cv2, a.frame)
        if a.threads:
            cv2.setNumThreads(a.threads)
    backend = load_backend(runtime, folder, cfg, a.threads)
    if a.frame is not None:
        fpath = FramePath(cv2, folder, fr, backend, cfg, det_runtime, a.threads)
        frame = frame_input(cv2, fpath, folder, a.frame)
    out = time_backend(backend, cfg, a)
    out.update(runtime=backend.runtime, runtime_version=backend.version, parity=board_parity(backend, folder, cfg),
               timed="runtime call only (input prepared beforehand), single face, after warm-up: " + backend.how)
    if fpath is not None:
        out["frame"] = time_frame(fpath, frame, a)
    if runtime == "tensorrt":
        out.update(model_file=cfg["engine_file"], engine_sha256=sha256_file(engine_path(folder, cfg)))
    else:
        out["model_file"] = cfg["model_file"]
    return out


def trtexec_fields(stats: Dict[str, Any], cfg: Dict[str, Any], no_parity: str, timed: str) -> Dict[str, Any]:
    return dict(stats, runtime="tensorrt", runtime_version="TensorRT {} (trtexec)".format(stats["trtexec_version"]),
                model_file=cfg["engine_file"], parity={"status": "not measured", "why": no_parity}, timed=timed)


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def record(folder: str, cfg: Dict[str, Any], ident: Dict[str, Any], n_verified: int,
           fields: Dict[str, Any], threads: int) -> Dict[str, Any]:
    rec = {"format": BENCH_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "artifact": cfg["artifact"], "target": cfg["target"], "precision": cfg["precision"],
           "model_sha256": cfg["model_sha256"], "measured_on": describe(ident),
           "measured": measured_text(ident, cfg["target"]), "board": ident,
           "threads": threads or "runtime default ({} cores visible)".format(os.cpu_count()), "batch": 1,
           "runner": {"script": "run_on_board.py", "python": platform.python_version(),
                      "bundle": "{} files verified against {}".format(n_verified, SUMS)}}
    rec.update(fields)
    return rec


def check_out(path: str, overwrite: bool) -> None:
    """The result file may be written: new, or (with --overwrite) a result this script wrote; never a folder, a
    link or someone else's file."""
    if os.path.islink(path) or os.path.isdir(path):
        raise BundleError("--out {} is a folder or a link; name a new file".format(path))
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise BundleError("--out {}: its folder does not exist; create it first".format(path))
    if not os.path.exists(path):
        return
    if not overwrite:
        raise BundleError("{} already exists; pass --overwrite to replace it or --out another file".format(path))
    try:
        with open(path) as f:
            ours = json.load(f).get("format") == BENCH_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise BundleError("{} was not written by run_on_board.py; --overwrite replaces only its own results: "
                          "--out another file".format(path))


def write_result(path: str, rec: Dict[str, Any], overwrite: bool) -> None:
    """Atomically: a temporary file beside `path`, renamed onto it."""
    if os.path.exists(path) and not overwrite:
        raise BundleError("{} already exists; pass --overwrite to replace it or --out another file".format(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary_line(rec: Dict[str, Any]) -> str:
    p = rec["parity"]
    par = ("parity vs PyTorch float: cosine mean {:.5f}, min {:.5f} over {} faces".format(
        p["cosine_mean"], p["cosine_min"], p["n"]) if "cosine_mean" in p else "parity not measured ({})".format(
        p.get("why")))
    p90 = "?" if rec.get("p90_ms") is None else "{:.3f}".format(rec["p90_ms"])
    return ("{} [{} {}] {} {}: median {:.3f} ms, p90 {} ms over {} runs; {}; {}; model sha256 {}".format(
        rec["model_file"], rec["target"], rec["precision"], rec["runtime"], rec["runtime_version"],
        rec["median_ms"], p90, rec["runs"], par, rec["measured"], rec["model_sha256"][:12]))


def parse_args(argv: Optional[List[str]], cfg_defaults: Dict[str, Any],
               frame_defaults: Optional[Dict[str, Any]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Verify, time and check this export bundle on the board")
    ap.add_argument("--out", help="result JSON  [BUNDLE/<target>-<precision>.json]")
    ap.add_argument("--runtime", default="auto", choices=["auto", "tensorrt", "openvino", "litert", "onnxruntime"])
    ap.add_argument("--threads", type=int, help="CPU threads (0 = the runtime's default)  [0; --frame: the "
                                                "host frame benchmark's]")
    ap.add_argument("--warmup", type=int, help="[{}]".format(cfg_defaults.get("warmup", 20)))
    ap.add_argument("--min-runs", type=int, help="[{}]".format(cfg_defaults.get("min_runs", 100)))
    ap.add_argument("--seconds", type=float, help="minimum timed s  [{}]".format(cfg_defaults.get("min_seconds", 3.0)))
    ap.add_argument("--max-seconds", type=float, default=cfg_defaults.get("max_seconds", 30.0))
    ap.add_argument("--warmup-ms", type=float, default=500.0, help="trtexec only: --warmUp in ms")
    ap.add_argument("--trtexec-log", help="TensorRT: read the timing from this trtexec log instead of timing")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing result JSON")
    ap.add_argument("--frame", nargs="?", const="", metavar="PHOTO",
                    help="also time the robot's whole frame (detect, align, embed, match) on this photo with one face; "
                         "without PHOTO on a parity face; needs OpenCV (any 4.x with onnxruntime)")
    ap.add_argument("--detector-runtime", default="auto", choices=list(DETECTOR_RUNTIMES),
                    help="--frame: what runs the face detector: onnxruntime (YuNet decoded in numpy) or OpenCV "
                         "4.8+'s FaceDetectorYN  [auto: onnxruntime when importable, else OpenCV]")
    a = ap.parse_args(argv)
    # what was given explicitly also applies to --frame, whose own defaults are the host frame benchmark's
    a.explicit = dict((k, getattr(a, k)) for k in ("threads", "warmup", "min_runs", "seconds")
                      if getattr(a, k) is not None)
    frame_threads = (frame_defaults or {}).get("threads", 0) if a.frame is not None else 0
    a.threads = a.explicit.get("threads", frame_threads)
    a.warmup = a.explicit.get("warmup", cfg_defaults.get("warmup", 20))
    a.min_runs = a.explicit.get("min_runs", cfg_defaults.get("min_runs", 100))
    a.seconds = a.explicit.get("seconds", cfg_defaults.get("min_seconds", 3.0))
    if a.threads < 0 or a.warmup < 0 or a.min_runs < 1 or not 0 < a.seconds <= a.max_seconds:
        raise BundleError("need --threads >= 0, --warmup >= 0, --min-runs >= 1 and 0 < --seconds <= --max-seconds")
    if a.detector_runtime != "auto" and a.frame is None:
        raise BundleError("--detector-runtime is for --frame (the face detector); add --frame [PHOTO]")
    return a


def main(argv: Optional[List[str]] = None) -> int:
    folder = _HERE
    try:
        if not os.path.isfile(os.path.join(folder, CONFIG)):
            raise BundleError("{} has no {}: copy the whole export folder to the board".format(folder, CONFIG))
        cfg = read_config(folder)
        a = parse_args(argv, cfg.get("timing", {}), cfg.get("frame") if isinstance(cfg.get("frame"), dict) else {})
        out = a.out or os.path.join(folder, "{}-{}.json".format(cfg["target"], cfg["precision"]))
        may_add = [os.path.relpath(os.path.abspath(p), folder).replace(os.sep, "/") for p in (out, a.trtexec_log) if p]
        n = verify_bundle(folder, may_add + [str(cfg.get("engine_file", ""))])
        check_model(folder, cfg)
        check_out(out, a.overwrite)  # before minutes of timing, not after
        ident = board_identity(cfg["board"].get("model"))
        rec = record(folder, cfg, ident, n, measure_bundle(folder, cfg, ident, a), a.threads)
        write_result(out, rec, a.overwrite)
    except BundleError as e:
        print("run_on_board.py: error: {}".format(e), file=sys.stderr)
        return 2
    print(summary_line(rec))
    if "frame" in rec:
        print(frame_line(rec["frame"]))
    print("wrote {}: copy it into RUN/board/ on the host and run `compress report --run RUN`".format(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
