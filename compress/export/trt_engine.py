"""Build a TensorRT engine from the exported ONNX file, wherever the TensorRT Python API imports (a Jetson
with JetPack, a workstation with TensorRT). This file is copied verbatim into every TensorRT export folder as
``build_engine.py``, so it imports nothing from this project and runs on the board with only TensorRT installed:

    python3 build_engine.py model.onnx model.engine --precision fp16      # or int8 (explicit QDQ model)

The equivalent ``trtexec`` line is written next to it (``trtexec.txt``). The board's Python can be as old as
3.6 (JetPack 4.6 on the Jetson Nano), so this file uses no newer syntax (no ``from __future__ import
annotations``, no ``X | None``); tests/test_bundle.py checks it with vermin.
"""

import argparse
import sys
from typing import List, Optional


def build_engine(onnx_path: str, engine_path: str, precision: str = "fp16", workspace_mb: int = 512) -> str:
    """Parse ``onnx_path`` with TensorRT's ONNX parser, build a serialized engine and write it to
    ``engine_path``. precision: fp32 | fp16 | int8 (int8 expects an explicitly quantized QDQ model; fp16 is
    also enabled so that layers left in float run in half). Works with TensorRT 8.2 (JetPack 4.6) to 10.x."""
    import tensorrt as trt  # imported here: the module must load where TensorRT is absent

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required before TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace_mb << 20
    if precision in ("fp16", "int8"):
        if precision == "fp16" and not getattr(builder, "platform_has_fast_fp16", True):  # gone in newer TRT
            print("warning: this GPU has no fast FP16; the engine will run FP32 kernels", file=sys.stderr)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            raise RuntimeError("this GPU has no INT8 support (e.g. Jetson Nano/Maxwell); build with --precision fp16")
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    with open(engine_path, "wb") as f:
        f.write(serialized)
    return engine_path


def trtexec_command(onnx_name: str, engine_name: str, precision: str, workspace_mb: int = 512,
                    legacy: bool = False) -> str:
    """The trtexec line that builds the same engine as build_engine(). legacy=True: TensorRT < 8.4 spelling of
    the workspace size (--workspace, in MiB; TensorRT 10 removed it in favour of --memPoolSize)."""
    flags = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --fp16"}[precision]
    ws = f"--workspace={workspace_mb}" if legacy else f"--memPoolSize=workspace:{workspace_mb}M"
    return f"trtexec --onnx={onnx_name} --saveEngine={engine_name}{flags} {ws}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Build a TensorRT engine from an exported face-embedding ONNX model")
    ap.add_argument("onnx")
    ap.add_argument("engine")
    ap.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    ap.add_argument("--workspace-mb", type=int, default=512)
    a = ap.parse_args(argv)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print("tensorrt is not importable here; run this on the board (JetPack ships it) or install TensorRT",
              file=sys.stderr)
        return 2
    print(build_engine(a.onnx, a.engine, a.precision, a.workspace_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
