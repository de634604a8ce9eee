"""Fuzz-style hardening of issue 28's inputs: many hostile numbers through every numeric CLI option (click's
CliRunner, in-process), hostile RecordIO and verification .bin files built in tmp_path, hostile schedules, and
images whose headers claim huge sizes (small on disk). Each must end in one UserError line, never another
exception, a hang, or an allocation the size of the claim. A missing model or data path stands behind every
number, so an unchecked number fails the test quickly instead of starting work.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from compress.cli import cli
from compress.errors import UserError

from .test_validation import png_header

HOSTILE = ["inf", "-inf", "nan", "NaN", "1e308", "-1e308", "-1", "1e12", "99999999999999999999", "1e-400x", "abc",
           ""]
NO_MODEL = "/nonexistent/model.pt"

# (command prefix, option): every numeric option with a Range on the CLI
OPTIONS = [
    (["prune", "--model", NO_MODEL, "--ratio", "0.5"], "--steps"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5"], "--finetune-steps"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5"], "--finetune-lr"),
    (["prune", "--model", NO_MODEL, "--ratio", "0.5"], "--round-to"),
    (["prune", "--model", NO_MODEL], "--ratio"),
    (["quantize", "--model", NO_MODEL], "--calibration-images"),
    (["quantize", "--model", NO_MODEL], "--qat-steps"),
    (["quantize", "--model", NO_MODEL], "--qat-lr"),
    (["quantize", "--model", NO_MODEL], "--threads"),
    (["quantize", "--model", NO_MODEL], "--seed"),
    (["export", "--target", "onnx", "--model", NO_MODEL], "--parity-images"),
    (["export", "--target", "onnx", "--model", NO_MODEL], "--threads"),
    (["bench", "--artifact", "/nonexistent.onnx"], "--threads"),
    (["bench", "--artifact", "/nonexistent.onnx"], "--seconds"),
    (["bench", "--artifact", "/a.onnx", "--artifact", "/b.onnx"], "--rounds"),
    (["evaluate", "--model", "/nonexistent.onnx", "--data", "synthetic"], "--identities"),
    (["enrol", "--model", NO_MODEL, "--gallery", "/nonexistent/g", "--db", "DB"], "--calibration-images"),
    (["data", "synth", "DST"], "--identities"),
    (["data", "synth", "DST"], "--per-identity"),
    (["data", "synth", "DST"], "--seed"),
    (["data", "align", "/nonexistent/src", "DST"], "--batch-size"),
]


@pytest.mark.parametrize("prefix,opt", OPTIONS, ids=[f"{p[0]}{o}" for p, o in OPTIONS])
def test_hostile_numbers_on_every_option(tmp_path, prefix, opt):
    runner = CliRunner()
    for value in HOSTILE:
        args = [str(tmp_path / "dst") if a == "DST" else str(tmp_path / "g.db") if a == "DB" else a for a in prefix]
        if prefix[0] in ("prune", "quantize", "export"):
            args += ["--out", str(tmp_path / "out")]
        r = runner.invoke(cli, args + [opt, value])
        assert isinstance(r.exception, UserError), (opt, value, r.exit_code, r.output, repr(r.exception))
        msg = str(r.exception)
        assert msg.startswith(f"{opt} must be ") and "\n" not in msg, (opt, value, msg)
        assert not (tmp_path / "out").exists() and not (tmp_path / "dst").exists()


TRAIN_HOSTILE = {
    "lr": [math.inf, math.nan, -1.0, 0.0, 1e308], "s": [math.inf, math.nan, 0.0, -64.0, 1e6],
    "m": [math.nan, math.inf, -0.1, 10.0], "weight_decay": [math.nan, math.inf, -1.0, 5.0],
    "distill_weight": [math.nan, math.inf, -1.0, 1e9], "momentum": [math.nan, -0.5, 2.0],
    "warmup_epochs": [math.nan, math.inf, -1.0], "mixup": [math.nan, 1.0, -0.5],
    "leakage_quantile": [math.nan, 2.0], "seed": [-1, 2**32, 10**20], "synthetic_seed": [-1, 2**40],
    "threads": [-1, 100_000], "workers": [-1, 100_000], "epochs": [0, -5, 10**9],
    "batch_size": [0, 10**9], "terms": [0, 10**6], "synthetic_identities": [0, -1, 10**9],
    "synthetic_images_per_identity": [0, 10**9], "eval_identities": [0, 3, 10**9],
    "eval_images_per_identity": [1, 10**9],
}


@pytest.mark.parametrize("key", sorted(TRAIN_HOSTILE))
def test_hostile_training_settings_in_a_recipe_and_on_the_command_line(tmp_path, key):
    from compress.train.config import make_config

    r = tmp_path / "r.toml"
    for v in TRAIN_HOSTILE[key]:
        with pytest.raises(UserError) as e:
            make_config(**{key: v})
        assert "\n" not in str(e.value)
        toml_v = {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan" if isinstance(v, float) and math.isnan(v) else v)
        r.write_text(f"[train]\n{key} = {toml_v}\n")
        with pytest.raises(UserError):
            make_config(r)


@pytest.mark.parametrize("section,key", [("prune", "steps"), ("prune", "finetune_lr"), ("prune", "round_to"),
                                         ("prune", "ratio"), ("quantize", "images"), ("quantize", "qat_lr"),
                                         ("quantize", "threads"), ("export", "parity_images"),
                                         ("bench", "seconds"), ("bench", "threads"), ("evaluate", "identities")])
def test_hostile_pipeline_settings(tmp_path, section, key):
    from compress.recipe import load_recipe

    r = tmp_path / "r.toml"
    for v in ("inf", "-inf", "nan", "1e308", "-1", "1000000000000", '"8"', "true"):
        r.write_text(f"[train]\nepochs = 1\n[{section}]\n{key} = {v}\n")
        with pytest.raises(UserError, match=rf"\[{section}\] {key} must be"):
            load_recipe(r)


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("field", ["c", "n", "t"])
def test_hostile_schedule_numbers(field):
    from compress.schedules import Schedule, load_schedule, parse_schedule

    for v in (0, -1, 400_000, 10**8, 2**40, 1.5, "8", True, None):
        d = load_schedule("table3").to_dict()
        d["stages"][1][field] = v
        with pytest.raises((UserError,)) as e:
            Schedule.from_dict(d)
        assert "\n" not in str(e.value)
        raw = {"stem": {"c": 32, "s": 2}, "head": {"c": 256}, "stages": [{"t": 2, "c": 16, "n": 2, "s": 1}]}
        raw["stages"][0][field] = v
        with pytest.raises(UserError):
            parse_schedule(raw, "fuzz.toml")


def test_hostile_schedule_head_stem_embedding_and_input():
    from compress.schedules import Schedule, load_schedule

    for key, v in (("head_c", 10**7), ("stem_c", 10**6), ("embedding_size", 10**6), ("input_size", 10**6),
                   ("input_size", 8), ("head_c", -5)):
        d = load_schedule("table3").to_dict()
        d[key] = v
        with pytest.raises(UserError, match=key):
            Schedule.from_dict(d)


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("w,h", [(20000, 20000), (40000, 40000), (65535, 65535), (2**31 - 1, 1), (1, 2**31 - 1),
                                 (8000, 7000)])
def test_huge_image_headers_in_every_decoder(tmp_path, w, h):
    from compress.data.image_limits import header_size
    from compress.data.recordio import decode_image
    from compress.identify.pipeline import read_image

    data = png_header(w, h)
    assert header_size(data) == (w, h)
    p = tmp_path / "x.png"
    p.write_bytes(data)
    for read in (lambda: read_image(p), lambda: decode_image(data, "rec record 1")):
        with pytest.raises(UserError, match="over the 50 MP cap"):
            read()


def test_damaged_image_headers_are_unreadable_not_crashes(tmp_path):
    from compress.identify.pipeline import read_image

    good = png_header(20000, 20000)
    rng = np.random.default_rng(0)
    p = tmp_path / "x.png"
    for i in range(40):
        b = bytearray(good[:64])
        b[rng.integers(8, 29)] ^= int(rng.integers(1, 256))  # flip a byte of the IHDR (its CRC then fails)
        p.write_bytes(bytes(b))
        with pytest.raises(UserError):
            read_image(p)


# ---------------------------------------------------------------- RecordIO
LABELS = [math.nan, math.inf, -math.inf, -1.0, 1e12, 3.5, float(2**31), 1e-30, -0.0]


def test_hostile_recordio_labels(tmp_path):
    from compress.data.recordio import RecordFaces

    from .recordio_writer import write_rec

    imgs = np.zeros((3, 8, 8, 3), np.uint8)
    for i, bad in enumerate(LABELS):
        rec = write_rec(tmp_path / f"r{i}", imgs, np.array([0.0, 1.0, bad]), insightface=False)
        try:
            faces = RecordFaces(rec)
            for k in range(len(faces)):
                faces[k]
        except UserError as e:
            assert "\n" not in str(e)
        else:
            assert bad == 0, f"label {bad} was accepted"


def test_hostile_recordio_identity_ranges(tmp_path):
    from compress.data.recordio import RecordFaces

    from .recordio_writer import pack, write_rec

    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    ranges = [(a, b) for a in LABELS + [0.0, 1e9] for b in (math.nan, 1e12, 3.0, 0.0)]
    for i, (a, b) in enumerate(ranges):
        rec = write_rec(tmp_path / f"r{i}", imgs, np.array([0, 1]), insightface=True, extra={0: pack((a, b), b"")})
        with pytest.raises(UserError, match="record 0"):
            RecordFaces(rec)


def test_hostile_property_files(tmp_path):
    from compress.data.recordio import RecordFaces

    from .recordio_writer import write_rec

    rec = write_rec(tmp_path / "r", np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]), insightface=False)
    for text in ("1000000000000,112,112", "nan,112,112", "inf,1,1", "-5,112,112", "2,112", "", "\xff"):
        (rec.parent / "property").write_text(text + "\n")
        with pytest.raises(UserError, match="property"):
            RecordFaces(rec)


# ---------------------------------------------------------------- verification .bin
def _bins() -> list[object]:
    big = 10**9
    png = png_header(8, 8, body=True)
    return [
        (np.zeros((2 * big, 0), np.uint8), np.zeros((big, 0))),  # the 68.5 TiB file of the issue
        (np.zeros((40000, 0), np.uint8), np.zeros((20000, 0))),  # within the pair cap, too few bytes
        ([png] * 2 * 30000, [True] * 30000),  # over the pair cap
        ([], []), ([png], [True]), (None, None), (5, 7), ({}, {}), ("ab", "a"),
        ([b"", b""], [True]), ([1, 2], [True]), ([png_header(40000, 40000)] * 2, [True]),
        [np.zeros(4), np.zeros(2)], (np.zeros((2, 3), np.uint8), [True]),
    ]


@pytest.mark.parametrize("protocol", [2, 4])
def test_hostile_bins(tmp_path, protocol):
    from compress.evaluate.binset import load_bin

    p = tmp_path / "x.bin"
    for i, obj in enumerate(_bins()):
        p.write_bytes(pickle.dumps(obj, protocol=protocol))
        try:
            load_bin(p)
        except UserError as e:
            assert "\n" not in str(e) and "x.bin" in str(e), (i, str(e))
        else:
            pytest.fail(f"hostile .bin {i} was accepted")


def test_bin_header_bytes_flipped(tmp_path):
    from compress.evaluate.binset import load_bin

    good = pickle.dumps(([png_header(8, 8, body=True)] * 20, [True, False] * 5), protocol=2)
    rng = np.random.default_rng(1)
    p = tmp_path / "f.bin"
    for _ in range(30):
        b = bytearray(good)
        b[rng.integers(0, 80)] ^= int(rng.integers(1, 256))
        p.write_bytes(bytes(b))
        try:
            load_bin(p)
        except UserError as e:  # a flipped byte may still read as a valid file; nothing but UserError escapes
            assert "\n" not in str(e)
