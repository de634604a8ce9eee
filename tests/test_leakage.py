"""The LFW leakage filter: the calibrated cut, the drops per source, and its wiring into training configs."""

from __future__ import annotations

import numpy as np
import pytest

from compress.data.folder import FaceSet
from compress.data.leakage import LfwGallery, calibrate, drop_near_lfw, part_ranges
from compress.data.sources import with_unlabelled
from compress.errors import UserError
from compress.train.config import make_config


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _gallery(people: int = 40, per: int = 3, dim: int = 64, noise: float = 0.3, seed: int = 0) -> LfwGallery:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(people, dim)))
    emb = _unit(np.repeat(centres, per, axis=0) + noise * rng.normal(size=(people * per, dim)) / np.sqrt(dim))
    names = [f"P{p:03d}/P{p:03d}_{k:04d}.jpg" for p in range(people) for k in range(per)]
    return LfwGallery(emb, np.array([n.split("/")[0] for n in names]), names)


def _faces(n: int, labelled: int) -> FaceSet:
    images = np.zeros((n, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    labels = np.r_[np.arange(labelled) % 2, -np.ones(n - labelled)].astype(np.int64)
    return FaceSet(images, labels, ["a", "b"], "test", parts=[("labelled", labelled), ("utk", n - labelled)])


def test_calibrated_cut_separates_chance_from_own_person():
    g = _gallery()
    cut = calibrate(g, 0.99)
    other = cut["best_other_person"]
    assert other["p50"] <= other["p90"] <= other["p99"] <= other["p99.9"]
    assert cut["threshold"] == pytest.approx(other["p99"], abs=1e-4)
    # Same-person images are far closer than chance matches here, so the cut finds (almost) all of them.
    assert cut["own_person_recall"] > 0.95
    assert cut["own_person_recall_of"] == len(g.names)
    # A higher quantile is a higher cut.
    assert calibrate(g, 0.999)["threshold"] >= cut["threshold"]


def test_calibrate_rejects_a_meaningless_quantile():
    with pytest.raises(UserError, match="quantile"):
        calibrate(_gallery(), 1.0)


def test_drop_near_lfw_drops_copies_of_test_faces_and_counts_per_source():
    g = _gallery()
    rng = np.random.default_rng(1)
    faces = _faces(50, 10)
    emb = _unit(rng.normal(size=(50, g.embeddings.shape[1])))  # unrelated faces
    leaked = [3, 12, 40]  # one labelled, two unlabelled: near-copies of LFW test images
    emb[leaked] = _unit(g.embeddings[[0, 7, 99]] + 0.01 * rng.normal(size=(3, g.embeddings.shape[1])))
    threshold = calibrate(g)["threshold"]
    kept, keep, rec = drop_near_lfw(faces, emb, g, threshold)
    dropped = sorted(set(range(50)) - set(keep.tolist()))
    assert set(leaked) <= set(dropped) and len(dropped) <= len(leaked) + 3  # + chance matches (~1% by design)
    assert rec["dropped"] == len(dropped) and rec["kept"] == len(kept) == 50 - len(dropped)
    assert rec["per_source"]["labelled"]["dropped"] == sum(d < 10 for d in dropped)
    assert rec["per_source"]["utk"]["dropped"] == sum(d >= 10 for d in dropped)
    assert {c["lfw_image"] for c in rec["closest"][:3]} == {g.names[0], g.names[7], g.names[99]}
    assert rec["closest"][0]["cosine"] >= threshold
    # The kept set keeps its labels, classes and part sizes.
    assert kept.parts == [("labelled", 10 - sum(d < 10 for d in dropped)), ("utk", 40 - sum(d >= 10 for d in dropped))]
    assert (kept.labels == faces.labels[keep]).all() and kept.classes == faces.classes


def test_with_unlabelled_records_the_parts(tmp_path):
    from PIL import Image

    folder = tmp_path / "utk" / "x"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((112, 112, 3), i * 40, np.uint8)).save(folder / f"{i}.png")
    base = FaceSet(np.zeros((5, 112, 112, 3), np.uint8), np.zeros(5, np.int64), ["a"], "base")
    both = with_unlabelled(base, [str(tmp_path / "utk")], progress=False)
    assert [(n, a, b) for n, a, b in part_ranges(both)] == [("base", 0, 5), (str(tmp_path / "utk"), 5, 8)]


def test_leakage_filter_needs_a_teacher_and_a_sane_quantile():
    with pytest.raises(UserError, match="teacher"):
        make_config(leakage_lfw="lfw")
    with pytest.raises(UserError, match="leakage_quantile"):
        make_config(leakage_quantile=0.2)


def _fake_lfw(root, faces) -> list[int]:
    """An LFW folder whose person P0 is two of the training faces (a leak); the rest are other toy faces.
    Returns the leaked training indices."""
    from PIL import Image

    from .conftest import toy_faces

    others = toy_faces(classes=3, per_class=2, seed=9).images
    people = {"P0": [faces.images[0], faces.images[1]], "P1": [others[0], others[1]],
              "P2": [others[2], others[3]], "P3": [others[4], others[5]]}
    for name, imgs in people.items():
        (root / name).mkdir(parents=True)
        for k, img in enumerate(imgs, start=1):
            Image.fromarray(img).save(root / name / f"{name}_{k:04d}.jpg", format="PNG")  # lossless copy
    (root / "pairs.txt").write_text("1 2\nP0 1 2\nP1 1 2\nP2 1 P3 1\nP2 2 P3 2\n")
    return [0, 1]


@pytest.mark.slow
def test_training_drops_faces_of_lfw_test_people(tmp_path, faces, monkeypatch):
    """The trainer embeds the data with the teacher, drops the two training faces that are LFW test images,
    trains on the rest and records the filter in the manifest."""
    import torch
    from PIL import Image

    from compress.evaluate import lfw
    from compress.model import build_model
    from compress.train.config import TrainConfig
    from compress.train.trainer import train

    def align(paths, cache_dir, progress):
        imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        return np.stack(imgs), ["ok"] * len(paths), "fake aligner"

    monkeypatch.setattr(lfw, "_align_files", align)
    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tcache"))
    leaked = _fake_lfw(tmp_path / "lfw", faces)
    torch.manual_seed(1)
    teacher = tmp_path / "teacher.onnx"
    torch.onnx.export(build_model("table3").eval(), torch.zeros(1, 3, 112, 112), teacher, input_names=["x"],
                      output_names=["e"], dynamic_axes={"x": {0: "b"}, "e": {0: "b"}}, dynamo=False)
    c = TrainConfig(schedule="table3", epochs=1, batch_size=24, lr=0.01, s=16, m=0.2, progress=False, threads=1,
                    augment=False, teacher=str(teacher), distill_weight=1.0, leakage_lfw=str(tmp_path / "lfw"),
                    leakage_quantile=0.5)
    m = train(c, tmp_path / "run", faces=faces)
    rec = m["data"]["lfw_leakage_filter"]
    assert rec["dropped"] >= len(leaked) and rec["kept"] == len(faces) - rec["dropped"] == m["data"]["images"]
    assert {c["index"] for c in rec["closest"] if c["cosine"] > 0.9999} >= set(leaked)
    assert rec["calibration"]["quantile"] == 0.5 and rec["teacher_sha256"] == m["teacher"]["sha256"]
    assert "near LFW test people dropped" in m["data"]["description"]


def test_several_labelled_folders_merge_as_distinct_people(tmp_path):
    from compress.data.sources import load_faces

    from .conftest import toy_faces, write_image_folder

    a = write_image_folder(tmp_path / "celeb", toy_faces(classes=2, per_class=3))
    b = write_image_folder(tmp_path / "asian" / "faces", toy_faces(classes=3, per_class=2, seed=3))
    faces = load_faces(f"{a}, aligned:{b}", progress=False)
    assert len(faces) == 12 and faces.num_classes == 5
    assert faces.classes[:2] == ["celeb/id0", "celeb/id1"]
    assert faces.classes[2].startswith("asian/")
    assert sorted(set(faces.labels[6:].tolist())) == [2, 3, 4]
    assert faces.parts == [(str(a), 6), (f"aligned:{b}", 6)]
