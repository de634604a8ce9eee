"""Streamed training data: image folders read lazily, insightface RecordIO, and the DataLoader over either.

The in-memory FaceSet (compress/data/folder.py) stays the small-data path: it decodes everything once, so a CPU
epoch costs only the network. Past a few hundred thousand images that array no longer fits in memory, so these
sets hold only what locates an image (a path or a file offset) and decode on __getitem__, in DataLoader
workers. The locators live in numpy arrays rather than Python lists: forked workers touch the reference count
of every Python object they read, which copies its memory page into each worker, while numpy buffers stay
shared.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import UserError
from .folder import IMAGE_EXTS
from .recordio import RecordFaces, decode_image, unwrap_worker_error


class LazyFolder(Dataset):
    """An ImageFolder (one sub-folder per identity) as a Dataset of (uint8 [H,W,3] RGB tensor, class id),
    decoding each image when it is asked for. Memory: the relative paths as one byte string plus offsets."""

    synthetic = False

    def __init__(self, root: str | Path, size: int = 112) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"data folder {self.root} does not exist; pass an ImageFolder of aligned faces "
                            "(one sub-folder per identity), a train.rec, or synthetic")
        self.size = size
        self.source = str(self.root)
        self.skipped: list[str] = []
        self.dropped: dict[str, list[str]] = {}
        chunks: list[bytes] = []
        lengths: list[int] = []
        labels: list[int] = []
        self.classes: list[str] = []
        for d in sorted(e.name for e in os.scandir(self.root) if e.is_dir()):
            names = sorted(_images_under(self.root / d, d))
            if not names:
                continue
            chunks += names
            lengths += [len(n) for n in names]
            labels += [len(self.classes)] * len(names)
            self.classes.append(d)
        if not chunks:
            raise UserError(f"{self.root} holds no images in identity sub-folders; expected "
                            f"{self.root}/<identity>/<image>.jpg")
        self._paths = np.frombuffer(b"".join(chunks), np.uint8)
        self._ends = np.cumsum(np.asarray(lengths, np.int64))
        self.labels = np.asarray(labels, np.int64)
        if len(self.classes) < 2:
            raise UserError(f"{self.root} has 1 identity folder; training needs at least 2")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.size)

    def path(self, i: int) -> Path:
        start = int(self._ends[i - 1]) if i else 0
        return self.root / self._paths[start:int(self._ends[i])].tobytes().decode("utf-8", "surrogateescape")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        p = self.path(i)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise UserError(f"{p} cannot be read ({e.strerror or type(e).__name__}); the data folder changed "
                            f"during training, restore it") from None
        return torch.from_numpy(decode_image(data, str(p), self.size)), int(self.labels[i])

    def fingerprint(self) -> str:
        """Hash of the file list, labels and sizes (not the pixels: reading every file would cost an epoch)."""
        h = hashlib.sha256(self._paths.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        return (f"image folder {self.source}: {len(self)} images of {self.num_classes} identities, "
                f"streamed (decoded per batch)")


def _images_under(folder: Path, prefix: str) -> Iterator[bytes]:
    """Relative paths (as bytes) of the images below `folder`, found with scandir (no Path per file)."""
    for e in os.scandir(folder):
        if e.is_dir():
            yield from _images_under(Path(e.path), f"{prefix}/{e.name}")
        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTS and e.is_file():
            yield f"{prefix}/{e.name}".encode("utf-8", "surrogateescape")


StreamedFaces = RecordFaces | LazyFolder


def is_recordio(spec: str) -> bool:
    return spec.lower().endswith(".rec")


def open_streamed(spec: str | Path, size: int = 112) -> StreamedFaces:
    """A `.rec` file or an image folder, as a streamed Dataset."""
    return RecordFaces(spec, size) if is_recordio(str(spec)) else LazyFolder(spec, size)


def open_for_training(cfg: Any, size: int) -> StreamedFaces | None:
    """The streamed training set a TrainConfig asks for (a .rec, or `stream = true` on a folder), else None.
    What needs every image in memory at once is refused here, before any work."""
    from ..recipe import resolve_path

    if cfg.data == "synthetic" or not (cfg.stream or is_recordio(cfg.data)):
        return None
    what = f"streamed data ({cfg.data})"
    if cfg.align:
        raise UserError(f"{what} must hold aligned crops; align the folder first (`compress data align SRC DST`) "
                        f"or drop stream")
    if cfg.teacher and cfg.teacher_views == "cached":
        raise UserError(f"cached teacher targets need every image in memory, which {what} avoids; set "
                        f"teacher_views = \"online\" (the teacher embeds each batch)")
    if cfg.unlabelled or getattr(cfg, "leakage_lfw", ""):
        raise UserError(f"unlabelled folders and the LFW leakage filter work on in-memory faces only, not on {what}; "
                        f"drop them or train from an image folder without stream")
    return open_streamed(resolve_path(cfg.data), size)


def epoch_batches(data: StreamedFaces, epoch: int, steps: int, local_batch: int, rank: int, world: int,
                  seed: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's `steps` batches of epoch `epoch` as (uint8 [B,H,W,3], int64 [B]). DistributedSampler
    gives each rank a disjoint share of a per-epoch shuffle (the same on every rank, seeded by seed and epoch),
    so a resumed run draws the batches it would have."""
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    # Workers start from a clean forkserver, not a fork of this process: a fork inherits the thread pools of
    # whatever the process loaded before (OpenVINO, LiteRT, onnxruntime), which can crash the copy.
    loader = DataLoader(data, batch_size=local_batch, sampler=sampler, num_workers=workers, drop_last=True,
                        persistent_workers=False, prefetch_factor=4 if workers else None,
                        multiprocessing_context="forkserver" if workers else None)
    it = iter(loader)
    try:
        for _ in range(steps):
            x, y = next(it)
            yield x, y.long()
    except UserError as e:
        raise unwrap_worker_error(e) from None
    finally:
        del it  # shuts the workers down when a run stops early
