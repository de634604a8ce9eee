"""No data lost: hostile snapshot member names, bundle tampering, output paths that name user files, and
leftover folders that are not the tool's own (issue 28)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.errors import UserError


# ---------------------------------------------------------------- snapshots
def _hostile_snapshot(path, names, encoding="png"):
    from compress.data.snapshot import FORMAT, encode

    img = np.zeros((4, 4, 3), np.uint8)
    blobs = [encode(img, "png") for _ in names]
    offsets = np.r_[0, np.cumsum([len(b) for b in blobs])].astype(np.int64)
    meta = {"format": FORMAT, "encoding": encoding, "quality": 75,
            "parts": [{"name": "lfw", "kind": "lfw", "count": len(names), "names": names, "pairs_txt": "1 1\n"}]}
    with open(path, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 p0_bytes=np.frombuffer(b"".join(blobs), np.uint8), p0_offsets=offsets,
                 p0_labels=np.full(len(names), -1, np.int64))


@pytest.mark.parametrize("bad", ["../victim.txt", "/tmp/x/victim.txt", "A/../../victim.txt", "A//B.jpg", "./A.jpg",
                                 "A\\..\\..\\victim.txt", "", "C:evil.jpg", "A/\x1b[2J.jpg"])
def test_unpack_refuses_names_outside_dst_before_writing(tmp_path, bad):
    from compress.data.snapshot import unpack_snapshot

    victim = tmp_path / "victim.txt"
    victim.write_text("user data")
    snap = tmp_path / "s.npz"
    _hostile_snapshot(snap, ["A/A_0001.jpg", bad.replace("/tmp/x", str(tmp_path))])
    with pytest.raises(UserError, match="outside its folder"):
        unpack_snapshot(snap, tmp_path / "dst" / "u")
    assert victim.read_text() == "user data"
    assert not (tmp_path / "dst").exists()  # refused before anything was written


def test_unpack_refuses_an_encoding_that_is_a_path(tmp_path):
    from compress.data.snapshot import unpack_snapshot

    snap = tmp_path / "s.npz"
    _hostile_snapshot(snap, ["A/A_0001.jpg"], encoding="png/../../../x")
    with pytest.raises(UserError, match="encoding"):
        unpack_snapshot(snap, tmp_path / "u")
