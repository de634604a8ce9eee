"""The training loop: schedule -> network, margin head, SGD/AdamW with warmup + cosine, per-epoch atomic
checkpoints, exact resume, and DistributedDataParallel when launched by torchrun (same code path).

A run folder holds `checkpoint.pt` (rewritten atomically each epoch) while training, and gains `model.pt` and
`manifest.json` when it finishes; the manifest is written last, so its presence means the run is complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..artifacts import (atomic_write, code_fingerprint, folder_lock, manifest_kind, read_manifest, refuse_special_folder,
                          host_description, now_iso, versions, write_json)
from ..data.folder import FaceSet
from ..data.lazy import StreamedFaces, epoch_batches, open_for_training
from ..data.sources import EVAL_IDENTITY_OFFSET, load_faces, recipe_extras, synthetic_faces
from ..data.transforms import augment, augment_mirror, augment_strong, to_float
from ..errors import UserError
from ..evaluate.embed import Embedder, load_embedder
from ..model.io import load_model, save_model
from ..model.network import FaceMobileNet
from ..schedules import Schedule, load_schedule
from .config import TrainConfig, resolve_path, resolve_sources
from .distill import teacher_path, teacher_sha256, teacher_targets
from .losses import MarginHead

CHECKPOINT_FORMAT = "compress.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST_FILE = "manifest.json"


class _Trainable(nn.Module):
    """Backbone + head as one module, so DDP synchronises both."""

    def __init__(self, model: FaceMobileNet, head: MarginHead) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, distill_weight: float = 0.0,
                target_maps: list[torch.Tensor] | None = None, feature_weight: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss, classification accuracy, distillation loss, feature-distillation loss). Labels < 0 mark
        unlabelled images, which only enter the distillation terms."""
        if target_maps is None:
            emb, maps = self.model(x), []
        else:
            emb, maps = self.model.forward_with_features(x)
        known = y >= 0
        zero = emb.sum() * 0.0  # keeps every parameter in the graph (DDP) when a batch has no labels
        cls_loss = self.head(emb[known], y[known])[0] if known.any() else zero
        distill = zero
        if target is not None:
            distill = (1 - torch.nn.functional.cosine_similarity(emb, target, dim=1)).mean()
        feature = feature_loss(maps, target_maps) if target_maps is not None else zero
        with torch.no_grad():
            acc = (self.head.logits(emb[known]).argmax(1) == y[known]).float().mean() if known.any() else zero
        return cls_loss + distill_weight * distill + feature_weight * feature, acc, distill, feature


def feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the feature points of |s - t|^2 / |t|^2 (per batch): each point's error relative to the
    teacher's energy there, so the stem's large maps do not outweigh the head's small ones."""
    terms = [(s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-8) for s, t in zip(student, teacher)]
    return torch.stack(terms).mean()


def _dist_info(device: str) -> tuple[int, int, str]:
    """(rank, world, device); initialises the process group when torchrun set WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist.get_rank(), world, device


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but no CUDA GPU is visible; use --device cpu")
    return device


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":  # x0.1 at 60% and 85% of the run
        return cfg.lr * (0.1 ** sum(step >= f * total for f in (0.6, 0.85)))
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not p.is_file():
        raise UserError(f"--resume: checkpoint {p} not found; pass a run folder that holds {CHECKPOINT_FILE}")
    try:
        # weights_only: a checkpoint is tensors and plain containers; unpickling anything else could run code.
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--resume: {p} is not a readable checkpoint ({type(e).__name__}); start without --resume") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"--resume: {p} is not a compress training checkpoint; start without --resume")
    need = {"config": dict, "data_fingerprint": str, "epoch": int, "history": list, "net": dict, "optimizer": dict}
    bad = [k for k, t in need.items() if not isinstance(ck.get(k), t) or isinstance(ck.get(k), bool)]
    if bad:
        raise UserError(f"--resume: {p} is damaged (missing or malformed: {', '.join(bad)}); start afresh with --overwrite")
    unknown = sorted(set(ck["config"]) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise UserError(f"--resume: {p} holds settings this version does not know ({unknown}); start afresh with "
                        f"--overwrite")
    return ck


def _check_resumable(ck: dict[str, Any], cfg: TrainConfig, fingerprint: str) -> None:
    mine, theirs = cfg.identity(), TrainConfig(**ck["config"]).identity()
    diff = sorted(k for k in mine if mine[k] != theirs.get(k))
    if diff:
        shown = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {mine[k]!r}" for k in diff[:3])
        raise UserError(f"--resume: checkpoint is from another run ({shown}); use the same settings or start afresh")
    if ck["data_fingerprint"] != fingerprint:
        raise UserError("--resume: checkpoint was trained on different data (fingerprint mismatch); "
                        "use the same --data or start afresh")


def check_run_folder(out: Path) -> None:
    """Refuse a run folder that is not a folder of its own: `.`, `..`, `/`, the home folder, the repository root
    or any folder that holds the working directory (--overwrite there would delete files a user keeps)."""
    from ..schedules import profiles_dir

    o = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    special = {cwd: "the working directory", Path(o.anchor): "the file system root",
               Path.home().resolve(): "the home folder", profiles_dir().resolve().parent: "the repository root"}
    why = special.get(o) or ("a folder that holds the working directory" if o in cwd.parents else None)
    if why:
        raise UserError(f"--out {out} is {why}; a run needs a folder of its own, e.g. --out runs/NAME")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file, not a run folder; choose a new folder, e.g. --out runs/NAME")


def interrupted_hint(out: Path, recipe: str | None = None) -> str:
    """What to say when training is interrupted: how to continue, or that nothing was saved yet."""
    if (Path(out) / CHECKPOINT_FILE).is_file():
        again = f" --recipe {recipe}" if recipe else ""
        return f"interrupted; continue the run with: compress train{again} --resume {out} --out {out}"
    return f"interrupted before the first epoch's checkpoint; nothing to resume in {out}: start it again"


def check_identities(faces: FaceSet) -> None:
    """Training a face recognizer needs labelled faces of at least 2 people, and some person with 2 images."""
    labels = faces.labels[faces.labels >= 0]
    ids, counts = np.unique(labels, return_counts=True)
    if ids.size < 2:
        raise UserError(f"{faces.source} has {ids.size} labelled identit{'y' if ids.size == 1 else 'ies'}; training "
                        "needs at least 2: add more identity folders (one sub-folder of face images per person)")
    if counts.max() < 2:
        raise UserError(f"{faces.source}: every one of its {ids.size} identities has a single image; add more "
                        "images of the same person to the identity folders (at least 2 in some)")


def prepare_out(out: Path, resume: str | Path | None, overwrite: bool) -> None:
    """Refuse a folder that is not a training run; with --overwrite remove only the files a run writes."""
    refuse_special_folder(out)
    present = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    m = read_manifest(out) if present else None
    if present and not (m or (out / CHECKPOINT_FILE).exists()):
        raise UserError(f"{out} holds files but no training run; choose a new or empty --out")
    if m is not None and manifest_kind(m) != "train":
        raise UserError(f"{out} holds a '{manifest_kind(m)}' artifact, not a training run; choose another --out")
    if m is not None and not overwrite and resume is None:
        raise UserError(f"{out} already holds a finished run; pass --overwrite to replace it or choose another --out")
    if (out / CHECKPOINT_FILE).exists() and resume is None and not overwrite:
        raise UserError(f"{out} holds an unfinished run; pass --resume {out} to continue it or --overwrite to restart")
    if overwrite and resume is None:
        for name in (MANIFEST_FILE, "model.pt", CHECKPOINT_FILE):
            (out / name).unlink(missing_ok=True)


def train(cfg: TrainConfig, out: str | Path, resume: str | Path | None = None, overwrite: bool = False,
          faces: FaceSet | None = None, _stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train per `cfg`, write the run folder `out`, return the manifest. `faces` overrides cfg.data (tests)."""
    cfg.validate()
    out = Path(out)
    check_run_folder(out)
    # One writer per run folder (rank 0 of a DDP job writes; the other ranks only read).
    with folder_lock(out) if int(os.environ.get("RANK", "0")) == 0 else nullcontext():
        return _train(cfg, out, resume, overwrite, faces, _stop_after_epoch)


def _train(cfg: TrainConfig, out: Path, resume: str | Path | None, overwrite: bool, faces: FaceSet | None,
           _stop_after_epoch: int | None) -> dict[str, Any]:
    ck = load_checkpoint(resume) if resume is not None else None
    prepare_out(out, resume, overwrite)
    rank, world, device = _dist_info(_resolve_device(cfg.device))
    main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    init = load_model(_model_spec(cfg.init_model)) if cfg.init_model else None
    schedule = init.schedule if init is not None else load_schedule(cfg.schedule)
    data = _load_data(cfg, schedule, faces, device, main)
    teacher = _load_teacher(cfg, schedule, data, device, main) if cfg.teacher else None
    if ck is not None:
        _check_resumable(ck, cfg, data.fingerprint)
    if cfg.batch_size % world:
        raise UserError(f"batch size {cfg.batch_size} does not split over {world} processes; use a multiple of {world}")
    net = _make_net(cfg, schedule, init, data.faces.num_classes, device)
    if init is not None and ck is None:
        _recenter_init(net.model, data, device, main)
    opt = _make_optimiser(cfg, net)
    start_epoch, history = _restore(ck, net, opt) if ck is not None else (0, [])
    run = _Run(cfg, schedule, data, teacher, net, nn.parallel.DistributedDataParallel(net) if world > 1 else net, opt,
               device, rank, world, history)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _announce(run)
    t_start = time.perf_counter()
    stopped = _fit(run, start_epoch, out, _stop_after_epoch)
    if stopped is not None:
        return {"interrupted_after_epoch": stopped}
    train_s = time.perf_counter() - t_start
    if world > 1:
        dist.barrier()
    if not main:
        return {}
    metrics = _evaluate(run, out, train_s)
    save_model(net.model.cpu(), out / "model.pt", {"trained_with": net.head.describe()})
    manifest = _manifest(run, metrics)
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


# -- data and teacher ------------------------------------------------------------------------------------------------

@dataclass
class _Data:
    """The training set, and what the manifest records about how it was assembled."""

    faces: FaceSet | StreamedFaces
    streamed: bool  # read batch by batch from disk (a .rec, or stream = true), not held in memory
    fingerprint: str
    leakage: dict[str, Any] | None  # the LFW leakage filter's report
    full_targets: tuple[np.ndarray, np.ndarray, str] | None  # teacher embeddings the leakage filter computed

    @property
    def labelled_images(self) -> int:
        return len(self.faces) if self.streamed else int((self.faces.labels >= 0).sum())


def _load_data(cfg: TrainConfig, schedule: Schedule, faces: FaceSet | None, device: str, main: bool) -> _Data:
    """cfg.data (or the tests' `faces`) + unlabelled images, less the faces that leak LFW identities."""
    stream = open_for_training(cfg, schedule.input_size) if faces is None else None
    faces = stream if stream is not None else faces
    if faces is None:
        faces = load_faces(cfg.data if cfg.data == "synthetic" else ", ".join(resolve_sources(cfg.data)),
                           identities=cfg.synthetic_identities, per_identity=cfg.synthetic_images_per_identity,
                           seed=cfg.synthetic_seed, progress=cfg.progress and main, align=cfg.align)
    if stream is None:  # a streamed set checks its identities when it opens
        check_identities(faces)
    faces, full_targets, leakage = recipe_extras(faces, cfg, device, cfg.progress and main)
    return _Data(faces, stream is not None, faces.fingerprint(), leakage, full_targets)


@dataclass
class _Teacher:
    """Distillation targets: cached per image (plain and mirrored), or computed online on each augmented batch."""

    sha256: str
    targets: tuple[torch.Tensor, torch.Tensor] | None
    online: Embedder | None
    network: FaceMobileNet | None = None  # feature distillation: the teacher as a network, its maps are targets

    def batch_targets(self, x: torch.Tensor, idx: torch.Tensor | None, flip: torch.Tensor, device: str
                      ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """(target embeddings, target feature maps or None) of one augmented batch."""
        if self.network is not None:
            with torch.no_grad():
                return self.network.forward_with_features(x)
        if self.online is not None:
            return self.online.forward_tensor(x), None
        plain, mirror = self.targets
        return torch.where(flip[:, None], mirror[idx], plain[idx]).to(device), None


def _load_teacher(cfg: TrainConfig, schedule: Schedule, data: _Data, device: str, main: bool) -> _Teacher:
    path = teacher_path(cfg.teacher)
    if cfg.feature_weight:
        return _teacher_network(path, schedule, device)
    if cfg.teacher_views == "online":
        sha = teacher_sha256(path)
        online = load_embedder(path, device=device, onnx_runtime="auto")
        size = schedule.input_size
        teacher = _Teacher(sha, None, online)
        dim = online.forward_nchw(np.zeros((1, 3, size, size), np.float32)).shape[1]
    else:  # the leakage filter embedded every face already, or the teacher does it now
        plain, mirror, sha = data.full_targets or teacher_targets(path, data.faces.images, cfg.progress and main,
                                                                  device=device)
        teacher = _Teacher(sha, (torch.from_numpy(plain), torch.from_numpy(mirror)), None)
        dim = plain.shape[1]
    if dim != schedule.embedding_size:
        raise UserError(f"teacher embeds to {dim} dims but {schedule.name} to "
                        f"{schedule.embedding_size}; set embedding_size in the schedule to match")
    return teacher


def _teacher_network(path: Path, schedule: Schedule, device: str) -> _Teacher:
    """The teacher as a project network (an imported ONNX or an artifact), refused unless each of its feature
    points has the student's shape."""
    net = load_model(path).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    student = FaceMobileNet(schedule).to(device).eval()
    x = torch.zeros(1, 3, schedule.input_size, schedule.input_size, device=device)
    with torch.no_grad():
        emb, t_maps = net.forward_with_features(x)
        _, s_maps = student.forward_with_features(x)
    names = ["stem"] + [f"stage {i + 1}" for i in range(len(schedule.stages))] + ["head"]
    if len(t_maps) != len(s_maps):
        raise UserError(f"feature distillation: teacher {path.name} has {len(t_maps) - 2} stages, {schedule.name} "
                        f"{len(s_maps) - 2}; use the network the student was pruned from, or feature_weight = 0")
    for name, t, s in zip(names, t_maps, s_maps):
        if t.shape != s.shape:
            raise UserError(f"feature distillation: the {name} output is {list(t.shape[1:])} in teacher {path.name} "
                            f"but {list(s.shape[1:])} in {schedule.name}; use the network the student was pruned "
                            "from, or feature_weight = 0")
    if emb.shape[1] != schedule.embedding_size:
        raise UserError(f"teacher embeds to {emb.shape[1]} dims but {schedule.name} to "
                        f"{schedule.embedding_size}; set embedding_size in the schedule to match")
    return _Teacher(teacher_sha256(path), None, None, net)


# -- network and optimiser ------------------------------------------------------------------------------------------

def _make_net(cfg: TrainConfig, schedule: Schedule, init: FaceMobileNet | None, num_classes: int, device: str
              ) -> _Trainable:
    torch.manual_seed(cfg.seed)  # before any parameter is drawn: the same seed gives the same start
    model = FaceMobileNet(schedule)
    if init is not None:
        model.load_state_dict(init.state_dict())
    head = MarginHead(schedule.embedding_size, num_classes, cfg.loss, cfg.s, cfg.m, cfg.terms)
    return _Trainable(model, head).to(device)


RECENTER_IMAGES = 256  # faces whose activations the BNs of an init model are re-expressed around


def _recenter_init(model: nn.Module, data: _Data, device: str, main: bool) -> None:
    """Fine-tuning from an init model: BNs re-expressed around the statistics of the first training faces
    (compress.model.network.recenter_batchnorms; exact in eval mode), so train-mode BN does not first move the
    network away from the one it was given (an imported ONNX carries no BN statistics at all)."""
    if data.streamed:
        return  # no faces in memory to measure; a streamed set starts from the stored statistics
    from ..data.transforms import to_float
    from ..model.network import recenter_batchnorms

    idx = np.unique(np.linspace(0, len(data.faces.images) - 1, RECENTER_IMAGES).astype(int))  # across sources
    images = to_float(torch.from_numpy(data.faces.images[idx]).to(device))
    n = recenter_batchnorms(model, images)
    if main:
        print(f"init model: {n} BatchNorms re-expressed around the statistics of {len(images)} training faces "
              "(same function in eval mode)", flush=True)


def _make_optimiser(cfg: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; weight decay on weight matrices and kernels only, not on biases or norms."""
    decay, no_decay = [], []
    for _, p in net.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return (torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True) if cfg.optimizer == "sgd"
            else torch.optim.AdamW(groups, lr=cfg.lr))


def _restore(ck: dict[str, Any], net: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint's weights and optimizer state; (epochs done, their history)."""
    try:
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"--resume: the checkpoint's weights do not fit this run ({str(e).splitlines()[0][:120]}); "
                        f"start afresh with --overwrite") from None
    return ck["epoch"], ck["history"]


# -- the epoch loop -------------------------------------------------------------------------------------------------

@dataclass
class _Run:
    """What the epoch loop and the callbacks share."""

    cfg: TrainConfig
    schedule: Schedule
    data: _Data
    teacher: _Teacher | None
    net: _Trainable
    ddp: nn.Module  # `net`, wrapped in DistributedDataParallel when world > 1
    opt: torch.optim.Optimizer
    device: str
    rank: int
    world: int
    history: list[dict[str, Any]]
    steps: int = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.data.faces)
        self.steps = n // self.cfg.batch_size
        if self.steps == 0:
            raise UserError(f"batch size {self.cfg.batch_size} is larger than the data set ({n} images); lower "
                            "--batch-size")


def _announce(run: _Run) -> None:
    cfg = run.cfg
    extra = (f" + {cfg.distill_weight:g} x (1 - cos) distillation from {Path(cfg.teacher).name} "
             f"({cfg.teacher_views} teacher views{f', {cfg.mixup:.0%} mixup' if cfg.mixup else ''})"
             if cfg.teacher else "")
    if cfg.feature_weight:
        extra += f" + {cfg.feature_weight:g} x block-wise feature distillation (stem, stages, head)"
    extra += f"; {cfg.augment_policy} augmentation" if cfg.augment else "; no augmentation"
    print(f"training {run.schedule.name} on {run.data.faces.describe()}\n  loss {run.net.head.describe()}{extra}, "
          f"{cfg.epochs} epochs x {run.steps} steps, batch {cfg.batch_size}, {run.world} process(es) on {run.device}")


def _fit(run: _Run, start_epoch: int, out: Path, stop_after_epoch: int | None) -> int | None:
    """Train from `start_epoch` to the end, checkpointing each epoch; the epoch it stopped after when
    `stop_after_epoch` cut it short (tests of resume), else None."""
    cfg, main = run.cfg, run.rank == 0
    bar = tqdm(total=cfg.epochs * run.steps, initial=start_epoch * run.steps, unit="step",
               disable=not (cfg.progress and main), dynamic_ncols=True)
    for epoch in range(start_epoch, cfg.epochs):
        run.history.append(_run_epoch(run, epoch, bar))
        if main and not cfg.progress:
            h = run.history[-1]
            print(f"  epoch {h['epoch']}/{cfg.epochs}: loss {h['loss']:.3f}, train acc {h['train_accuracy']:.3f}, "
                  f"{h['images_per_s']} img/s", flush=True)
        if main:
            _save_checkpoint(run, out, epoch + 1)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            bar.close()
            return epoch + 1
    bar.close()
    return None


def _epoch_batches(run: _Run, epoch: int, g: torch.Generator
                   ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]:
    """(index, uint8 images, labels) per step of this process: slices of the in-memory array, or DataLoader
    batches of a stream."""
    cfg, faces, steps = run.cfg, run.data.faces, run.steps
    local_bs = cfg.batch_size // run.world
    # drawn for a stream too, which has its own order: `g` then goes on to the augmentations in the same state
    perm = torch.randperm(len(faces), generator=g)[: steps * cfg.batch_size].view(steps, cfg.batch_size)
    if run.data.streamed:
        for xb, yb in epoch_batches(faces, epoch, steps, local_bs, run.rank, run.world, cfg.seed, cfg.workers):
            yield None, xb, yb
        return
    images, labels = torch.from_numpy(faces.images), torch.from_numpy(faces.labels)
    for idx in perm[:, run.rank * local_bs:(run.rank + 1) * local_bs]:
        yield idx, images[idx], labels[idx]


def _prepare_batch(run: _Run, idx: torch.Tensor | None, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
    """Augmented float images, labels (-1 for mixes), distillation targets and target maps of one batch."""
    cfg, device = run.cfg, run.device
    x = to_float(xb.to(device))
    flip = torch.zeros(len(x), dtype=torch.bool)
    if cfg.augment:
        policy = {"strong": augment_strong, "mirror": augment_mirror}.get(cfg.augment_policy, augment)
        x, flip = policy(x, g, return_flip=True)
    y = yb.to(device)
    if cfg.mixup:  # the first k images become mixes of two batch images: new points for distillation
        k = int(round(cfg.mixup * len(x)))
        lam = torch.rand(k, 1, 1, 1, generator=g).to(device) * 0.6 + 0.2
        other = x[torch.randint(len(x), (k,), generator=g).to(device)]
        x = torch.cat([lam * x[:k] + (1 - lam) * other, x[k:]])
        y = torch.cat([torch.full((k,), -1, dtype=y.dtype, device=device), y[k:]])
    target, maps = run.teacher.batch_targets(x, idx, flip, device) if run.teacher is not None else (None, None)
    return x, y, target, maps


def _run_epoch(run: _Run, epoch: int, bar: tqdm) -> dict[str, Any]:
    """One pass over the data; the epoch's history entry."""
    cfg, steps, opt = run.cfg, run.steps, run.opt
    run.ddp.train()
    # Per-epoch generators: a resumed run draws exactly the batches and augmentations it would have.
    g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    losses, accs, distills, feats, t0 = [], [], [], [], time.perf_counter()
    bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
    for i, (idx, xb, yb) in enumerate(_epoch_batches(run, epoch, g)):
        x, y, target, maps = _prepare_batch(run, idx, xb, yb, g)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch * steps + i, steps)
        loss, acc, dist_loss, feat_loss = run.ddp(x, y, target, cfg.distill_weight, maps, cfg.feature_weight)
        distills.append(dist_loss.item())
        feats.append(feat_loss.item())
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at epoch {epoch + 1} step {i + 1}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append(acc.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{np.mean(accs[-20:]):.2f}",
                        img_s=f"{(i + 1) * cfg.batch_size / (time.perf_counter() - t0):.0f}")
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_accuracy": float(np.mean(accs)),
            "distill_loss": float(np.mean(distills)),
            **({"feature_loss": float(np.mean(feats))} if cfg.feature_weight else {}), "lr_end": opt.param_groups[0]["lr"],
            "images_per_s": round(steps * cfg.batch_size / (time.perf_counter() - t0), 1)}


# -- callbacks: checkpoint, evaluation, manifest ---------------------------------------------------------------------

def _save_checkpoint(run: _Run, out: Path, epochs_done: int) -> None:
    """Everything an exact resume needs (format compress.checkpoint/1), written atomically."""
    state = {"format": CHECKPOINT_FORMAT, "config": run.cfg.to_dict(), "data_fingerprint": run.data.fingerprint,
             "epoch": epochs_done, "history": run.history, "net": run.net.state_dict(),
             "optimizer": run.opt.state_dict(), "schedule": run.schedule.to_dict()}
    atomic_write(out / CHECKPOINT_FILE, lambda p: torch.save(state, p))


def _evaluate(run: _Run, out: Path, train_s: float) -> dict[str, Any]:
    """The manifest's metrics: final training figures, held-out synthetic verification, LFW when asked."""
    cfg, history, model = run.cfg, run.history, run.net.model
    metrics: dict[str, Any] = {"final_loss": history[-1]["loss"], "final_train_accuracy": history[-1]["train_accuracy"],
                               "train_seconds_this_run": round(train_s, 1)}
    if run.data.faces.synthetic:
        metrics["verification"] = _synthetic_eval(model, cfg)
        print(f"  held-out synthetic verification: {metrics['verification']['summary']}")
    if cfg.eval_lfw:
        from ..evaluate.embed import TorchEmbedder
        from ..evaluate.lfw import evaluate_lfw

        lfw = evaluate_lfw(TorchEmbedder(model.eval(), name=f"{out.name} ({run.schedule.name})"),
                           resolve_path(cfg.eval_lfw), progress=cfg.progress, roc_path=out / "lfw_roc.png")
        metrics["lfw"] = lfw
        for key, line in lfw["summary"].items():
            print(f"  LFW View 2 ({'flip fusion' if key == 'flip' else 'no flip'}; pytorch, measured on {lfw['host']}): {line}")
    return metrics


def _manifest(run: _Run, metrics: dict[str, Any]) -> dict[str, Any]:
    cfg, data, faces, teacher, device = run.cfg, run.data, run.data.faces, run.teacher, run.device
    return {
        "kind": "train",
        "created": now_iso(),
        "model": "model.pt",
        "schedule": run.schedule.to_dict(),
        "config": cfg.to_dict(),
        "data": {"description": faces.describe(), "fingerprint": data.fingerprint, "synthetic": faces.synthetic,
                 "images": len(faces), "labelled_images": data.labelled_images, "identities": faces.num_classes,
                 "skipped_unreadable": len(faces.skipped),
                 "dropped_by_cleaning": {k: len(v) for k, v in faces.dropped.items()},
                 "lfw_leakage_filter": data.leakage},
        "teacher": {"path": cfg.teacher, "sha256": teacher.sha256,
                    "online_runtime": ("pytorch (project network, feature maps)" if teacher.network is not None
                                       else teacher.online.runtime if teacher.online is not None else None)}
                   if teacher is not None else None,
        "init_model": cfg.init_model or None,
        "loss": run.net.head.describe(),
        "history": run.history,
        "metrics": metrics,
        "host": host_description(),
        "world_size": run.world,
        "device": device,
        "accelerator": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
        "versions": versions(),
        "code": code_fingerprint(),
    }


def _model_spec(value: str) -> str | Path:
    """init_model from a recipe: a `zoo:NAME` as is, else a path resolved like the recipe's other paths."""
    from ..zoo import is_zoo_spec

    return value if is_zoo_spec(value) else resolve_path(value)


def _synthetic_eval(model: FaceMobileNet, cfg: TrainConfig) -> dict[str, Any]:
    from ..evaluate.embed import TorchEmbedder
    from ..evaluate.pairs_eval import evaluate_pairs

    faces = synthetic_faces(cfg.eval_identities, cfg.eval_images_per_identity, cfg.synthetic_seed,
                            first_identity=EVAL_IDENTITY_OFFSET, progress=False)
    folds = min(10, cfg.eval_identities // 2)
    return evaluate_pairs(TorchEmbedder(model, name=cfg.schedule), faces, folds=folds, pairs_per_fold=200)
