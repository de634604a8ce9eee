"""Which model embeds the faces, and how it is identified: a zoo name, a train/prune artifact (PyTorch), an
export folder (run in the export's own runtime: onnxruntime, OpenVINO or LiteRT), or a bare .onnx / .xml /
.tflite file. The sha256 recorded with every embedding is the hash of the file that computes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import file_sha256, read_manifest
from ..errors import UserError
from ..evaluate.embed import Embedder


@dataclass
class EmbedModel:
    spec: str  # zoo:NAME or an absolute path (stored in the gallery, so identify finds the model again)
    name: str  # human-readable: zoo entry, artifact folder or file
    sha256: str  # of the file that computes the embeddings
    runtime: str  # onnxruntime | openvino | litert | pytorch
    precision: str  # fp32 | fp16 | int8 | "as stored" for a bare file
    embedder: Embedder

    def describe(self) -> str:
        return f"{self.name} [{self.runtime}, {self.precision}, sha256 {self.sha256[:12]}]"


def _ir_sha256(xml: Path) -> str:
    """An OpenVINO IR is two files; hash both so a changed .bin is a changed model."""
    h = hashlib.sha256()
    for f in (xml, xml.with_suffix(".bin")):
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def _export_model(folder: Path, manifest: dict, threads: int) -> EmbedModel:
    from ..export.runtimes import load_runner

    f = folder / str(manifest.get("model_file", ""))
    if not f.is_file():
        raise UserError(f"export {folder} names model file {manifest.get('model_file')!r}, which is missing; "
                        "re-run `compress export`")
    sha = _ir_sha256(f) if f.suffix == ".xml" else file_sha256(f)
    recorded = manifest.get("model_sha256")
    if f.suffix != ".xml" and recorded and recorded != sha:
        raise UserError(f"{f} does not match its manifest (sha256 {sha[:12]} != {recorded[:12]}); the export was "
                        "modified: re-run `compress export`")
    runner = load_runner(f, threads=threads)
    runner.name = f"{folder.name}/{f.name}"
    precision = str(manifest.get("precision", "?"))
    return EmbedModel(str(folder.resolve()), runner.name, sha, runner.runtime, precision, runner)


def load_embed_model(spec: str | Path, threads: int = 0) -> EmbedModel:
    """Resolve a model spec to an embedder plus what identifies it."""
    from ..zoo import is_zoo_spec

    s = str(spec)
    if is_zoo_spec(s):
        from ..evaluate.embed import TorchEmbedder
        from ..model.io import load_model
        from ..zoo import load_entry

        entry = load_entry(s.split(":", 1)[1])
        model = load_model(s)  # hash-checked against the manifest
        return EmbedModel(s, s, entry.sha256, "pytorch", "fp32", TorchEmbedder(model, name=s))
    p = Path(s)
    if p.is_dir():
        m = read_manifest(p) or {}
        if str(m.get("format", "")).startswith("compress.export/"):
            return _export_model(p, m, threads)
        from ..quantize.artifact import is_quantized_artifact

        if is_quantized_artifact(p):
            raise UserError(f"{p} is a quantized artifact (NNCF fake-quant); export it for a runtime first, e.g. "
                            f"`compress export --target onnx --precision int8 --model {p}`, and enrol with the export")
    if p.suffix.lower() in (".onnx", ".xml", ".tflite"):
        from ..export.runtimes import load_runner

        if not p.is_file():
            raise UserError(f"model file {p} not found")
        runner = load_runner(p, threads=threads)
        sha = _ir_sha256(p) if p.suffix.lower() == ".xml" else file_sha256(p)
        return EmbedModel(str(p.resolve()), p.name, sha, runner.runtime, "as stored", runner)
    from ..evaluate.embed import TorchEmbedder
    from ..model.io import load_model, resolve_model_file

    f = resolve_model_file(p)  # a folder without model.pt, or a missing path: one-line error
    model = load_model(f)
    return EmbedModel(str(f.resolve()), f"{f.parent.name}/{f.name}", file_sha256(f), "pytorch", "fp32",
                      TorchEmbedder(model, name=str(f)))
