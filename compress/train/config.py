"""Training configuration: a dataclass, filled from a recipe's [train] table (compress/recipe.py), then CLI
overrides."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..limits import MAX_FACES_IN_MEMORY, MAX_THREADS, SEED, THREADS, Range, check_fields, num
from ..data.transforms import AUGMENT_POLICIES
# Recipes are read by compress/recipe.py; its path helpers stay importable from here.
from ..recipe import (MAX_EVAL_IDENTITIES, MIN_EVAL_IDENTITIES, read_sections, resolve_path,  # noqa: F401
                      resolve_recipe, resolve_sources, unknown_key)
from .losses import DEFAULT_TERMS, LOSSES

# Fields that may change between a checkpoint and its resumed run without making it another run.
RESUMABLE_CHANGES = {"epochs", "device", "threads", "progress", "workers"}
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
MAX_SYNTHETIC_IDENTITIES = 100_000
MAX_PER_IDENTITY = 1000
_NAMES = {"s": "scale s", "m": "margin m"}  # fields as messages name them


@dataclass
class TrainConfig:
    schedule: str = "table3"
    data: str = "synthetic"  # "synthetic" (built-in generator), an ImageFolder of aligned 112x112 crops, or a .rec
    # Stream the folder from disk (decoded per batch by DataLoader workers) instead of decoding it into memory
    # first; an insightface .rec is always streamed (compress/data/lazy.py).
    stream: bool = False
    # DataLoader worker processes per training process when streaming
    workers: int = num(2, Range(0, MAX_THREADS, integer=True, why="at most 4 x the CPUs here"))
    align: bool = False  # data/unlabelled folders hold raw photos: MTCNN-align (cached) and Haar-clean them
    synthetic_identities: int = num(120, Range(1, MAX_SYNTHETIC_IDENTITIES, integer=True))
    synthetic_images_per_identity: int = num(20, Range(1, MAX_PER_IDENTITY, integer=True))
    synthetic_seed: int = num(0, SEED)
    loss: str = "arcface_w"
    s: float = num(64.0, Range(0, 1024, lo_open=True, why="the paper uses 64"))
    m: float = 0.5
    terms: int = num(DEFAULT_TERMS, Range(1, 64, integer=True))
    epochs: int = num(10, Range(1, 100_000, integer=True))
    batch_size: int = num(128, Range(1, 65_536, integer=True))
    optimizer: str = "sgd"
    lr: float = num(0.1, Range(0, 10, lo_open=True, why="a larger step diverges"))
    lr_schedule: str = "cosine"
    warmup_epochs: float = num(1.0, Range(0, 100_000))
    momentum: float = num(0.9, Range(0, 1))
    weight_decay: float = num(5e-4, Range(0, 1, why="a fraction of the weights removed per step"))
    augment: bool = True
    # "light": mirror + small crop/shift; "strong": + rotation, zoom, colour, grey; "mirror": mirror only (exact
    # for cached teacher views)
    augment_policy: str = "light"
    seed: int = num(0, SEED)
    device: str = "auto"
    threads: int = num(0, THREADS)
    # Embedding-level distillation: 1 - cos(student, teacher) on every image, weighted by distill_weight.
    teacher: str = ""  # ONNX face model or model artifact, same embedding size ("" = no distillation)
    init_model: str = ""  # start from this model artifact (e.g. a pruned network); its schedule is used
    distill_weight: float = num(0.0, Range(0, 1000, why="the margin loss is of order 10"))
    # "cached": the teacher embeds each image and its mirror once (cheap; the student's small crop/shift is
    # ignored). "online": the teacher embeds every augmented batch the student sees (function matching; one
    # teacher forward per image per step), which strong augmentation and mixup need.
    teacher_views: str = "cached"
    # Block-wise feature distillation (online teacher run as a network of the same stage widths, e.g. the
    # MobileFaceNet a pruned student came from): mean over the stem's, stages' and head's output maps of
    # |student - teacher|^2 / |teacher|^2, weighted by feature_weight. Richer signal per image than the
    # embedding alone, which is what a small training set lacks.
    feature_weight: float = num(0.0, Range(0, 1000, why="the margin loss is of order 10"))
    mixup: float = 0.0  # online teacher only: fraction of each batch replaced by mixes of two images, distilled only
    # Faces with no usable labels (distillation only), comma-separated: folders (aligned like `data` when align
    # is set), `aligned:FOLDER` (crops aligned already), `lfw-unpaired:LFW_DIR` (LFW people in no test pair).
    unlabelled: str = ""
    # Leakage filter (data/leakage.py): drop every training face the teacher finds closer than a cut calibrated
    # on LFW itself to an LFW test-pair image. Needs a teacher.
    leakage_lfw: str = ""  # LFW folder holding pairs.txt ("" = no filter)
    leakage_quantile: float = 0.99  # the cut: this quantile of LFW images' best match among other LFW people
    eval_lfw: str = ""  # LFW folder: evaluate the finished model with the 10-fold protocol
    # held-out synthetic identities for the final verification check
    eval_identities: int = num(60, Range(MIN_EVAL_IDENTITIES, MAX_EVAL_IDENTITIES, integer=True))
    eval_images_per_identity: int = num(10, Range(2, MAX_PER_IDENTITY, integer=True))
    progress: bool = True

    def validate(self) -> "TrainConfig":
        for f in fields(self):  # every float finite (lr = inf trains for hours, then "loss became nan")
            if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name)):
                raise UserError(f"{_NAMES.get(f.name, f.name)} must be a finite number, got {getattr(self, f.name)!r}")
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss '{self.loss}'; choose one of: {', '.join(LOSSES)}")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserError(f"unknown optimizer '{self.optimizer}'; choose sgd or adamw")
        if self.lr_schedule not in ("cosine", "step", "constant"):
            raise UserError(f"unknown lr schedule '{self.lr_schedule}'; choose cosine, step or constant")
        for k in ("epochs", "batch_size", "terms", "synthetic_identities", "synthetic_images_per_identity"):
            if getattr(self, k) < 1:
                raise UserError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if not self.s > 0:
            raise UserError(f"scale s must be > 0, got {self.s}; the paper uses 64")
        if not 0 <= self.m < math.pi / 2:
            raise UserError(f"margin m is an angle in radians in [0, pi/2), got {self.m}; the paper uses 0.5")
        if self.threads < 0:
            raise UserError(f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.workers < 0:
            raise UserError(f"workers must be >= 0 (0 = read in the training process), got {self.workers}")
        if not _DEVICE.fullmatch(str(self.device)):
            raise UserError(f"unknown device '{self.device}'; use auto, cpu, cuda or cuda:N (e.g. cuda:1)")
        if self.eval_identities < MIN_EVAL_IDENTITIES:
            raise UserError(f"eval_identities must be >= {MIN_EVAL_IDENTITIES} (2 identity-disjoint folds of 2), "
                            f"got {self.eval_identities}")
        if self.eval_images_per_identity < 2:
            raise UserError(f"eval_images_per_identity must be >= 2 (matched pairs need two images), "
                            f"got {self.eval_images_per_identity}")
        if self.distill_weight < 0:
            raise UserError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if (self.distill_weight > 0) != bool(self.teacher):
            raise UserError("distillation needs both teacher (an ONNX model) and distill_weight > 0, or neither")
        if self.augment_policy not in AUGMENT_POLICIES:
            raise UserError(f"unknown augment_policy '{self.augment_policy}'; choose one of: {', '.join(AUGMENT_POLICIES)}")
        if self.teacher_views not in ("cached", "online"):
            raise UserError(f"unknown teacher_views '{self.teacher_views}'; choose cached or online")
        if self.feature_weight and not (self.teacher and self.teacher_views == "online"):
            raise UserError("feature distillation runs the teacher on every batch; it needs a teacher with "
                            "teacher_views = \"online\" (or feature_weight = 0)")
        if not 0 <= self.mixup < 1:
            raise UserError(f"mixup is a fraction of the batch in [0, 1), got {self.mixup}")
        if self.mixup and not (self.teacher and self.teacher_views == "online"):
            raise UserError("mixup images are distilled only; it needs a teacher with teacher_views = \"online\"")
        if self.unlabelled and not self.teacher:
            raise UserError("unlabelled images are only used for distillation; set teacher and distill_weight")
        if self.leakage_lfw and not self.teacher:
            raise UserError("the LFW leakage filter compares faces with the teacher's embedding; set teacher "
                            "(and distill_weight) or drop leakage_lfw")
        if not 0.5 <= self.leakage_quantile < 1:
            raise UserError(f"leakage_quantile must be in [0.5, 1), got {self.leakage_quantile}; 0.99 drops ~1% "
                            "of unrelated faces")
        check_fields(self, _NAMES)  # the ranges and caps the checks above leave open (upper caps, negative weights)
        n = self.synthetic_identities * self.synthetic_images_per_identity
        if self.data == "synthetic" and n > 10 * MAX_FACES_IN_MEMORY:
            raise UserError(f"synthetic_identities x synthetic_images_per_identity = {n} images; at most "
                            f"{10 * MAX_FACES_IN_MEMORY} fit in memory (37.6 KB each): lower one of them")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that define the run, for telling a resumable checkpoint from a foreign one."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES}


def _check_types(values: dict[str, Any]) -> None:
    """A recipe value of the wrong type (epochs = "3") as a UserError, not a TypeError deep in training."""
    for f in fields(TrainConfig):
        if f.name not in values:
            continue
        v, want = values[f.name], type(f.default)
        ok = (isinstance(v, bool) if want is bool else
              isinstance(v, (int, float)) and not isinstance(v, bool) if want is float else
              isinstance(v, int) and not isinstance(v, bool) if want is int else isinstance(v, want))
        if not ok:
            raise UserError(f"{f.name} must be a {want.__name__}, got {v!r}")


def _check_keys(table: dict[str, Any], where: str | Path) -> None:
    known = [f.name for f in fields(TrainConfig)]
    for key in sorted(table):
        if key not in known:
            raise unknown_key(where, "train", key, known)


def train_config(table: dict[str, Any], where: str | Path) -> TrainConfig:
    """A recipe's [train] table as a validated TrainConfig."""
    _check_keys(table, where)
    _check_types(table)
    return TrainConfig(**table).validate()


def make_config(recipe: str | Path | None = None, base: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Recipe (or `base`, e.g. a checkpoint's config when resuming) then the non-None overrides."""
    if recipe:
        path = resolve_recipe(recipe)
        values = read_sections(path)["train"]
        _check_keys(values, path)
    else:
        values = dict(base or {})
    values = {**values, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)})
    if unknown:  # e.g. a checkpoint written by another version
        raise UserError(f"unknown training setting(s) {unknown}; allowed: {sorted(f.name for f in fields(TrainConfig))}")
    _check_types(values)
    return TrainConfig(**values).validate()
