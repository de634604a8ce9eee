"""insightface RecordIO (`train.rec` + `train.idx` + `property`) read without mxnet, streamed to training.

The format, as MXNet defines it (dmlc-core `src/recordio.cc` for the framing, apache/incubator-mxnet
`python/mxnet/recordio.py` for the header and the index; insightface `recognition/arcface_torch/dataset.py`,
`MXFaceDataset`, for how face sets use it):

- Framing. A record is written as one or more parts. Each part is a little-endian uint32 magic `0xced7230a`,
  a uint32 `lrec` whose top 3 bits are `cflag` and low 29 bits the part's byte length, then the bytes, zero
  padded to a multiple of 4. `cflag` 0 is a whole record; 1, 2, 3 are the first, middle and last part of a
  record the writer split because the magic number occurred (4-byte aligned) inside it: the reader joins the
  parts and puts the magic back between them.
- Payload. A 24-byte header, struct `IfQQ` (`flag` uint32, `label` float32, `id` uint64, `id2` uint64), then,
  when `flag > 0`, `flag` float32 labels that replace `label`, then the image bytes (JPEG or PNG).
- Index. `train.idx` is text, one `key<TAB>byte offset` line per record, the offset of the record's first
  part in `train.rec`; it gives random access.
- `property` is one text line `num_classes,height,width`, e.g. `85742,112,112` for MS1M-ArcFace.
- insightface's convention: when record 0's header has `flag > 0`, its labels `(a, b)` say that records
  1 .. a-1 are the face images and records a .. b-1 are one record per identity (each holding the range of
  that identity's images); only the images are training samples. Without it every indexed record is an image.
  An image record's class is its `label` (or the first of its labels when `flag > 0`).

Records are read by seeking to the index offset, so a DataLoader worker needs only its own file handle: it is
opened on first use in each process and never pickled.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from .image_limits import check_bytes

MAGIC = 0xCED7230A
HEADER_FORMAT = "<IfQQ"  # flag, label, id, id2 (MXNet's _IR_FORMAT 'IfQQ', native = little-endian everywhere)
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
_LEN_BITS = 29
MAX_PARTS = 1 << 16  # a record of more parts than this is a corrupt file, not a face image
# A class count beyond this is a damaged label, not a face set: WebFace42M, the largest public one, has 2.1M
# identities, and the training head holds one 128-float row per class (5M classes: 2.4 GiB, twice with momentum).
MAX_CLASSES = 5_000_000


def class_label(value: float, where: str) -> int:
    """A stored float label as a class id: finite, whole, in 0..MAX_CLASSES-1, or one line naming the record."""
    if not (math.isfinite(value) and value == int(value) and 0 <= value < MAX_CLASSES):
        raise UserError(f"{where}: label {value!r} is not a class id (a whole number in 0..{MAX_CLASSES - 1}); the "
                        f"file is damaged, re-create it")
    return int(value)


@dataclass(frozen=True)
class Header:
    """A record's IRHeader: `labels` holds the float labels (one unless the writer stored `flag` of them)."""

    flag: int
    labels: tuple[float, ...]
    id: int
    id2: int


def split_payload(payload: bytes, where: str) -> tuple[Header, bytes]:
    """(header, image bytes) of a record's payload; `where` names the file and record for errors."""
    if len(payload) < HEADER_SIZE:
        raise UserError(f"{where}: record is {len(payload)} bytes, shorter than the {HEADER_SIZE}-byte header; "
                        f"the file is damaged, re-create it (e.g. insightface's im2rec / face2rec)")
    flag, label, rid, rid2 = struct.unpack_from(HEADER_FORMAT, payload)
    rest = payload[HEADER_SIZE:]
    if flag == 0:
        return Header(0, (float(label),), rid, rid2), rest
    if 4 * flag > len(rest):
        raise UserError(f"{where}: header says {flag} labels but only {len(rest)} bytes follow; the file is "
                        f"damaged, re-create it")
    labels = tuple(float(v) for v in np.frombuffer(rest, "<f4", flag))
    return Header(flag, labels, rid, rid2), rest[4 * flag:]


def decode_image(data: bytes, where: str, size: int = 112) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 [size, size, 3] RGB (resized when the stored image has another size)."""
    check_bytes(data, where)  # a few KB can hold a 400 MP image: refused before decoding
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.array(im)  # a writable copy: torch.from_numpy warns on read-only buffers
    except Exception:  # any decoder failure (OSError, SyntaxError from a broken PNG, ...)
        raise UserError(f"{where}: the image bytes are not a readable JPEG/PNG ({len(data)} bytes); the file is "
                        f"damaged, re-create it") from None


def read_index(idx_path: str | Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) from a `.idx` file, checked against the `.rec` size so a truncated index (or the index
    of another, shorter file) fails here, before training, rather than in a DataLoader worker."""
    p = Path(idx_path)
    try:
        text = p.read_bytes().decode("ascii")
    except OSError as e:
        raise UserError(f"index {p} cannot be read ({e.strerror or type(e).__name__}); it must sit next to the "
                        f".rec with the same name (train.rec -> train.idx)") from None
    except UnicodeDecodeError as e:
        raise UserError(f"index {p}: byte {e.start} is not text; a .idx holds 'key<TAB>offset' lines, "
                        f"re-create it with the .rec") from None
    lines = text.splitlines()
    keys, offsets = np.empty(len(lines), np.int64), np.empty(len(lines), np.int64)
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            keys[n], offsets[n] = int(fields[0]), int(fields[1])
        except ValueError:
            raise UserError(f"index {p} line {lineno}: expected 'key<TAB>offset', got {line[:60]!r}; the index is "
                            f"damaged or truncated, re-create it with the .rec") from None
        n += 1
    keys, offsets = keys[:n], offsets[:n]
    if n == 0:
        raise UserError(f"index {p} is empty; re-create it with the .rec")
    if not text.endswith("\n"):  # writers end every line; a cut-off last line may hold a shortened offset
        raise UserError(f"index {p} ends in the middle of line {len(lines)}; it is truncated, re-create it "
                        f"with the .rec")
    bad = np.flatnonzero((offsets < 0) | (offsets + 8 > rec_size))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"index {p}: record {keys[i]} at offset {offsets[i]} lies beyond the end of the .rec "
                        f"({rec_size} bytes); the .rec is truncated or the index belongs to another file")
    if np.unique(keys).size != n:
        raise UserError(f"index {p} lists some key twice; it is damaged, re-create it with the .rec")
    return keys, offsets


def read_property(path: str | Path) -> tuple[int, int, int]:
    """(num_classes, height, width) from insightface's `property` file ("85742,112,112")."""
    p = Path(path)
    try:
        fields = [int(v) for v in p.read_text().strip().split(",")]
        if len(fields) != 3 or min(fields) < 1:
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{p}: expected one line 'num_classes,height,width' like '85742,112,112'; fix or "
                        f"delete it (without it the classes are counted from the records)") from None
    return fields[0], fields[1], fields[2]


class RecordFile:
    """Random access to the records of one `.rec` through its `.idx`. The file handle is opened lazily in
    the process that reads (each DataLoader worker gets its own) and is dropped when pickled."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.path = Path(rec_path)
        if not self.path.is_file():
            raise UserError(f"RecordIO file {self.path} not found; pass the train.rec of an insightface data set "
                            f"(with train.idx and property beside it)")
        self.idx_path = Path(idx_path) if idx_path else self.path.with_suffix(".idx")
        self.size = self.path.stat().st_size
        keys, offsets = read_index(self.idx_path, self.size)
        self.keys = keys
        order = np.argsort(keys)
        self._sorted_keys, self._sorted_offsets = keys[order], offsets[order]
        self._fh: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fh": None, "_pid": -1}

    def _file(self) -> Any:
        if self._fh is None or self._pid != os.getpid():  # a forked worker must not share the parent's offset
            self._fh = open(self.path, "rb")
            self._pid = os.getpid()
        return self._fh

    def offset(self, key: int) -> int:
        i = int(np.searchsorted(self._sorted_keys, key))
        if i >= self._sorted_keys.size or self._sorted_keys[i] != key:
            raise UserError(f"{self.idx_path} has no record {key}; the index does not match the .rec, re-create it")
        return int(self._sorted_offsets[i])

    def read(self, key: int) -> bytes:
        """The payload of record `key` (its parts joined)."""
        return self.read_at(self.offset(key), f"{self.path} record {key}")

    def read_at(self, offset: int, where: str) -> bytes:
        f = self._file()
        f.seek(offset)
        parts: list[bytes] = []
        pos = offset
        for _ in range(MAX_PARTS):
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{where}: the file ends inside the record (offset {pos}); the .rec is truncated, "
                                f"re-copy or re-create it")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise UserError(f"{where}: bad magic 0x{magic:08x} at offset {pos} (expected 0x{MAGIC:08x}); the .rec "
                                f"is damaged or the .idx belongs to another file, re-create them together")
            cflag, length = lrec >> _LEN_BITS, lrec & ((1 << _LEN_BITS) - 1)
            data = f.read(length)
            if len(data) < length:
                raise UserError(f"{where}: the file ends inside the record (offset {pos}); the .rec is truncated, "
                                f"re-copy or re-create it")
            parts.append(data)
            pad = (-length) % 4
            f.seek(pad, os.SEEK_CUR)
            pos += 8 + length + pad
            if cflag in (0, 3):
                return struct.pack("<I", MAGIC).join(parts)
            if (cflag == 1) != (len(parts) == 1):  # 1 only starts a record, 2 and 3 only continue one
                raise UserError(f"{where}: part flag {cflag} out of order at offset {pos}; the .rec is damaged, "
                                f"re-create it")
        raise UserError(f"{where}: more than {MAX_PARTS} parts; the .rec is damaged, re-create it")

    def header(self, key: int) -> Header:
        return split_payload(self.read(key), f"{self.path} record {key}")[0]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RecordFaces(torch.utils.data.Dataset):
    """The face images of an insightface `.rec` as a Dataset of (uint8 [H,W,3] RGB tensor, class id).

    Only the index (16 bytes per record) is held in memory; each item is one seek and one decode, so
    memory stays flat however large the file, and DataLoader workers read in parallel.
    """

    synthetic = False

    def __init__(self, rec_path: str | Path, size: int = 112) -> None:
        self.rec = RecordFile(rec_path)
        self.size = size
        self.source = str(self.rec.path)
        self.skipped: list[str] = []
        self.dropped: dict[str, list[str]] = {}
        first = self.rec.header(0) if bool((self.rec.keys == 0).any()) else None
        if first is not None and first.flag > 0 and len(first.labels) >= 2:
            where = f"{self.rec.path} record 0"
            a, b = class_label(first.labels[0], where), class_label(first.labels[1], where)
            top = int(self.rec.keys.max()) + 1  # the range must lie within the indexed records
            if not 1 <= a <= b <= top:
                raise UserError(f"{self.rec.path} record 0: identity range ({a}, {b}) is not a valid range within the "
                                f"{top} indexed records; the header record is damaged, re-create the .rec")
            self.image_keys = np.arange(1, a, dtype=np.int64)
            self.layout = f"insightface layout: image records 1..{a - 1}, identity records {a}..{b - 1}"
            identities = b - a
        else:
            self.image_keys = np.sort(self.rec.keys)
            self.layout = "every indexed record is an image"
            identities = None
        if self.image_keys.size == 0:
            raise UserError(f"{self.rec.path} holds no image records; pass the train.rec of a face data set")
        self.num_classes, self.property = self._count_classes(identities)
        if self.num_classes < 2:
            raise UserError(f"{self.rec.path} has {self.num_classes} identity; training needs at least 2")

    def _count_classes(self, identities: int | None) -> tuple[int, str]:
        prop = self.rec.path.parent / "property"
        if prop.is_file():
            n, h, w = read_property(prop)
            if n > MAX_CLASSES:
                raise UserError(f"{prop}: {n} classes is more than the {MAX_CLASSES} a face set has; fix or delete "
                                f"it (without it the classes are counted from the records)")
            return n, f"property {n},{h},{w}"
        if identities is not None:
            return identities, "identity records of record 0"
        # No property and no identity records: the largest label + 1 (reads every header once).
        top = max(int(self.label_of(int(k))) for k in self.image_keys)
        return top + 1, "largest label + 1 (no property file)"

    def __len__(self) -> int:
        return int(self.image_keys.size)

    def label_of(self, key: int) -> int:
        return class_label(self.rec.header(key).labels[0], f"{self.rec.path} record {key}")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        key = int(self.image_keys[i])
        where = f"{self.rec.path} record {key}"
        header, data = split_payload(self.rec.read(key), where)
        label = class_label(header.labels[0], where)
        if not 0 <= label < self.num_classes:
            raise UserError(f"{where}: label {label} is outside 0..{self.num_classes - 1} ({self.property}); fix the "
                            f"property file or re-create the .rec")
        return torch.from_numpy(decode_image(data, where, self.size)), label

    def fingerprint(self) -> str:
        """Hash of the index, the .rec's size and its first and last MiB: a cheap stand-in for hashing
        gigabytes, enough to tell a resumed run it was given other data."""
        h = hashlib.sha256(self.rec.idx_path.read_bytes())
        h.update(str(self.rec.size).encode())
        with open(self.rec.path, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, self.rec.size - (1 << 20)))
            h.update(f.read(1 << 20))
        return h.hexdigest()[:16]

    def describe(self) -> str:
        return (f"RecordIO {self.source}: {len(self)} images of {self.num_classes} identities "
                f"({self.layout}; classes from {self.property}), streamed")


def unwrap_worker_error(e: UserError) -> UserError:
    """A UserError raised in a DataLoader worker comes back with the worker's traceback in its message; keep
    its own last line, so the CLI still prints one line."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return e
    last = lines[-1]
    prefix = f"{UserError.__module__}.{UserError.__name__}: "
    return UserError(last[len(prefix):] if last.startswith(prefix) else last)
