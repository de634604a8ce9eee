"""LFW View 2: the pairs parser (real and synthetic files), fold layout, and evaluate_lfw with fakes."""

import json
from pathlib import Path

import numpy as np
import pytest

from compress.errors import UserError
from compress.evaluate import lfw
from compress.evaluate.lfw import LfwPairs, evaluate_lfw, parse_pairs, unique_images

SHARED = Path(__file__).resolve().parents[2] / "shared"
LFW_DIR = SHARED / "data" / "lfw"
TEACHER = SHARED / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"
needs_lfw = pytest.mark.skipif(not (LFW_DIR / "pairs.txt").is_file(), reason="../shared/data/lfw absent")


# ---------------------------------------------------------------- the real pairs.txt

@pytest.mark.shared
@needs_lfw
def test_real_pairs_file():
    pairs = parse_pairs(LFW_DIR / "pairs.txt")
    assert len(pairs) == 6000
    assert pairs.n_folds == 10 and pairs.pairs_per_fold == 300
    assert int(pairs.issame.sum()) == 3000
    assert pairs.left[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert pairs.right[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    # Folds are contiguous blocks of 600: 300 matched then 300 mismatched.
    np.testing.assert_array_equal(pairs.folds, np.repeat(np.arange(10), 600))
    for k in range(10):
        blk = pairs.issame[pairs.folds == k]
        assert blk.size == 600 and blk[:300].all() and not blk[300:].any()
    names = unique_images(pairs)
    assert len(names) == len(set(names))
    root = LFW_DIR / "lfw-deepfunneled"
    assert all((root / n).is_file() for n in names)
    assert lfw.locate_lfw(LFW_DIR) == (LFW_DIR / "pairs.txt", root)


# ---------------------------------------------------------------- synthetic pairs files

def _write_pairs(path: Path, n_folds=2, per_fold=3, sep="\t") -> Path:
    lines = [f"{n_folds}{sep}{per_fold}"]
    for k in range(n_folds):
        for i in range(per_fold):
            lines.append(sep.join([f"P{k}_{i}", "1", "2"]))
        for i in range(per_fold):
            lines.append(sep.join([f"P{k}_{i}", "1", f"P{k}_{(i + 1) % per_fold}", "2"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_synthetic_pairs(tmp_path):
    pairs = parse_pairs(_write_pairs(tmp_path / "pairs.txt", sep=" "))
    assert isinstance(pairs, LfwPairs)
    assert len(pairs) == 12 and pairs.n_folds == 2 and pairs.pairs_per_fold == 3
    np.testing.assert_array_equal(pairs.folds, [0] * 6 + [1] * 6)
    np.testing.assert_array_equal(pairs.issame, ([True] * 3 + [False] * 3) * 2)
    assert pairs.left[0] == "P0_0/P0_0_0001.jpg" and pairs.right[0] == "P0_0/P0_0_0002.jpg"
    assert pairs.left[3] == "P0_0/P0_0_0001.jpg" and pairs.right[3] == "P0_1/P0_1_0002.jpg"
    assert len(unique_images(pairs)) == 12  # 6 people x images 1 and 2


def test_parse_ignores_blank_lines(tmp_path):
    p = _write_pairs(tmp_path / "pairs.txt")
    p.write_text(p.read_text() + "\n\n")
    assert len(parse_pairs(p)) == 12


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda L: ["ten 300"] + L[1:], "line 1"),
        (lambda L: ["2"] + L[1:], "line 1"),
        (lambda L: L[:3] + ["P0_1 1 2 3 4"] + L[4:], "line 4: expected"),
        (lambda L: L[:3] + ["P0_1 1 x"] + L[4:], "line 4: image number"),
        (lambda L: L[:3] + ["P0_1 0 2"] + L[4:], "line 4: image number"),
        (lambda L: L[:-1], "header says 2 folds x 6 pairs = 12"),
        (lambda L: L + ["P9 1 2"], "header says"),
        # A mismatched line where fold 1 still expects matched ones (line 3 is the second pair).
        (lambda L: L[:2] + ["P0_1 1 P0_2 2"] + L[3:], "line 3: fold 1 should have 3 matched"),
        (lambda L: L[:12] + ["P1_2 1 2"] + L[13:], "line 13: fold 2"),
        (lambda L: [], "empty"),
    ],
)
def test_malformed_pairs_files(tmp_path, edit, match):
    p = _write_pairs(tmp_path / "pairs.txt", sep=" ")
    p.write_text("\n".join(edit(p.read_text().splitlines())) + "\n")
    with pytest.raises(UserError, match=match):
        parse_pairs(p)


def test_missing_pairs_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        parse_pairs(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="no pairs.txt"):
        evaluate_lfw(FakeEmbedder(), tmp_path)


# ---------------------------------------------------------------- evaluate_lfw with a fake aligner/embedder

def _synthetic_lfw(tmp_path: Path, n_folds=2, per_fold=10) -> Path:
    """A tiny LFW: each person's images are one flat colour (plus noise), so identity is the colour."""
    from PIL import Image

    root = tmp_path / "lfw"
    images = root / "lfw-deepfunneled"
    root.mkdir(parents=True)
    _write_pairs(root / "pairs.txt", n_folds=n_folds, per_fold=per_fold)
    names = unique_images(parse_pairs(root / "pairs.txt"))
    people = sorted({n.split("/")[0] for n in names})
    rng = np.random.default_rng(0)
    # Well-separated colours: distinct hues on a circle, so cosine of (colour - 128) separates people.
    angles = np.linspace(0, 2 * np.pi, len(people), endpoint=False)
    colours = {p: 128 + 100 * np.array([np.cos(a), np.sin(a), np.cos(a + 2)]) for p, a in zip(people, angles)}
    for name in names:
        person = name.split("/")[0]
        img = np.clip(colours[person] + rng.normal(0, 3, (60, 60, 3)), 0, 255).astype(np.uint8)
        (images / person).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(images / name)
    return root


class FakeEmbedder:
    name = "fake-colour"
    runtime = "numpy"

    def __init__(self):
        self.calls = []

    def embed(self, images, batch_size=64, flip=False, progress=False):
        self.calls.append(flip)
        x = images.astype(np.float32)
        e = x.mean(axis=(1, 2)) - 128.0
        if flip:
            e = e + x[:, :, ::-1].mean(axis=(1, 2)) - 128.0
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def _fake_aligner(fail: dict[str, str] | None = None):
    from PIL import Image

    fail = fail or {}
    seen = {}

    def align(paths, cache_dir, progress):
        seen["paths"], seen["cache_dir"] = list(paths), cache_dir
        images, statuses = [], []
        for p in paths:
            status = fail.get(p.name, "ok")
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB").resize((112, 112)))
            images.append(np.zeros_like(arr) if status not in ("ok", "haar_reject") else arr)
            statuses.append(status)
        return np.stack(images), statuses, "fake aligner"

    return align, seen


def test_evaluate_lfw_with_fakes(tmp_path, monkeypatch):
    root = _synthetic_lfw(tmp_path)
    align, seen = _fake_aligner()
    monkeypatch.setattr(lfw, "_align_files", align)
    emb = FakeEmbedder()
    out = evaluate_lfw(emb, root, cache_dir=tmp_path / "cache", progress=False, roc_path=tmp_path / "roc.png")
    json.dumps(out)
    assert emb.calls == [False, True]
    assert seen["cache_dir"] == tmp_path / "cache" and len(seen["paths"]) == out["n_images"]
    assert out["dataset"] == "LFW deep-funneled, View 2, 40 pairs"
    assert out["protocol"].startswith("2-fold cross-validation over pairs.txt's folds, threshold chosen on 1 fold")
    assert out["model"] == "fake-colour" and out["runtime"] == "numpy" and out["aligner"] == "fake aligner"
    assert out["alignment"]["failures"] == 0 and out["alignment"]["aligned"] == out["n_images"]
    for key in ("flip", "no_flip"):
        assert out["results"][key]["accuracy_mean"] == 1.0
        assert out["results"][key]["n_folds"] == 2 and out["results"][key]["n_pairs"] == 40
    assert set(out["timings"]) >= {"align_s", "embed_s", "total_s"}
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG" and out["roc_path"] == str(tmp_path / "roc.png")


def test_flip_option(tmp_path, monkeypatch):
    root = _synthetic_lfw(tmp_path, per_fold=3)
    monkeypatch.setattr(lfw, "_align_files", _fake_aligner()[0])
    emb = FakeEmbedder()
    out = evaluate_lfw(emb, root, flip=False, progress=False)
    assert list(out["results"]) == ["no_flip"] and emb.calls == [False]
    out = evaluate_lfw(emb, root, flip=True, progress=False)
    assert list(out["results"]) == ["flip"]
    with pytest.raises(UserError, match="flip"):
        evaluate_lfw(emb, root, flip="yes", progress=False)


def test_alignment_failure_falls_back_to_centre_crop(tmp_path, monkeypatch):
    root = _synthetic_lfw(tmp_path)
    fail = {"P0_0_0001.jpg": "no_face", "P0_1_0001.jpg": "haar_reject"}
    monkeypatch.setattr(lfw, "_align_files", _fake_aligner(fail)[0])
    out = evaluate_lfw(FakeEmbedder(), root, flip=False, progress=False)
    a = out["alignment"]
    assert a["status_counts"] == {"ok": out["n_images"] - 2, "no_face": 1, "haar_reject": 1}
    assert a["failures"] == 1 and a["haar_reject"] == 1 and a["aligned"] == out["n_images"] - 1
    assert a["failed_images"] == ["P0_0_0001.jpg"] and "centre crop" in a["failure_handling"]
    # The fallback crop (not the aligner's zeros) was embedded, so the pair still verifies.
    assert out["results"]["no_flip"]["accuracy_mean"] == 1.0


def test_unreadable_and_missing_images_are_user_errors(tmp_path, monkeypatch):
    root = _synthetic_lfw(tmp_path, per_fold=3)
    monkeypatch.setattr(lfw, "_align_files", _fake_aligner({"P0_0_0001.jpg": "unreadable"})[0])
    with pytest.raises(UserError, match="could not be read"):
        evaluate_lfw(FakeEmbedder(), root, progress=False)
    (root / "lfw-deepfunneled" / "P0_0" / "P0_0_0001.jpg").unlink()
    with pytest.raises(UserError, match="missing"):
        evaluate_lfw(FakeEmbedder(), root, progress=False)


def test_centre_crop_shape(tmp_path):
    from PIL import Image

    img = np.zeros((250, 250, 3), np.uint8)
    img[61:189, 61:189] = 200  # the central 128 px
    Image.fromarray(img).save(tmp_path / "x.png")
    crop = lfw.centre_crop(tmp_path / "x.png")
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert crop[2:-2, 2:-2].min() > 150


# ---------------------------------------------------------------- the teacher on real LFW images (slow)

def _has_aligner() -> bool:
    try:
        from compress.data import align  # noqa: F401
    except ImportError:
        return False
    return hasattr(align, "align_files")


@pytest.mark.slow
@pytest.mark.shared
@needs_lfw
@pytest.mark.skipif(not TEACHER.is_file(), reason="teacher model absent")
def test_teacher_on_first_lfw_pairs(tmp_path):
    """The real aligner + teacher on the first 50 matched and 50 mismatched pairs of fold 1 (2 folds of 25)."""
    if not _has_aligner():
        pytest.skip("compress.data.align.align_files not available yet")
    from compress.evaluate.embed import OnnxEmbedder

    lines = (LFW_DIR / "pairs.txt").read_text().splitlines()[1:601]
    matched, mismatched = lines[:300], lines[300:]
    body = matched[:25] + mismatched[:25] + matched[25:50] + mismatched[25:50]
    root = tmp_path / "lfw"
    root.mkdir()
    (root / "pairs.txt").write_text("2\t25\n" + "\n".join(body) + "\n")
    (root / "lfw-deepfunneled").symlink_to(LFW_DIR / "lfw-deepfunneled")
    out = evaluate_lfw(OnnxEmbedder(TEACHER), root, flip=True, cache_dir=tmp_path / "cache", progress=False)
    assert out["alignment"]["failures"] <= 2
    assert out["results"]["flip"]["accuracy_mean"] >= 0.95
