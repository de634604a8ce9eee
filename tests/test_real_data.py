"""Data sources on the real shared data (skipped when ../shared or the MTCNN weights are absent)."""

import numpy as np
import pytest

from compress.data.folder import read_image_folder
from compress.data.mtcnn_weights import weights_present
from compress.data.sources import lfw_unpaired_images

from .conftest import SHARED

LFW = SHARED / "data" / "lfw"
CELEBA = SHARED / "data" / "celeba-299"
needs_shared = pytest.mark.skipif(not (LFW / "pairs.txt").is_file() or not CELEBA.is_dir(),
                                  reason="../shared data not present")


@needs_shared
def test_lfw_unpaired_images_are_the_safe_training_set():
    from compress.evaluate.lfw import parse_pairs

    files = lfw_unpaired_images(LFW)
    assert len(files) == 1549 and len({f.parent.name for f in files}) == 1468
    pairs = parse_pairs(LFW / "pairs.txt")
    paired = {n.split("/")[0] for n in pairs.left + pairs.right}
    assert not paired & {f.parent.name for f in files}


@needs_shared
@pytest.mark.skipif(not weights_present(), reason="MTCNN weights not fetched (compress data fetch-mtcnn)")
def test_raw_folder_is_aligned_and_cleaned_on_read(tmp_path):
    ids = sorted(d for d in CELEBA.iterdir() if d.is_dir())[:2]
    for d in ids:
        (tmp_path / d.name).mkdir()
        for f in sorted(d.glob("*.jpg"))[:4]:
            (tmp_path / d.name / f.name).symlink_to(f)
    (tmp_path / ids[0].name / "blank.png").write_bytes(
        __import__("cv2").imencode(".png", np.full((120, 120, 3), 128, np.uint8))[1].tobytes())
    fs = read_image_folder(tmp_path, progress=False, align=True)
    assert fs.images.shape[1:] == (112, 112, 3)
    assert str(tmp_path / ids[0].name / "blank.png") in fs.dropped["no_face"]
    assert len(fs) + sum(len(v) for v in fs.dropped.values()) == 9
    assert "MTCNN-aligned" in fs.describe() and "dropped (no_face)" in fs.describe()
