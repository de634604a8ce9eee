"""Training checkpoints stay readable across code changes: a run interrupted by one version resumes under the next.

tests/data/checkpoint_v1_structure.json records the layout (keys, tensor shapes and dtypes, optimizer state) of the
checkpoint a run with `_cfg()` on `toy_faces()` wrote after epoch 1 before the trainer was split into stages, plus
that run's config, data fingerprint and epoch-1 history. The real file is 3.6 MB, so the test rebuilds one of that
layout instead of shipping it. Regenerate (only when the format changes on purpose) with
`python -m tests.test_checkpoint_compat CHECKPOINT.pt > tests/data/checkpoint_v1_structure.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.train.config import TrainConfig
from compress.train.trainer import CHECKPOINT_FILE, CHECKPOINT_FORMAT, train

from .conftest import toy_faces

STRUCTURE = Path(__file__).parent / "data" / "checkpoint_v1_structure.json"


def _cfg(**kw: Any) -> TrainConfig:
    # the settings of test_train.cfg() with one thread, so the recorded run is reproducible on CPU
    base = dict(schedule="table3", epochs=2, batch_size=24, lr=0.05, s=16, m=0.2, warmup_epochs=0.5,
                progress=False, threads=1, augment=True)
    return TrainConfig(**{**base, **kw})


def _tensor(t: torch.Tensor) -> str:
    """e.g. 'float32 32x3x3x3' ('int64 ' for a scalar)."""
    return f"{str(t.dtype).removeprefix('torch.')} {'x'.join(map(str, t.shape))}"


def _parse(spec: str) -> tuple[torch.dtype, list[int]]:
    dtype, shape = spec.split(" ")
    return getattr(torch, dtype), [int(n) for n in shape.split("x") if n]


def checkpoint_structure(ck: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must keep for an older one to resume: its layout, not its values (which vary by CPU)."""
    opt = ck["optimizer"]
    return {
        "format": ck["format"],
        "keys": sorted(ck),
        "config": ck["config"],
        "data_fingerprint": ck["data_fingerprint"],
        "epoch": ck["epoch"],
        "history_keys": [sorted(h) for h in ck["history"]],
        "history": [{k: v for k, v in h.items() if k != "images_per_s"} for h in ck["history"]],
        "net": {k: _tensor(v) for k, v in ck["net"].items()},
        "optimizer": {
            "param_groups": [dict(sorted(g.items())) for g in opt["param_groups"]],  # plain numbers
            "state": {str(i): {k: _tensor(v) for k, v in s.items()} for i, s in sorted(opt["state"].items())},
        },
        "schedule_keys": sorted(ck["schedule"]),
    }


def _synthesise(structure: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint laid out exactly as the recorded one, with made-up weights."""
    g = torch.Generator().manual_seed(0)

    def make(name: str, spec: str) -> torch.Tensor:
        dtype, shape = _parse(spec)
        if not dtype.is_floating_point:
            return torch.zeros(shape, dtype=dtype)
        if name.endswith("running_var"):
            return torch.ones(shape)
        return torch.randn(shape, generator=g) * 0.05

    opt = structure["optimizer"]
    return {
        "format": structure["format"], "config": structure["config"],
        "data_fingerprint": structure["data_fingerprint"], "epoch": structure["epoch"],
        "history": [dict(h, images_per_s=1.0) for h in structure["history"]],
        "net": {k: make(k, v) for k, v in structure["net"].items()},
        "optimizer": {"state": {int(i): {k: torch.zeros(_parse(v)[1]) for k, v in s.items()}
                                for i, s in opt["state"].items()},
                      "param_groups": opt["param_groups"]},
        "schedule": {k: None for k in structure["schedule_keys"]},
    }


def test_checkpoint_layout_is_unchanged(tmp_path):
    train(_cfg(), tmp_path / "r", faces=toy_faces(), _stop_after_epoch=1)
    ck = torch.load(tmp_path / "r" / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    now, recorded = checkpoint_structure(ck), json.loads(STRUCTURE.read_text())
    assert now["format"] == CHECKPOINT_FORMAT == recorded["format"]
    for key in ("keys", "data_fingerprint", "epoch", "history_keys", "net", "optimizer", "schedule_keys"):
        assert now[key] == recorded[key], key
    # the config may gain settings, each with a default that is the recorded run's behaviour (so an older
    # checkpoint, which lacks them, resumes as the same run: the next test); none may change or disappear
    assert {k: now["config"].get(k) for k in recorded["config"]} == recorded["config"]
    defaults = TrainConfig().to_dict()
    assert {k: v for k, v in now["config"].items() if k not in recorded["config"]} == \
        {k: defaults[k] for k in now["config"] if k not in recorded["config"]}


def test_a_checkpoint_of_the_recorded_layout_resumes(tmp_path):
    """A run interrupted before the trainer's split finishes under the current code."""
    structure = json.loads(STRUCTURE.read_text())
    run = tmp_path / "r"
    run.mkdir()
    torch.save(_synthesise(structure), run / CHECKPOINT_FILE)
    m = train(_cfg(), run, faces=toy_faces(), resume=run)
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert {k: v for k, v in m["history"][0].items() if k != "images_per_s"} == structure["history"][0]
    assert np.isfinite(m["history"][1]["loss"]) and (run / "model.pt").is_file()


if __name__ == "__main__":
    json.dump(checkpoint_structure(torch.load(sys.argv[1], map_location="cpu", weights_only=True)), sys.stdout,
              indent=1)
    print()
