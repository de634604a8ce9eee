"""Data snapshots: pack aligned faces and LFW into one file, unpack into folders that training and the LFW
benchmark read as they are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.data.folder import FaceSet, read_image_folder
from compress.data.snapshot import FORMAT, decode, encode, read_meta, unpack_snapshot, write_snapshot
from compress.data.sources import _read_unlabelled
from compress.errors import UserError

from .conftest import toy_faces


def _faces() -> FaceSet:
    lab = toy_faces(classes=3, per_class=4)
    unl = toy_faces(classes=2, per_class=3, seed=4)
    images = np.concatenate([lab.images, unl.images])
    labels = np.r_[lab.labels, -np.ones(6, np.int64)]
    return FaceSet(images, labels, lab.classes, "toy", parts=[("toy", 12), ("/data/utk", 6)])


def _lfw() -> tuple[np.ndarray, list[str], str]:
    imgs = toy_faces(classes=2, per_class=2, seed=7).images
    names = ["A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg", "B/B_0002.jpg"]
    return imgs, names, "2 1\nA 1 2\nA 1 B 1\nB 1 2\nA 2 B 2\n"


@pytest.mark.parametrize("encoding", ["webp", "jpeg", "png"])
def test_encodings_round_trip(encoding):
    y, x = np.mgrid[0:112, 0:112]
    img = np.stack([x * 2, y * 2, (x + y)], -1).astype(np.uint8)  # smooth, as faces are at this scale
    back = decode(encode(img, encoding, 90))
    assert back.shape == img.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - img.astype(int)).mean()
    assert err == 0 if encoding == "png" else err < 8


def test_pack_unpack_keeps_parts_labels_and_lfw(tmp_path):
    faces = _faces()
    meta = write_snapshot(tmp_path / "s.npz", faces, _lfw(), encoding="png", extra={"note": "x"})
    assert meta["format"] == FORMAT and [p["kind"] for p in meta["parts"]] == ["labelled", "unlabelled", "lfw"]
    assert read_meta(tmp_path / "s.npz")[0]["note"] == "x"
    folders = unpack_snapshot(tmp_path / "s.npz", tmp_path / "u")
    assert [f.split("/")[-1] for f in folders.values()] == ["train", "unlabelled-1-utk", "lfw"]
    lab = read_image_folder(folders["toy"], progress=False)
    assert len(lab) == 12 and lab.classes == sorted(faces.classes)
    # Lossless here, so the unpacked labelled faces are the packed ones, class by class.
    for c, name in enumerate(faces.classes):
        want = faces.images[:12][faces.labels[:12] == c]
        got = lab.images[lab.labels == lab.classes.index(name)]
        assert np.array_equal(np.sort(want.reshape(len(want), -1), 0), np.sort(got.reshape(len(got), -1), 0))
    unl = _read_unlabelled(f"aligned:{folders['/data/utk']}", False, True)
    assert len(unl) == 6
    lfw_dir = tmp_path / "u" / "lfw"
    assert (lfw_dir / "pairs.txt").read_text().startswith("2 1") and (lfw_dir / "aligned.json").is_file()
    assert json.loads((tmp_path / "u" / "snapshot.json").read_text())["folders"]["lfw"] == str(lfw_dir)


def test_evaluate_reads_an_unpacked_lfw_without_aligning(tmp_path, monkeypatch):
    from compress.evaluate import lfw

    def no_align(*a, **k):
        raise AssertionError("pre-aligned crops must not be aligned again")

    monkeypatch.setattr(lfw, "_align_files", no_align)
    write_snapshot(tmp_path / "s.npz", _faces(), _lfw(), encoding="png")
    unpack_snapshot(tmp_path / "s.npz", tmp_path / "u")

    class Mean:
        name, runtime = "mean-colour", "numpy"

        def embed(self, images, flip=False, progress=False):
            e = images.reshape(len(images), -1, 3).mean(1).astype(np.float32) - 100
            return e / np.linalg.norm(e, axis=1, keepdims=True)

    out = lfw.evaluate_lfw(Mean(), tmp_path / "u" / "lfw", flip=False, progress=False)
    assert out["n_pairs"] == 4 and out["alignment"]["status_counts"] == {"pre_aligned": 4}
    assert out["aligner"].startswith("pre-aligned")


def test_bad_snapshots_and_folders(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable data snapshot"):
        unpack_snapshot(bad, tmp_path / "u")
    write_snapshot(tmp_path / "s.npz", _faces(), None, encoding="png")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty"):
        unpack_snapshot(tmp_path / "s.npz", tmp_path / "full")
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(UserError, match="encoding"):
        encode(np.zeros((4, 4, 3), np.uint8), "gif")


def test_snapshot_cli_refuses_to_overwrite_and_synthetic(tmp_path):
    from click.testing import CliRunner

    from compress.cli import cli

    (tmp_path / "s.npz").write_bytes(b"mine")
    r = CliRunner().invoke(cli, ["data", "snapshot", "--recipe", "demo", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code != 0 and "exists" in str(r.exception)
    assert (tmp_path / "s.npz").read_bytes() == b"mine"
    r = CliRunner().invoke(cli, ["data", "snapshot", "--recipe", "demo", "--out", str(tmp_path / "t.npz")])
    assert r.exit_code != 0 and "synthetic" in str(r.exception)
