"""Writers for insightface RecordIO and verification `.bin` files, kept in the tests (the product only reads).

RecordIO, as MXNet defines it (dmlc-core `src/recordio.cc` RecordIOWriter::WriteRecord for the framing,
apache/incubator-mxnet `python/mxnet/recordio.py` `pack` and MXIndexedRecordIO for header and index):
each part is uint32 magic 0xced7230a, uint32 (cflag << 29 | length), the bytes, zero padding to 4 bytes. A
payload holding the magic at a 4-byte aligned position is split there (the magic itself is dropped): the
first part gets cflag 1, middle parts 2, the last 3; a payload without one is a single part with cflag 0.
The payload is the 24-byte header struct 'IfQQ' (flag, label, id, id2), then `flag` float32 labels when
flag > 0, then the image bytes. The `.idx` has one "key\\toffset" line per record. insightface's layout
(`MXFaceDataset` in recognition/arcface_torch/dataset.py): record 0 has flag 2 and labels (a, b); records
1..a-1 are images, a..b-1 one per identity holding that identity's image range.

Verification `.bin` (insightface `eval/verification.py`, `load_bin`): pickle of (list of encoded images,
list of bool), images 2i and 2i+1 being pair i.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

MAGIC = 0xCED7230A


def encode(img: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def pack(label: float | tuple[float, ...], data: bytes, rid: int = 0) -> bytes:
    if isinstance(label, tuple):
        return struct.pack("<IfQQ", len(label), 0.0, rid, 0) + np.asarray(label, "<f4").tobytes() + data
    return struct.pack("<IfQQ", 0, float(label), rid, 0) + data


def write_record(f, payload: bytes) -> None:
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - len(payload) % 4, 4) if payload[i:i + 4] == magic]
    starts, parts = [0] + [c + 4 for c in cuts], []
    for k, end in enumerate(cuts + [len(payload)]):
        parts.append(payload[starts[k]:end])
    for k, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else 1 if k == 0 else 3 if k == len(parts) - 1 else 2
        f.write(magic + struct.pack("<I", (cflag << 29) | len(part)) + part + b"\0" * ((-len(part)) % 4))


def write_rec(folder: Path, images: np.ndarray, labels: np.ndarray, insightface: bool = True,
              num_classes: int | None = None, fmt: str = "PNG", extra: dict[int, bytes] | None = None) -> Path:
    """train.rec/.idx (+ property when num_classes is given) for images uint8 [N,H,W,3] and labels [N].
    `extra` adds raw payloads under given keys (e.g. one holding the magic number)."""
    folder.mkdir(parents=True, exist_ok=True)
    records: dict[int, bytes] = {}
    if insightface:
        order = np.argsort(labels, kind="stable")
        images, labels = images[order], labels[order]
        ids = sorted(set(int(y) for y in labels))
        a = 1 + len(labels)
        records[0] = pack((float(a), float(a + len(ids))), b"")
        for i, (img, y) in enumerate(zip(images, labels)):
            records[1 + i] = pack(float(y), encode(img, fmt), 1 + i)
        for j, c in enumerate(ids):
            rows = np.flatnonzero(labels == c)
            records[a + j] = pack((float(1 + rows[0]), float(2 + rows[-1])), b"")
    else:
        for i, (img, y) in enumerate(zip(images, labels)):
            records[i] = pack(float(y), encode(img, fmt), i)
    records.update(extra or {})
    rec, idx = folder / "train.rec", []
    with open(rec, "wb") as f:
        for key, payload in records.items():
            idx.append(f"{key}\t{f.tell()}\n")
            write_record(f, payload)
    (folder / "train.idx").write_text("".join(idx))
    if num_classes is not None:
        h, w = images.shape[1:3]
        (folder / "property").write_text(f"{num_classes},{h},{w}\n")
    return rec


def write_bin(path: Path, images: np.ndarray, issame: list[bool], fmt: str = "JPEG") -> Path:
    bins = [encode(img, fmt) for img in images]
    with open(path, "wb") as f:
        pickle.dump((bins, list(issame)), f, protocol=pickle.HIGHEST_PROTOCOL)
    return path
