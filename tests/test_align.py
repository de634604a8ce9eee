"""MTCNN + 5-point alignment: transform maths, landmarks on real faces, tree walking, cleaning and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from compress.data import align
from compress.data.align import TEMPLATE_112, AlignConfig, align_files, align_image, align_tree, similarity_transform
from compress.data.mtcnn_weights import load_weights, weights_present
from compress.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared"
LFW = SHARED / "data" / "lfw" / "lfw-deepfunneled"
CELEBA = SHARED / "data" / "celeba-299"
LFW_SAMPLE = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
              "George_W_Bush/George_W_Bush_0001.jpg", "Serena_Williams/Serena_Williams_0001.jpg",
              "Tony_Blair/Tony_Blair_0001.jpg", "Jennifer_Aniston/Jennifer_Aniston_0001.jpg",
              "Gloria_Macapagal_Arroyo/Gloria_Macapagal_Arroyo_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg",
              "Ariel_Sharon/Ariel_Sharon_0001.jpg", "Junichiro_Koizumi/Junichiro_Koizumi_0001.jpg"]

needs_weights = pytest.mark.skipif(not weights_present(), reason="MTCNN weights absent (compress data fetch-mtcnn)")
needs_lfw = pytest.mark.skipif(not LFW.is_dir(), reason="../shared/data/lfw absent")


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _face_free(size: int = 200) -> np.ndarray:
    """A smooth gradient with a little noise: no face anywhere."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([x / size * 255, y / size * 255, (x + y) / (2 * size) * 255], axis=2)
    noise = np.random.default_rng(0).normal(0, 4, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- maths (no data)

def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    theta, scale, t = 0.37, 0.61, np.array([12.5, -7.25])
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = scale * src @ R.T + t
    M = similarity_transform(src, dst)
    np.testing.assert_allclose(M[:, :2], scale * R, atol=1e-10)
    np.testing.assert_allclose(M[:, 2], t, atol=1e-9)
    np.testing.assert_allclose(align.apply_transform(M, src), dst, atol=1e-9)


def test_similarity_transform_never_reflects():
    src = TEMPLATE_112.copy()
    mirrored = src * np.array([-1.0, 1.0])  # a reflection cannot be fitted by a similarity
    M = similarity_transform(src, mirrored)
    assert np.linalg.det(M[:, :2]) > 0


def test_missing_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="fetch-mtcnn"):
        load_weights(tmp_path)


def test_missing_source_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        align_tree(tmp_path / "nope", tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------- real faces

@needs_weights
@needs_lfw
def test_lfw_landmarks_land_on_the_template():
    errs = []
    for rel in LFW_SAMPLE:
        res = align_image(_rgb(LFW / rel))
        assert res is not None, rel
        assert res.crop.shape == (112, 112, 3) and res.crop.dtype == np.uint8
        # landmarks_crop is the detected points pushed through the transform
        np.testing.assert_allclose(align.apply_transform(res.transform, res.landmarks), res.landmarks_crop, atol=1e-6)
        errs.append(np.linalg.norm(res.landmarks_crop - TEMPLATE_112, axis=1).mean())
        # source landmarks are plausible: eyes above the nose above the mouth, left eye left of the right one
        lm = res.landmarks
        assert lm[0, 0] < lm[1, 0] and lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()
    assert np.mean(errs) < 3.0, errs


@needs_weights
@pytest.mark.skipif(not CELEBA.is_dir(), reason="../shared/data/celeba-299 absent")
def test_celeba_image_aligns():
    res = align_image(_rgb(CELEBA / "7202" / "012050.jpg"))
    assert res is not None and res.n_faces >= 1
    assert np.linalg.norm(res.landmarks_crop - TEMPLATE_112, axis=1).mean() < 3.0


@needs_weights
def test_face_free_image_gives_none():
    assert align_image(_face_free()) is None


@needs_weights
@needs_lfw
def test_align_tree_counts_lists_and_cache(tmp_path):
    src = tmp_path / "src"
    for rel in LFW_SAMPLE[:4]:
        (src / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes((LFW / rel).read_bytes())
    (src / "misc").mkdir()
    cv2.imwrite(str(src / "misc" / "gradient.png"), _face_free())
    (src / "misc" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "misc" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    cache = tmp_path / "cache"

    dst = tmp_path / "out"
    rep = align_tree(src, dst, cache_dir=cache, progress=False, batch_size=4)
    assert (rep.total, rep.aligned, rep.no_face, rep.unreadable, rep.cache_hits) == (6, 4, 1, 1, 0)
    assert (dst / "no_face.txt").read_text().split() == ["misc/gradient.png"]
    assert (dst / "unreadable.txt").read_text().split("\t")[0] == "misc/corrupt.jpg"
    for rel in LFW_SAMPLE[:4]:
        out = cv2.imread(str(dst / Path(rel).with_suffix(".png")))
        assert out is not None and out.shape == (112, 112, 3)
    saved = json.loads((dst / "align_report.json").read_text())
    assert saved["total"] == 6 and saved["aligned"] == 4 and saved["images_per_s"] > 0
    assert not list(dst.rglob("*.tmp"))

    # Same bytes at another path: every file (the corrupt one included) comes from the cache.
    src2 = tmp_path / "moved"
    src.rename(src2)
    rep2 = align_tree(src2, tmp_path / "out2", cache_dir=cache, progress=False)
    assert rep2.cache_hits == 6 and (rep2.aligned, rep2.no_face, rep2.unreadable) == (4, 1, 1)
    a = cv2.imread(str(dst / Path(LFW_SAMPLE[0]).with_suffix(".png")))
    b = cv2.imread(str(tmp_path / "out2" / Path(LFW_SAMPLE[0]).with_suffix(".png")))
    assert np.array_equal(a, b)

    # In memory, from the cache, in order; failures are zero crops with their status.
    files = [src2 / LFW_SAMPLE[1], src2 / "misc" / "gradient.png", src2 / "misc" / "corrupt.jpg"]
    crops, statuses = align_files(files, cache_dir=cache, progress=False)
    assert crops.shape == (3, 112, 112, 3) and crops.dtype == np.uint8
    assert statuses[0] in ("ok", "haar_reject") and statuses[1:] == ["no_face", "unreadable"]
    assert crops[0].any() and not crops[1].any()


@needs_weights
@needs_lfw
def test_haar_policy_flag_keeps_drop_removes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for rel in LFW_SAMPLE[:2]:
        (src / Path(rel).name).write_bytes((LFW / rel).read_bytes())
    # An impossible Haar requirement (a face wider than the loose crop) makes every crop a Haar reject.
    strict = AlignConfig(haar_min_frac=1.01)
    rep = align_tree(src, tmp_path / "flag", cache_dir=False, progress=False, config=strict)
    assert (rep.haar_rejected, rep.aligned) == (2, 2)
    assert len(list((tmp_path / "flag").glob("*.png"))) == 2
    assert len((tmp_path / "flag" / "haar_rejected.txt").read_text().split()) == 2
    rep = align_tree(src, tmp_path / "drop", cache_dir=False, progress=False, config=strict, haar_policy="drop")
    assert (rep.haar_rejected, rep.aligned) == (2, 0)
    assert not list((tmp_path / "drop").glob("*.png"))
    with pytest.raises(UserError, match="Haar policy"):
        align_tree(src, tmp_path / "x", progress=False, haar_policy="maybe")
