"""Issue 28, input validation: every number is finite and within a documented range before any work, images
over the pixel cap are refused by name before decoding, and RecordIO / verification .bin headers are checked
against their file before anything is allocated. Each test here failed before its fix (fast: a missing model
or data folder stands behind each refused number, so an unchecked number fails on that instead of working).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compress.cli import cli
from compress.errors import UserError

NO_MODEL = "/nonexistent/model.pt"


def refused(*args: object) -> str:
    """Run `compress ARGS` in-process with click's CliRunner; it must end in one UserError line (the CLI's
    `error: ...`, exit 2); return the message."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert isinstance(r.exception, UserError), (r.exit_code, r.output, repr(r.exception))
    msg = str(r.exception)
    assert "\n" not in msg and msg
    return msg


def png_header(width: int, height: int, body: bool = False) -> bytes:
    """A PNG of width x height pixels, 1-bit grey: with `body`, a valid all-zero image (a 20000x20000 one is
    about 60 KB); without, the header and an empty IDAT (a decoder would fail, after allocating)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    idat = b""
    if body:
        row = b"\0" * (1 + -(-width // 8))
        c = zlib.compressobj(9)
        idat = b"".join(c.compress(row * 1000) for _ in range(height // 1000)) + c.compress(row * (height % 1000))
        idat += c.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- numbers (major)
@pytest.mark.parametrize("opt,value,name", [
    ("lr", math.inf, "lr"), ("s", math.inf, "scale s"), ("distill_weight", math.nan, "distill_weight"),
    ("weight_decay", math.nan, "weight_decay"), ("seed", -1, "seed"), ("threads", 100_000, "threads"),
])
def test_train_numbers_finite_and_in_range(opt, value, name):
    from compress.train.config import make_config

    with pytest.raises(UserError, match=rf"^{name} must be"):
        make_config(**{opt: value})


@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--scale", "inf"), ("--distill-weight", "nan"),
                                        ("--weight-decay", "nan"), ("--weight-decay", "-1"), ("--seed", "-1")])
def test_train_cli_refuses_before_reading_data(tmp_path, flag, value):
    msg = refused("train", "--data", "/nonexistent/faces", "--out", tmp_path / "out", flag, value)
    assert "must be" in msg and "/nonexistent/faces" not in msg
    assert not (tmp_path / "out").exists()


def test_recipe_lr_inf_is_refused_at_load(tmp_path):
    from compress.recipe import load_recipe

    r = tmp_path / "r.toml"
    r.write_text("[train]\nlr = inf\n")
    with pytest.raises(UserError, match="lr must be a finite number, got inf"):
        load_recipe(r)
    r.write_text("[train]\nepochs = 1\n[quantize]\nqat_lr = inf\n")
    with pytest.raises(UserError, match=r"\[quantize\] qat_lr must be a number > 0 and <= 1"):
        load_recipe(r)


@pytest.mark.parametrize("args,opt", [
    (["quantize", "--model", NO_MODEL, "--qat-lr", "inf"], "--qat-lr"),
    (["quantize", "--model", NO_MODEL, "--seed", "-1"], "--seed"),
    (["quantize", "--model", NO_MODEL, "--calibration-images", "1000000000"], "--calibration-images"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5", "--finetune-lr", "inf"], "--finetune-lr"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5", "--steps", "100000"], "--steps"),
    (["export", "--target", "onnx", "--model", NO_MODEL, "--parity-images", "1000000000"], "--parity-images"),
    (["evaluate", "--model", "/nonexistent.onnx", "--data", "synthetic", "--identities", "1000000000"],
     "--identities"),
    (["bench", "--artifact", "/nonexistent.onnx", "--seconds", "1e308"], "--seconds"),
    (["bench", "--artifact", "/nonexistent.onnx", "--threads", "100000"], "--threads"),
])
def test_cli_numbers_refused_with_their_range(tmp_path, args, opt):
    msg = refused(*args, *(["--out", tmp_path / "out"] if args[0] in ("quantize", "prune", "export") else []))
    assert msg.startswith(f"{opt} must be ") and "<=" in msg, msg
    assert not (tmp_path / "out").exists()


def test_caps_say_why():
    assert "CPUs here" in refused("bench", "--artifact", "/nonexistent.onnx", "--threads", "100000")
    assert "GB of memory" in refused("quantize", "--model", NO_MODEL, "--calibration-images", "1000000000")


def test_library_entry_points_apply_the_same_ranges(tmp_path):
    from compress.bench.latency import bench_artifact
    from compress.export.folders import export_artifact
    from compress.prune.folders import prune_artifact

    with pytest.raises(UserError, match="--seconds must be a number > 0 and <= 3600"):
        bench_artifact("/nonexistent.onnx", min_seconds=1e308)
    with pytest.raises(UserError, match="--parity-images must be an integer"):
        export_artifact(NO_MODEL, "onnx", out=tmp_path / "e", n_parity=10**9)
    with pytest.raises(UserError, match="--finetune-lr must be a number"):
        prune_artifact(NO_MODEL, tmp_path / "p", ratio=0.5, finetune_lr=math.inf)


def test_schedule_caps_in_toml_and_in_a_model_file(tmp_path, monkeypatch):
    import torch

    import compress.model.io as mio
    from compress.schedules import Schedule, load_schedule, profiles_dir

    text = (profiles_dir() / "table3.toml").read_text()
    for old, new in (("c = 8\n", "c = 400000\n"), ("n = 4\n", "n = 100000000\n")):
        assert old in text
        (tmp_path / "big.toml").write_text(text.replace(old, new, 1))
        with pytest.raises(UserError, match=r"big.toml: stage \d+\.[cn] must be <="):
            load_schedule(tmp_path / "big.toml")
    d = load_schedule("table3").to_dict()
    d["stages"][0]["n"] = 10**8
    with pytest.raises(UserError, match="n must be <= 64"):
        Schedule.from_dict(d)
    d = load_schedule("table3").to_dict()
    d["stages"][0]["c"] = 400_000
    p = tmp_path / "model.pt"
    torch.save({"format": mio.MODEL_FORMAT, "schedule": d, "state_dict": {}}, p)
    assert p.stat().st_size < 4096  # the 1 KB file of the issue

    def never(*a, **k):
        raise AssertionError("a network was built from the hostile schedule")

    monkeypatch.setattr(mio, "FaceMobileNet", never)
    with pytest.raises(UserError, match=r"model.pt: stored schedule: stage 1\.c must be <= 8192"):
        mio.load_model(p)


def test_schedule_parameter_bound():
    from compress.schedules import Schedule, load_schedule

    d = load_schedule("table3").to_dict()
    for st in d["stages"]:
        st["c"] = 8000 + (8000 % 2)
        st["hidden"] = None
    with pytest.raises(UserError, match="parameters .* more than the cap"):
        Schedule.from_dict(d)


def test_export_parity_fails_on_non_finite_embeddings():
    from compress.evaluate.embed import Embedder
    from compress.export.parity import parity_record

    class Runner(Embedder):
        def __init__(self, name: str, value: float) -> None:
            self.name, self.runtime, self.value = name, "stub", value

        def embed(self, images, **kw):
            return np.full((len(images), 128), self.value, np.float32)

    images = np.zeros((4, 112, 112, 3), np.uint8)
    with pytest.raises(UserError, match="parity check failed: nan-model gives NaN or inf embeddings for 4 of 4"):
        parity_record(Runner("ref", 1.0), Runner("nan-model", np.nan), images, "zeros", "ref")
    with pytest.raises(UserError, match="parity check failed: ref gives NaN or inf"):  # a NaN source model
        parity_record(Runner("x", np.inf), Runner("export", 1.0), images, "zeros", "ref")


def test_save_model_refuses_nan_weights(tmp_path):
    import torch

    from compress.model import build_model
    from compress.model.io import save_model

    m = build_model("table3")
    with torch.no_grad():
        next(m.parameters()).fill_(float("nan"))
    with pytest.raises(UserError, match="NaN or inf .* lower the learning rate"):
        save_model(m, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


# ---------------------------------------------------------------- numbers (minor)
@pytest.mark.parametrize("args,opt", [
    (["data", "synth", "DST", "--identities", "-1"], "--identities"),
    (["data", "synth", "DST", "--per-identity", "0"], "--per-identity"),
    (["data", "align", "/nonexistent/src", "DST", "--batch-size", "0"], "--batch-size"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5", "--round-to", "100000"], "--round-to"),
])
def test_minor_numbers(tmp_path, args, opt):
    args = [str(tmp_path / "dst") if a == "DST" else a for a in args]
    assert refused(*args).startswith(f"{opt} must be")
    assert not (tmp_path / "dst").exists()


def test_weight_decay_negative():
    from compress.train.config import make_config

    with pytest.raises(UserError, match="weight_decay must be a number >= 0"):
        make_config(weight_decay=-1.0)


def test_prune_ratio_too_small_names_the_smallest_that_works(tmp_path):
    msg = refused("prune", "--ratio", "1e-9", "--out", tmp_path / "p")  # the default model: zoo:table2
    assert "--ratio 1e-09 leaves layers of table2 too narrow" in msg and "or larger" in msg
    smallest = float(msg.rsplit("pass --ratio ", 1)[1].split()[0])
    assert 1e-9 < smallest < 0.1
    assert not (tmp_path / "p").exists()


def test_quantize_given_an_export_folder_says_so(tmp_path):
    from compress.model.io import resolve_model_file

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "model.onnx").write_bytes(b"onnx")
    (exp / "manifest.json").write_text(json.dumps({"format": "compress.export/1", "source": {"path": "runs/m"}}))
    with pytest.raises(UserError, match=r"is an export folder .* pass the model it was exported from \(runs/m\)"):
        resolve_model_file(exp)


def test_pairs_of_a_small_set_are_distinct_and_counted():
    from compress.data.pairs import make_pairs

    labels = np.repeat(np.arange(4), 3)  # 12 images of 4 people
    a, b, same, fold = make_pairs(labels, folds=2, pairs_per_fold=200)
    keys = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist())}
    assert len(keys) == len(a)  # no pair twice
    assert len(a) == 2 * (2 * 3 + 9)  # every pair each fold has: 2 people x 3 matched, 3 x 3 mismatched
    assert int(same.sum()) == 12


def test_recipe_base_is_relative_to_the_recipe(tmp_path, monkeypatch):
    from compress.recipe import load_recipe

    sub = tmp_path / "recipes"
    sub.mkdir()
    (sub / "parent.toml").write_text("[train]\nepochs = 3\n")
    (sub / "child.toml").write_text('base = "parent.toml"\n[train]\nbatch_size = 16\n')
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    r = load_recipe(sub / "child.toml")
    assert r.train.epochs == 3 and r.train.batch_size == 16


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("side", [20000, 40000])
def test_identify_refuses_a_huge_image_before_decoding(tmp_path, monkeypatch, side):
    import cv2

    from compress.identify.pipeline import read_image

    p = tmp_path / "huge.png"
    p.write_bytes(png_header(side, side, body=side == 20000))
    assert p.stat().st_size < 200_000

    def no_decode(*a, **k):
        raise AssertionError("decoded an image over the pixel cap")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(UserError, match=rf"huge.png: {side}x{side} pixels .* over the 50 MP cap"):
        read_image(p)


def test_enrol_skips_a_huge_photo_and_names_it(tmp_path):
    from compress.identify.enrol import face_crops

    big, ok = tmp_path / "big.png", tmp_path / "ok.png"
    big.write_bytes(png_header(40000, 40000))
    from PIL import Image

    Image.fromarray(np.zeros((112, 112, 3), np.uint8)).save(ok)

    class Finder:
        def faces(self, img):
            from compress.identify.pipeline import Face

            return [Face(img, [0.0, 0.0, 112.0, 112.0], 1.0)]

    crops, _, used, rejected = face_crops([big, ok], Finder())
    assert used == [str(ok)] and len(crops) == 1
    assert rejected[0][0] == str(big) and "over the 50 MP cap" in rejected[0][1]


def test_align_lists_a_huge_photo_as_unreadable_with_the_reason(tmp_path):
    from compress.data.align import align_tree

    src = tmp_path / "src" / "person"
    src.mkdir(parents=True)
    (src / "big.png").write_bytes(png_header(40000, 40000))
    r = align_tree(tmp_path / "src", tmp_path / "dst", cache_dir=False, progress=False)
    assert r.unreadable == 1
    assert "over the 50 MP cap" in (tmp_path / "dst" / "unreadable.txt").read_text()


def test_image_folder_skips_an_image_over_the_cap(tmp_path):
    from compress.data.folder import read_files

    big = tmp_path / "a" / "big.png"
    big.parent.mkdir()
    big.write_bytes(png_header(8000, 7000, body=True))  # 56 MP: under PIL's own bomb limit, over ours
    ok = tmp_path / "a" / "ok.png"
    from PIL import Image

    Image.fromarray(np.zeros((112, 112, 3), np.uint8)).save(ok)
    faces = read_files([(big, 0), (ok, 0)], ["a"], "src", progress=False)
    assert len(faces) == 1 and faces.skipped == [str(big)]


# ---------------------------------------------------------------- RecordIO and .bin
def _rec(tmp_path: Path, labels: list[float], extra: dict | None = None, insightface: bool = False) -> Path:
    from .recordio_writer import write_rec

    imgs = np.zeros((len(labels), 8, 8, 3), np.uint8)
    return write_rec(tmp_path / "rec", imgs, np.array(labels, np.float64), insightface=insightface, extra=extra)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e12, -1.0, 2.5])
def test_recordio_label_that_is_not_a_class_id(tmp_path, bad):
    from compress.data.recordio import RecordFaces

    rec = _rec(tmp_path, [0.0, 1.0, bad])
    with pytest.raises(UserError, match=r"train.rec record 2: label .* is not a class id"):
        RecordFaces(rec)


@pytest.mark.parametrize("a,b", [(1e12, 1e12), (math.nan, 3.0), (2.0, 1e9)])
def test_recordio_identity_range_within_the_index(tmp_path, a, b):
    from compress.data.recordio import RecordFaces

    from .recordio_writer import pack

    rec = _rec(tmp_path, [0.0, 1.0], extra={0: pack((a, b), b"")}, insightface=True)
    with pytest.raises(UserError, match="train.rec record 0"):
        RecordFaces(rec)


def test_recordio_property_with_absurd_class_count(tmp_path):
    from compress.data.recordio import RecordFaces

    rec = _rec(tmp_path, [0.0, 1.0])
    (rec.parent / "property").write_text("1000000000000,112,112\n")
    with pytest.raises(UserError, match="property: 1000000000000 classes"):
        RecordFaces(rec)


def test_recordio_image_over_the_cap(tmp_path):
    from compress.data.recordio import decode_image

    with pytest.raises(UserError, match=r"rec record 7: 40000x40000 pixels .* over the 50 MP cap"):
        decode_image(png_header(40000, 40000), "rec record 7")


def test_bin_of_zero_size_arrays_is_refused_before_allocating(tmp_path):
    from compress.evaluate.binset import load_bin

    p = tmp_path / "z.bin"
    p.write_bytes(pickle.dumps((np.zeros((2 * 10**9, 0), np.uint8), np.zeros((10**9, 0))), protocol=4))
    assert p.stat().st_size < 300
    with pytest.raises(UserError, match=r"z.bin: says 1000000000 pairs, but a verification set has at most"):
        load_bin(p)


def test_bin_claiming_more_images_than_its_bytes_hold(tmp_path):
    from compress.evaluate.binset import MAX_PAIRS, load_bin

    p = tmp_path / "zero.bin"
    n = MAX_PAIRS  # within the cap, but 2n zero-size "images" in a file of a few hundred bytes
    p.write_bytes(pickle.dumps((np.zeros((2 * n, 0), np.uint8), np.zeros((n, 0))), protocol=4))
    with pytest.raises(UserError, match=rf"zero.bin: says {n} pairs, but its \d+ bytes cannot hold {2 * n} encoded"):
        load_bin(p)


def test_bin_pickled_with_protocol_2_by_python_3_is_read(tmp_path):
    from compress.evaluate.binset import load_bin

    from .recordio_writer import encode

    imgs = [encode(np.full((112, 112, 3), i, np.uint8)) for i in range(20)]
    p = tmp_path / "p2.bin"
    p.write_bytes(pickle.dumps((imgs, [i % 2 == 0 for i in range(10)]), protocol=2))
    images, issame = load_bin(p)
    assert images.shape == (20, 112, 112, 3) and issame.tolist() == [i % 2 == 0 for i in range(10)]
    assert int(images[5, 0, 0, 0]) == 5


def test_bin_protocol_2_keeps_the_safe_unpickler(tmp_path):
    import codecs
    import os

    from compress.evaluate.binset import load_bin

    class Rot13:
        def __reduce__(self):
            return codecs.encode, ("x", "rot13")

    class Shell:
        def __reduce__(self):
            return os.system, ("true",)

    for evil in (Rot13(), Shell()):
        p = tmp_path / "evil.bin"
        p.write_bytes(pickle.dumps(([evil, evil], [True]), protocol=2))
        with pytest.raises(UserError, match="not an insightface verification .bin"):
            load_bin(p)


def test_quantize_does_not_write_a_nan_model(tmp_path, monkeypatch):
    import torch

    import compress.quantize.folders as qf
    from compress.model import build_model
    from compress.model.io import save_model

    torch.manual_seed(0)
    src = save_model(build_model("table3"), tmp_path / "m" / "model.pt")
    faces = np.zeros((8, 112, 112, 3), np.uint8)  # NNCF's work and the faces are not what is tested here
    monkeypatch.setattr(qf, "calibration_and_held_out", lambda *a, **k: (faces[:4], faces, {"source": "zeros",
                                                                                          "held_out": "zeros"}))
    monkeypatch.setattr(qf, "ptq", lambda model, *a, **k: model)
    monkeypatch.setattr(qf, "fake_quant_cosine", lambda *a: {"mean": math.nan, "min": math.nan, "n": 8})
    with pytest.raises(UserError, match=r"not writing .*q: the quantized model's embeddings are NaN or inf"):
        qf.quantize_artifact(src.parent, tmp_path / "q", n_calibration=4, n_held_out=8, progress=False)
    assert not (tmp_path / "q").exists()
