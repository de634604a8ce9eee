"""The board bundle: what an export folder holds so that a user copies it to the board and runs it there with
only the board's Python, numpy and runtime (no compress package).

    run_on_board.py    compress/export/board_runner.py, verbatim: re-runs itself isolated (-I), verifies
                       SHA256SUMS (every file listed, none outside the bundle), times the model, checks
                       parity, writes a compress.bench/1 JSON for `compress report` (RUN/board/)
    build_engine.py    TensorRT targets (written by formats.export_tensorrt)
    bundle.json        what the runner needs: model file and sha256, input layout and normalisation, timing
                       protocol of `compress bench`, the target's board software
    parity_faces.npz   a few of the export's parity faces (uint8) with their PyTorch float embeddings
    face_detection_yunet.onnx (+ .README.md, its MIT licence), mtcnn_onet.onnx (yunet-onet: MTCNN's output net,
                       facenet-pytorch's MIT-licensed weights, which places the five points)
                       the robot's face detector, for `run_on_board.py --frame` (bundle.json "frame": the host's
                       frame path of `compress bench --frame`, every setting taken from the package)
    BOARD.md           the exact commands on the board
    SHA256SUMS         sha256 of every file except itself and manifest.json (`sha256sum -c SHA256SUMS` works)

`write_tar` also packs the folder as <folder>.tar.gz beside it (atomically) for copying to the board.
"""

from __future__ import annotations

import inspect
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import _files_under, manifest_kind, atomic_write, atomic_write_text, file_sha256, write_json
from ..data.transforms import MEAN, NORMALIZATION, STD
from ..errors import UserError
from ..targets import Target

BUNDLE_FORMAT = "compress.bundle/1"
RUNNER_FILE, CONFIG_FILE, FACES_FILE, BOARD_FILE, SUMS_FILE = (
    "run_on_board.py", "bundle.json", "parity_faces.npz", "BOARD.md", "SHA256SUMS")
BOARD_PARITY_FACES = 32  # enough for a mean and a minimum, small enough (1.2 MB) to copy anywhere
# manifest.json is rewritten when the artifact folder is sealed (artifact_dir), after the sums are taken
NOT_SUMMED = ("manifest.json", SUMS_FILE)
ENGINE_FILE = "model.engine"


def board_scripts(target: Target) -> dict[str, Path]:
    """The Python files a bundle for `target` carries: name in the bundle -> source file in this package."""
    from . import board_runner, trt_engine

    out = {RUNNER_FILE: Path(inspect.getsourcefile(board_runner))}
    if target.runtime == "tensorrt":
        out["build_engine.py"] = Path(inspect.getsourcefile(trt_engine))
    return out


def timing_protocol() -> dict[str, Any]:
    """The defaults of `compress bench` (bench_artifact), so the board is timed like the host."""
    from ..bench.latency import bench_artifact

    sig = inspect.signature(bench_artifact).parameters
    return {k: sig[k].default for k in ("warmup", "min_runs", "min_seconds", "max_seconds")}


ONET_FILE = "mtcnn_onet.onnx"


def detector_files() -> dict[str, Path]:
    """The robot's face detector and its licence text: name in the bundle -> source file; empty when the robot's
    detector is not one the runner runs (YuNet by onnxruntime or OpenCV's FaceDetectorYN, its points optionally
    placed by MTCNN's ONet, written by write_landmark_net)."""
    from ..data.detectors import ROBOT_DETECTOR, YUNET_FILE

    if ROBOT_DETECTOR not in ("yunet", "yunet-onet"):
        return {}
    out = {YUNET_FILE.name: YUNET_FILE}
    licence = YUNET_FILE.parent / "README.md"  # its provenance and MIT licence text
    if licence.is_file():
        out[YUNET_FILE.stem + ".README.md"] = licence
    return out


def frame_section(stage: Path) -> dict[str, Any] | None:
    """bundle.json "frame": what run_on_board.py --frame needs to repeat `compress bench --frame` (compress.bench.
    frame, identify.pipeline.run_frame) without the package; None when the bundle carries no detector."""
    from ..bench.frame import (CANVAS_GREY, DEFAULT_TEMPLATES, FRAME_MIN_RUNS, FRAME_SIZE, FRAME_WARMUP, STAGES,
                               bench_frame)
    from ..data.align import CROP_SIZE, frame_config
    from ..data.detectors import ROBOT_DETECTOR, YunetDetector, template_for
    from ..identify.pipeline import match

    files = detector_files()
    if not files:
        return None
    model, licence = (list(files) + [None])[:2]
    det = inspect.signature(YunetDetector).parameters
    bench = inspect.signature(bench_frame).parameters
    align = frame_config(ROBOT_DETECTOR)
    detector = {"name": ROBOT_DETECTOR, "file": model, "sha256": file_sha256(stage / model),
                "licence": licence, "runtime": "onnxruntime + numpy decoding, or OpenCV 4.8+ cv2.FaceDetectorYN",
                "score_threshold": det["score"].default, "nms_threshold": det["nms"].default,
                "top_k": det["top_k"].default}
    if (stage / ONET_FILE).is_file():
        from ..data.mtcnn import ONET_MEAN, ONET_SCALE

        detector["landmarks"] = {"file": ONET_FILE, "sha256": file_sha256(stage / ONET_FILE), "input": 48,
                                 "mean": ONET_MEAN, "scale": ONET_SCALE, "runtime": "onnxruntime, or OpenCV dnn",
                                 "source": "MTCNN ONet, facenet-pytorch 2.6 weights (MIT licence)"}
    return {"detector": detector,
            "detect_max_side": align.detect_max_side, "pad_frac": align.pad_frac, "crop_size": CROP_SIZE,
            "template": template_for(ROBOT_DETECTOR).tolist(), "frame_size": list(FRAME_SIZE),
            "canvas_grey": CANVAS_GREY, "templates": DEFAULT_TEMPLATES, "flip": bench["flip"].default,
            "threads": bench["threads"].default, "seconds": bench["seconds"].default, "warmup": FRAME_WARMUP,
            "min_runs": FRAME_MIN_RUNS, "match_top_k": inspect.signature(match).parameters["top_k"].default,
            "stages": list(STAGES),
            "host": f"compress bench --frame PHOTO --detector {ROBOT_DETECTOR} --model EXPORT_FOLDER --threads "
                    f"{bench['threads'].default}"}


def _input_config(spec: dict[str, Any]) -> dict[str, Any]:
    size = spec["shape"][2] if spec["layout"] == "NCHW" else spec["shape"][1]
    return {"layout": spec["layout"], "shape": spec["shape"], "size": int(size), "mean": list(MEAN),
            "std": list(STD), "normalisation": NORMALIZATION}


def bundle_config(target: Target, precision: str, artifact: str, model_file: str, model_sha256: str,
                  input_spec: dict[str, Any], faces: dict[str, Any], frame: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """bundle.json: everything run_on_board.py reads (it cannot import this package)."""
    cfg = {"format": BUNDLE_FORMAT, "artifact": artifact, "target": target.name, "runtime": target.runtime,
           "runtime_version": target.runtime_version, "precision": precision, "model_file": model_file,
           "model_sha256": model_sha256, "input": _input_config(input_spec), "parity": faces,
           "timing": timing_protocol(),
           "board": {"model": target.board_model or None, "os": list(target.board_os),
                     "python": list(target.board_python), "runtime": list(target.board_runtime)}}
    if frame:
        cfg["frame"] = frame
    if target.runtime == "tensorrt":
        cfg["engine_file"] = ENGINE_FILE
        cfg["build"] = f"python3 build_engine.py {model_file} {ENGINE_FILE} --precision {precision}"
    return cfg


def write_parity_faces(stage: Path, images: np.ndarray, embeddings: np.ndarray, images_desc: str,
                       reference_desc: str) -> dict[str, Any]:
    """A spread of the parity faces and their PyTorch float embeddings -> parity_faces.npz; its description."""
    n = min(BOARD_PARITY_FACES, len(images))
    idx = np.unique(np.linspace(0, len(images) - 1, n).round().astype(int))
    atomic_write(stage / FACES_FILE, lambda p: _savez(p, images[idx], embeddings[idx]))
    return {"file": FACES_FILE, "n": int(len(idx)), "reference": reference_desc,
            "images": f"{len(idx)} of the export's parity faces, evenly spaced: {images_desc}"}


def _savez(path: Path, images: np.ndarray, embeddings: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
        np.savez_compressed(f, images=np.ascontiguousarray(images, np.uint8),
                            embeddings=np.asarray(embeddings, np.float32))


def write_bundle(stage: Path, target: Target, precision: str, model_file: str, input_spec: dict[str, Any],
                 images: np.ndarray, embeddings: np.ndarray, images_desc: str, reference_desc: str,
                 host_parity: dict[str, Any], artifact: str) -> list[str]:
    """Write the runner, bundle.json, parity_faces.npz and BOARD.md into the export's staging folder; return
    their names. Call after the model files exist (bundle.json records the model's sha256)."""
    for name, src in board_scripts(target).items():
        if not (stage / name).exists():
            atomic_write_text(stage / name, src.read_text())
    for name, src in detector_files().items():
        atomic_write(stage / name, lambda p, src=src: p.write_bytes(src.read_bytes()))
    landmark_net = write_landmark_net(stage)
    faces = write_parity_faces(stage, images, embeddings, images_desc, reference_desc)
    cfg = bundle_config(target, precision, artifact, model_file, file_sha256(stage / model_file), input_spec, faces,
                        frame_section(stage))
    write_json(stage / CONFIG_FILE, cfg)
    atomic_write_text(stage / BOARD_FILE, board_md(target, cfg, host_parity))
    return [RUNNER_FILE, CONFIG_FILE, FACES_FILE, BOARD_FILE, *detector_files(), *landmark_net]


def _landmarks_md(d: dict[str, Any]) -> str:
    lm = d.get("landmarks")
    return (f", the five points placed by `{lm['file']}` (MTCNN's output net, one {lm['input']}x{lm['input']} pass "
            "per face on YuNet's box, in the detector's runtime)") if lm else ""


def write_landmark_net(stage: Path) -> list[str]:
    """yunet-onet: MTCNN's ONet as ONNX into the bundle (the runner places the five points with it), the same
    file the host's detector runs; its name."""
    from ..data.detectors import ROBOT_DETECTOR
    from ..data.mtcnn import onet_onnx_file

    if ROBOT_DETECTOR != "yunet-onet":
        return []
    src = onet_onnx_file()
    atomic_write(stage / ONET_FILE, lambda p: p.write_bytes(src.read_bytes()))
    return [ONET_FILE]


def write_sums(stage: Path) -> str:
    """SHA256SUMS (sha256sum's format) of every file in the folder except NOT_SUMMED; call last."""
    names = sorted(n for n in _files_under(stage) if n not in NOT_SUMMED)
    atomic_write_text(stage / SUMS_FILE, "".join(f"{file_sha256(stage / n)}  {n}\n" for n in names))
    return SUMS_FILE


_INSTALL = {
    "tensorrt": "JetPack already has what the bundle needs: TensorRT with its Python bindings (python3-libnvinfer)\n"
                "and trtexec (/usr/src/tensorrt/bin). numpy: `sudo apt install python3-numpy` if missing. pycuda is\n"
                "optional (without it the runner reaches the GPU through libcudart with ctypes). Without the Python\n"
                "bindings the runner times the engine with trtexec and cannot check parity.",
    "tflite": "    python3 -m venv ~/litert && ~/litert/bin/pip install numpy ai-edge-litert\n\n"
              "(bookworm's pip installs only into a venv; `tflite-runtime` works too). Run the commands below with\n"
              "`~/litert/bin/python` in place of `python3`.",
    "openvino": "    python3 -m pip install numpy openvino      # OpenVINO 2022.1 or newer",
    "onnxruntime": "    python3 -m pip install numpy onnxruntime",
}


def _board_line(target: Target) -> str:
    if not target.board_python:
        return f"The target file {target.name}.toml does not state the board's software."
    return (f"Written for: {'; or '.join(target.board_os)}; Python {' / '.join(target.board_python)} (the "
            f"scripts run on Python {target.board_python_min}+); {'; '.join(target.board_runtime)}.")


def _engine_steps(cfg: dict[str, Any]) -> str:
    if cfg["runtime"] != "tensorrt":
        return ""
    return (f"## Build the engine on the board (once; an engine runs only where it was built)\n\n"
            f"    {cfg['build']}\n\n"
            f"or with trtexec: see `trtexec.txt`. It writes `{ENGINE_FILE}` beside the model.\n\n")


def board_md(target: Target, cfg: dict[str, Any], host_parity: dict[str, Any]) -> str:
    """BOARD.md: the exact commands on the board, what to install and what the output means."""
    art, out = cfg["artifact"], f"{cfg['target']}-{cfg['precision']}.json"
    t = cfg["timing"]
    host = (f"cosine mean {host_parity['cosine_mean']:.5f}, min {host_parity['cosine_min']:.5f} over "
            f"{host_parity['n']} faces in {host_parity['runtime']} on the export host" if host_parity else "see parity.json")
    trt = " `--trtexec-log FILE` reads the timing from a trtexec log instead." if cfg["runtime"] == "tensorrt" else ""
    return f"""# {art}: run it on the board ({target.name}, {cfg['precision']})

{target.description}. Model `{cfg['model_file']}`, sha256 `{cfg['model_sha256']}`.
{_board_line(target)}

## Copy it to the board

    scp {art}.tar.gz BOARD:            # made by `compress export --bundle`; or copy the folder {art}/
    ssh BOARD
    tar xzf {art}.tar.gz && cd {art}

## What the board needs

{_INSTALL[target.runtime]}

{_engine_steps(cfg)}## Run

    python3 run_on_board.py

1. Runs itself isolated (`python3 -I`: nothing is imported from the bundle folder), checks every file against
   `SHA256SUMS` (`sha256sum -c SHA256SUMS` does the same) and the model against `bundle.json`'s sha256; a
   missing, changed or unlisted file stops it with one line naming the file.
2. Times the model as `compress bench` does on the host: {t['warmup']} warm-up calls, then at least
   {t['min_runs']} timed calls over at least {t['min_seconds']} s, until the medians of the two halves agree
   within 3% (at most {t['max_seconds']} s); batch 1, the runtime call only; median and p90 in ms.
3. Runs the {cfg['parity']['n']} faces in `{FACES_FILE}` and compares them with their PyTorch float embeddings
   (cosine mean / min). On the host this export gave {host}; a lower figure on the board means the board's
   runtime (engine build, fp16 or int8 kernels) changed the numerics.
4. Writes `{out}`: the timing, the parity and the board's identity (model, L4T / JetPack or OS release,
   power mode, runtime version). It says "NOT the target board" when the board model does not contain
   "{target.board_model or '(no board model in the target file)'}".

Options: `--threads N`, `--seconds S`, `--runtime onnxruntime` (any bundle with an ONNX model), `--out FILE`,
`--overwrite`.{trt}
{_frame_md(cfg)}
## Back on the host

    scp BOARD:{art}/{out} RUN/board/
    compress report --run RUN          # shows it as "measured on board", with the on-board parity
"""


def _frame_md(cfg: dict[str, Any]) -> str:
    """BOARD.md's section on `--frame`: the robot's whole frame, as `compress bench --frame` on the host."""
    fr = cfg.get("frame")
    if not fr:
        return ""
    d, (w, h) = fr["detector"], fr["frame_size"]
    return f"""
## The robot's whole frame

    python3 -m pip install onnxruntime opencv-python-headless   # or the board's own (any OpenCV 4, e.g. JetPack's)
    python3 run_on_board.py --frame PHOTO              # a photo with one face; without PHOTO: a parity face

Times what `{fr['host']}` times on the host, stage by stage: the photo centred in a {w}x{h} frame on grey
{fr['canvas_grey']} (a larger photo is shrunk to fit); **detect** with `{d['file']}` (YuNet, carried in this
bundle with its licence, sha256 in `SHA256SUMS`) through onnxruntime, decoded in numpy as on the host (without
onnxruntime, or with `--detector-runtime opencv`: OpenCV 4.8+'s FaceDetectorYN) at longer side
{fr['detect_max_side']} (score {d['score_threshold']}, NMS {d['nms_threshold']}, top-k {d['top_k']}){_landmarks_md(d)};
**align** its five points onto the {fr['crop_size']}x{fr['crop_size']} template by a least-squares similarity and
cv2.warpAffine; **embed** with the model above in the board's runtime{' and its mirror image' if fr['flip'] else ''};
**match** against {fr['templates']} random unit templates. Threads: {fr['threads']} unless `--threads`; per stage
and in total: median, p90 and min over at least {fr['min_runs']} frames and {fr['seconds']} s after {fr['warmup']}
warm-up frames. The result JSON gains a `frame` object; `compress report` shows it. Exit 2 with one line when
OpenCV is missing, neither onnxruntime nor FaceDetectorYN (OpenCV 4.8+) is there, the photo is unreadable or has
not exactly one face.
{"TensorRT: `--frame` runs the engine through the Python bindings (not trtexec)." if cfg["runtime"] == "tensorrt" else ""}
"""


# ---------------------------------------------------------------- tar
def tar_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + ".tar.gz")


def check_tar_out(folder: str | Path, overwrite: bool) -> None:
    """Before any work: the tar beside `folder` may be written (absent, or a bundle tar and --overwrite)."""
    path = tar_path(folder)
    if not path.exists():
        return
    if not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    name = Path(folder).name
    if path.is_symlink() or not path.is_file() or not _tar_is_ours(path, name):
        raise UserError(f"{path} is not a bundle that compress wrote for {name} (or holds other files); move it "
                        f"away or choose another --out")


def _tar_is_ours(path: Path, name: str) -> bool:
    """The tar holds only `name/` and the files its manifest.json lists (what write_tar packs), nothing else."""
    import json

    try:
        with tarfile.open(path, "r:gz") as tf:
            members = tf.getmembers()
            m = tf.extractfile(f"{name}/manifest.json")
            manifest = json.loads(m.read()) if m is not None else {}
    except (tarfile.TarError, OSError, KeyError, ValueError):
        return False
    listed = set(manifest.get("artifact_files") or []) if isinstance(manifest, dict) else set()
    files = {t.name[len(name) + 1:] for t in members if t.isfile() and t.name.startswith(name + "/")}
    return (CONFIG_FILE in listed and manifest_kind(manifest) == "export" and len(files) == len(members)
            and files <= listed)


def write_tar(folder: str | Path) -> Path:
    """<folder>.tar.gz beside the folder, written to a temporary file and renamed into place."""
    folder = Path(folder)
    names = sorted(_files_under(folder))

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tf:
            for n in names:
                tf.add(folder / n, arcname=f"{folder.name}/{n}", filter=_portable)
    return atomic_write(tar_path(folder), write)


def _portable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
