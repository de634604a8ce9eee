import pickle
import struct

import numpy as np
import pytest
import torch

from compress.data.lazy import LazyFolder, epoch_batches, open_streamed
from compress.data.recordio import MAGIC, RecordFaces, RecordFile
from compress.errors import UserError
from compress.evaluate.binset import evaluate_bin, load_bin

from .conftest import run_cli, toy_faces, write_image_folder
from .recordio_writer import encode, pack, write_bin, write_rec


@pytest.fixture
def small():
    return toy_faces(classes=4, per_class=5)


def test_insightface_layout_reads_back_every_image_and_label(tmp_path, small):
    rec = write_rec(tmp_path / "ms1m", small.images, small.labels, num_classes=4)
    data = RecordFaces(rec)
    assert len(data) == 20 and data.num_classes == 4 and "property 4,112,112" in data.describe()
    assert "image records 1..20, identity records 21..24" in data.describe()
    order = np.argsort(small.labels, kind="stable")  # the writer groups images by identity, as insightface does
    for i in range(len(data)):
        img, y = data[i]
        assert y == small.labels[order[i]]
        np.testing.assert_array_equal(img.numpy(), small.images[order[i]])  # PNG: lossless


def test_classes_come_from_identity_records_or_labels_without_property(tmp_path, small):
    assert RecordFaces(write_rec(tmp_path / "a", small.images, small.labels)).num_classes == 4
    flat = RecordFaces(write_rec(tmp_path / "b", small.images, small.labels, insightface=False))
    assert len(flat) == 20 and flat.num_classes == 4 and "every indexed record is an image" in flat.describe()


def test_multi_part_record_and_multi_label_header_are_joined(tmp_path, small):
    magic = struct.pack("<I", MAGIC)
    img = encode(small.images[0])
    # a payload with the magic number at 4-byte aligned positions is written as 3 parts (cflag 1, 2, 3)
    tricky = pack((2.0, 7.0, 9.0), img + b"\0" * ((-len(img)) % 4) + magic + b"abcd" + magic + b"xy")
    rec = write_rec(tmp_path / "r", small.images[:3], np.array([0, 1, 1]), insightface=False,
                    extra={3: tricky})
    raw = rec.read_bytes()
    assert raw.count(struct.pack("<I", (1 << 29) | (24 + 12 + len(img) + (-len(img)) % 4))) == 1  # first part
    f = RecordFile(rec)
    assert f.read(3) == tricky
    data = RecordFaces(rec)
    assert data[3][1] == 2  # first of the stored labels
    np.testing.assert_array_equal(data[3][0].numpy(), small.images[0])


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_corrupt_record_names_file_record_offset_and_fix(tmp_path, small):
    rec = write_rec(tmp_path / "r", small.images, small.labels, num_classes=4)
    offset = int((tmp_path / "r" / "train.idx").read_text().splitlines()[5].split("\t")[1])
    raw = bytearray(rec.read_bytes())
    raw[offset:offset + 4] = b"\xde\xad\xbe\xef"
    rec.write_bytes(bytes(raw))
    data = RecordFaces(rec)
    with pytest.raises(UserError) as e:
        data[4]  # image index 4 is record key 5
    msg = _one_line(e)
    assert str(rec) in msg and "record 5" in msg and f"offset {offset}" in msg and "bad magic" in msg
    assert "re-create" in msg


def test_truncated_index_and_truncated_rec_are_clear_errors(tmp_path, small):
    rec = write_rec(tmp_path / "r", small.images, small.labels, num_classes=4)
    idx = tmp_path / "r" / "train.idx"
    text = idx.read_text()
    idx.write_text(text[:-3])  # cut inside the last line's offset
    with pytest.raises(UserError) as e:
        RecordFaces(rec)
    msg = _one_line(e)
    assert str(idx) in msg and "truncated" in msg and "re-create it" in msg
    idx.write_text(text[:len(text) // 2].rsplit("\n", 1)[0] + "\n1\n")  # a line with one field
    with pytest.raises(UserError, match=r"line \d+: expected 'key<TAB>offset'"):
        RecordFaces(rec)
    idx.write_text(text)
    rec.write_bytes(rec.read_bytes()[: rec.stat().st_size // 2])  # the .rec cut in half
    with pytest.raises(UserError) as e:
        RecordFaces(rec)
    assert "beyond the end of the .rec" in _one_line(e)
    (tmp_path / "r" / "train.idx").unlink()
    with pytest.raises(UserError, match="train.idx cannot be read.*same name"):
        RecordFaces(rec)
    with pytest.raises(UserError, match="not found"):
        RecordFaces(tmp_path / "nope.rec")


def test_bad_property_and_labels_outside_it(tmp_path, small):
    rec = write_rec(tmp_path / "r", small.images, small.labels, num_classes=4)
    (tmp_path / "r" / "property").write_text("four,112,112\n")
    with pytest.raises(UserError, match="property: expected one line 'num_classes,height,width'"):
        RecordFaces(rec)
    (tmp_path / "r" / "property").write_text("2,112,112\n")
    data = RecordFaces(rec)
    with pytest.raises(UserError, match=r"label 3 is outside 0\.\.1"):
        data[len(data) - 1]


def test_dataloader_with_workers_streams_and_errors_stay_one_line(tmp_path, small):
    rec = write_rec(tmp_path / "r", small.images, small.labels, num_classes=4)
    data = open_streamed(str(rec))
    seen = []
    for x, y in epoch_batches(data, epoch=0, steps=2, local_batch=8, rank=0, world=1, seed=0, workers=2):
        assert x.shape == (8, 112, 112, 3) and x.dtype == torch.uint8 and y.dtype == torch.int64
        seen += y.tolist()
    assert len(seen) == 16
    # two ranks see disjoint shares of the same shuffle
    shares = [[int(y) for _, ys in epoch_batches(data, 0, 1, 10, r, 2, 0, 0) for y in ys] for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == sorted(small.labels.tolist())
    raw = bytearray(rec.read_bytes())
    # break every image record's magic (records 1..20); the workers' errors come back as one line
    for line in (tmp_path / "r" / "train.idx").read_text().splitlines()[1:21]:
        off = int(line.split("\t")[1])
        raw[off:off + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(raw))
    with pytest.raises(UserError) as e:
        list(epoch_batches(RecordFaces(rec), 0, 1, 4, 0, 1, 0, workers=2))
    assert "bad magic" in _one_line(e) and str(rec) in str(e.value)


def test_lazy_folder_reads_what_the_in_memory_reader_reads(tmp_path, small):
    from compress.data.folder import read_image_folder

    root = write_image_folder(tmp_path / "faces", small)
    lazy, eager = open_streamed(str(root)), read_image_folder(root, progress=False)
    assert isinstance(lazy, LazyFolder) and len(lazy) == len(eager) and lazy.num_classes == eager.num_classes
    # same file order (identity folders, then names, sorted) and so the same pixels and labels
    for i in range(len(lazy)):
        img, y = lazy[i]
        assert y == eager.labels[i]
        np.testing.assert_array_equal(img.numpy(), eager.images[i])
    assert lazy.fingerprint() == LazyFolder(root).fingerprint() and "streamed" in lazy.describe()
    with pytest.raises(UserError, match="does not exist"):
        LazyFolder(tmp_path / "none")


class _Pixels:
    """An embedder whose embedding is the mean colour: pairs of the same toy identity score close to 1."""

    name, runtime, input_size = "mean-colour", "numpy", 112

    def embed(self, images, flip=False, progress=False):
        e = images.reshape(len(images), -1, 3).astype(np.float64)
        e = np.concatenate([e[:, :1000].mean(1), e[:, -1000:].mean(1)], 1) - 128
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def _pairs(faces, n_pairs: int):
    rng = np.random.default_rng(0)
    imgs, same = [], []
    for i in range(n_pairs):
        a = rng.integers(len(faces))
        pool = np.flatnonzero((faces.labels == faces.labels[a]) == (i % 2 == 0))
        imgs += [faces.images[a], faces.images[rng.choice(pool[pool != a])]]
        same.append(i % 2 == 0)
    return np.stack(imgs), same


def test_bin_round_trip_and_ten_fold_protocol(tmp_path):
    faces = toy_faces(classes=6, per_class=6)
    imgs, same = _pairs(faces, 40)
    path = write_bin(tmp_path / "lfw.bin", imgs, same, fmt="PNG")
    images, issame = load_bin(path)
    np.testing.assert_array_equal(images, imgs)
    assert issame.tolist() == same
    res = evaluate_bin(_Pixels(), path, flip=False)
    r = res["results"]["no_flip"]
    assert r["n_folds"] == 10 and r["n_pairs"] == 40 and r["accuracy_mean"] > 0.9
    assert "lfw.bin" in res["dataset"] and "10-fold" in res["protocol"] and res["host"]
    shuffled = write_bin(tmp_path / "x.bin", imgs, [not s for s in same], fmt="PNG")  # labels flipped
    assert evaluate_bin(_Pixels(), shuffled, flip=False)["results"]["no_flip"]["accuracy_mean"] < 0.5


def test_bad_bin_files_are_refused(tmp_path):
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps((__import__("os").system, [True])))
    with pytest.raises(UserError, match="not an insightface verification .bin .*os.*system"):
        load_bin(evil)
    short = tmp_path / "short.bin"
    with open(short, "wb") as f:
        pickle.dump(([encode(np.zeros((112, 112, 3), np.uint8))], [True]), f)
    with pytest.raises(UserError, match="1 images for 1 pairs"):
        load_bin(short)
    cut = write_bin(tmp_path / "cut.bin", np.zeros((2, 112, 112, 3), np.uint8), [True])
    cut.write_bytes(cut.read_bytes()[:100])
    with pytest.raises(UserError, match="cut.bin is not an insightface"):
        load_bin(cut)
    with pytest.raises(UserError, match="not found"):
        load_bin(tmp_path / "none.bin")


def _train_cfg(data, **kw):
    from compress.train.config import make_config

    base = dict(data=str(data), epochs=1, batch_size=8, s=16.0, m=0.2, lr=0.05, warmup_epochs=0.5, progress=False,
                threads=1, workers=2, device="cpu")
    return make_config(**{**base, **kw})


@pytest.mark.slow
def test_training_streams_a_rec_and_a_lazy_folder(tmp_path, small):
    from compress.train.trainer import train

    rec = write_rec(tmp_path / "ms1m", small.images, small.labels, num_classes=4)
    m = train(_train_cfg(rec, epochs=2), tmp_path / "run")
    assert m["data"]["images"] == 20 and m["data"]["identities"] == 4 and "RecordIO" in m["data"]["description"]
    assert len(m["history"]) == 2 and all(np.isfinite(h["loss"]) for h in m["history"])
    assert m["data"]["fingerprint"] == RecordFaces(rec).fingerprint()
    folder = write_image_folder(tmp_path / "faces", small)
    m = train(_train_cfg(folder, stream=True, workers=0), tmp_path / "run2")
    assert "streamed" in m["data"]["description"] and m["config"]["stream"] is True
    with pytest.raises(UserError) as e:  # cached teacher targets need every image in memory
        train(_train_cfg(rec, teacher=str(tmp_path / "t.onnx"), distill_weight=1.0), tmp_path / "run3")
    assert "teacher_views = \"online\"" in _one_line(e)


def test_cli_evaluate_bin_prints_each_file_with_protocol_host_and_model(tmp_path):
    import json

    from compress.model import build_model
    from compress.model.io import save_model

    torch.manual_seed(0)
    save_model(build_model("table3"), tmp_path / "run" / "model.pt")
    imgs, same = _pairs(toy_faces(classes=6, per_class=6), 20)
    a, b = write_bin(tmp_path / "lfw.bin", imgs, same), write_bin(tmp_path / "cfp_fp.bin", imgs, same)
    cmd = ["evaluate", "--model", str(tmp_path / "run"), "--bin", str(a), "--bin", str(b), "--json",
           str(tmp_path / "e.json")]
    r = run_cli(*cmd)
    assert r.stdout.count("10-fold cross-validation") == 2 and "lfw.bin" in r.stdout and "cfp_fp.bin" in r.stdout
    assert "measured on" in r.stdout and "sha256" in r.stderr
    res = json.loads((tmp_path / "e.json").read_text())
    assert set(res) - {"written_by"} == {"lfw.bin", "cfp_fp.bin"} and res["lfw.bin"]["n_pairs"] == 20
    bad = run_cli(*cmd[:-2], "--bin", tmp_path / "none.bin", check_rc=None)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "none.bin not found" in bad.stderr


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_on_a_rec(tmp_path):
    import json
    import os
    import subprocess
    import sys

    faces = toy_faces(classes=4, per_class=8)  # 32 images, 2 steps of 16 (8 per process)
    rec = write_rec(tmp_path / "ms1m", faces.images, faces.labels, num_classes=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "compress.cli", "train", "--data", str(rec), "--epochs", "1", "--batch-size", "16", "--scale", "16",
           "--margin", "0.2", "--lr", "0.05", "--device", "cpu", "--threads", "1", "--workers", "1",
           "--no-progress", "--out", str(tmp_path / "run")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, (r.stdout[-1500:], r.stderr[-1500:])
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["world_size"] == 2 and m["data"]["images"] == 32 and len(m["history"]) == 1
    assert "2 process(es)" in r.stdout


def test_bin_results_are_extra_rows_in_the_report_and_pipeline_checks_bins(tmp_path):
    from compress.pipeline import _Evaluator
    from compress.recipe import EvaluateConfig
    from compress.report import accuracy_record, collect, write_accuracy
    from compress.report.render import to_markdown

    imgs, same = _pairs(toy_faces(classes=6, per_class=6), 20)
    path = write_bin(tmp_path / "cfp_fp.bin", imgs, same, fmt="PNG")
    run = tmp_path / "RUN"
    res = evaluate_bin(_Pixels(), path)
    write_accuracy(run, accuracy_record("trained", {**res, "dataset": "LFW stand-in"}))
    write_accuracy(run, accuracy_record("bin:trained:cfp_fp.bin", res))
    rep = collect(run)
    extra = rep["accuracy"]["extra_sets"]
    assert [e["stage"] for e in extra] == ["bin:trained:cfp_fp.bin"] and "cfp_fp.bin" in extra[0]["dataset"]
    assert rep["accuracy"]["same_protocol"]  # an extra set is its own data set, not a protocol mismatch
    md = to_markdown(rep)
    assert "bin:trained:cfp_fp.bin" in md and f"{extra[0]['accuracy']:.2f}%" in md
    ev = _Evaluator(EvaluateConfig(bins=(str(path),)), seed=0)
    assert ev.bin_outputs(run, "trained")[0].name == "bin-trained-cfp_fp.bin.json" and "bins" in ev.key()
    assert "bins" not in _Evaluator(EvaluateConfig(), seed=0).key()  # recipes without bins keep their cached stages
    with pytest.raises(UserError, match="bins: .*none.bin not found"):
        _Evaluator(EvaluateConfig(bins=(str(tmp_path / "none.bin"),)), seed=0)
