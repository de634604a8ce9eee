import numpy as np
import pytest
import torch
from PIL import Image

from compress.data.folder import read_image_folder
from compress.data.pairs import make_pairs
from compress.data.transforms import augment, augment_mirror, augment_strong, to_float
from compress.errors import UserError


def _folder(tmp_path, n_ids=3, per=4):
    rng = np.random.default_rng(0)
    for i in range(n_ids):
        d = tmp_path / f"person{i}"
        d.mkdir(parents=True)
        for j in range(per):
            Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(d / f"{j}.png")
    return tmp_path


def test_image_folder_reads_labels_and_skips_corrupt(tmp_path):
    root = _folder(tmp_path / "f")
    (root / "person1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.fromarray(np.zeros((60, 50, 3), np.uint8)).save(root / "person2" / "small.png")
    fs = read_image_folder(root, progress=False)
    assert fs.images.shape == (13, 112, 112, 3)
    assert fs.classes == ["person0", "person1", "person2"]
    assert np.bincount(fs.labels).tolist() == [4, 4, 5]
    assert len(fs.skipped) == 1 and fs.skipped[0].endswith("broken.jpg")
    assert fs.resized == 1
    assert "1 unreadable skipped" in fs.describe()


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_image_folder(tmp_path / "nope")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        read_image_folder(tmp_path / "empty")


def test_normalisation_matches_imagenet_convention():
    x = torch.full((1, 112, 112, 3), 255, dtype=torch.uint8)
    y = to_float(x)
    assert y.shape == (1, 3, 112, 112)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))


def test_augment_mirror_shift_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 112, 112)
    y = augment(x, g)
    assert y.shape == x.shape and not torch.allclose(x, y)
    # identity settings leave the batch unchanged; pure flip mirrors it
    same = augment(x, torch.Generator().manual_seed(0), max_shift=0, min_scale=1.0, p_flip=0.0)
    assert torch.allclose(same, x, atol=1e-4)
    flipped = augment(x, torch.Generator().manual_seed(0), max_shift=0, min_scale=1.0, p_flip=1.0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-4)


def test_mirror_policy_is_exactly_the_reported_mirror():
    # cached teacher views are exact targets only if nothing but the mirror changes a pixel
    x = to_float(torch.randint(0, 256, (32, 112, 112, 3), dtype=torch.uint8))
    out, flip = augment_mirror(x, torch.Generator().manual_seed(3), return_flip=True)
    assert 0 < flip.sum() < len(flip)
    assert torch.equal(out, torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x))


def test_strong_augment_geometry_colour_and_flip_mask():
    x = to_float(torch.randint(0, 256, (16, 112, 112, 3), dtype=torch.uint8))
    # no rotation, zoom, shift or colour change: only the reported mirror remains
    plain, flip = augment_strong(x, torch.Generator().manual_seed(0), max_rotate_deg=0, scale=(1, 1), max_shift=0,
                                 jitter=0, p_gray=0, return_flip=True)
    assert 0 < flip.sum() < len(flip)
    assert torch.allclose(plain, torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x), atol=1e-4)
    # greyscale always: the three channels are one image (in [0,1] space)
    gray = augment_strong(x, torch.Generator().manual_seed(0), p_gray=1.0)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = gray * std + mean
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 1], rgb[:, 2], atol=1e-5)
    # the full policy changes images, keeps the layout and the value range, and is reproducible from the seed
    a = augment_strong(x, torch.Generator().manual_seed(7))
    b = augment_strong(x, torch.Generator().manual_seed(7))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x, atol=0.1)
    back = a * std + mean
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5


def test_pairs_are_balanced_and_identity_disjoint_across_folds():
    labels = np.repeat(np.arange(40), 5)
    a, b, same, fold = make_pairs(labels, folds=10, pairs_per_fold=20, seed=0)
    assert len(a) == 200 and same.sum() == 100
    assert np.all((labels[a] == labels[b]) == same)
    ids_per_fold = [set(labels[a[fold == k]]) | set(labels[b[fold == k]]) for k in range(10)]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not ids_per_fold[i] & ids_per_fold[j]


def test_unlabelled_images_keep_cleaning_counts(tmp_path):
    from compress.data.folder import FaceSet
    from compress.data.sources import with_unlabelled

    root = _folder(tmp_path / "u", n_ids=1, per=3)
    base = FaceSet(np.zeros((2, 112, 112, 3), np.uint8), np.array([0, 1]), ["a", "b"], "base",
                   dropped={"no_face": ["x.jpg"]})
    fs = with_unlabelled(base, [root], progress=False)
    assert len(fs) == 5 and fs.labels.tolist() == [0, 1, -1, -1, -1]
    assert fs.dropped == {"no_face": ["x.jpg"]} and fs.classes == ["a", "b"]
