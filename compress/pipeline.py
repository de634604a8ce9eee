"""`compress pipeline`: a recipe's stages in order, each reading and writing an artifact folder.

Implemented stages: train -> evaluate. A stage is skipped when its folder holds a finished artifact made from
the same inputs (same config), so re-running a recipe is cheap; --force recomputes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from .artifacts import code_fingerprint, write_json
from .data.sources import EVAL_IDENTITY_OFFSET, load_faces
from .evaluate.embed import load_embedder
from .evaluate.pairs_eval import evaluate_pairs
from .train.config import load_recipe, make_config, resolve_recipe
from .train.trainer import MANIFEST_FILE, train


def _cached(folder: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    m = folder / MANIFEST_FILE
    if not m.is_file():
        return None
    manifest = json.loads(m.read_text())
    same = manifest.get("config") == key and manifest.get("code") == code_fingerprint()
    return manifest if same else None


def run_pipeline(recipe: str | Path = "demo", out: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    path = resolve_recipe(recipe)
    out = Path(out) if out else Path("runs") / path.stem
    t0 = time.perf_counter()
    cfg = make_config(path)
    train_dir = out / "train"
    manifest = None if force else _cached(train_dir, cfg.to_dict())
    if manifest:
        click.echo(f"[1/2] train: cached in {train_dir} (same recipe, config and code)")
    else:
        click.echo(f"[1/2] train: {path.name} -> {train_dir}")
        manifest = train(cfg, train_dir, overwrite=True)

    ev = {"identities": 100, "flip": True}
    try:
        ev.update(load_recipe(path, "evaluate"))
    except Exception:
        pass
    click.echo(f"[2/2] evaluate: held-out synthetic identities ({ev['identities']}), flip={ev['flip']}")
    faces = load_faces("synthetic", identities=int(ev["identities"]), per_identity=10, seed=cfg.synthetic_seed,
                       first_identity=EVAL_IDENTITY_OFFSET, progress=False)
    result = evaluate_pairs(load_embedder(train_dir), faces, folds=10, flip=bool(ev["flip"]))
    summary = {
        "recipe": str(path),
        "model": str(train_dir / "model.pt"),
        "schedule": manifest["schedule"]["name"],
        "train_data": manifest["data"]["description"],
        "loss": manifest["loss"],
        "train_history": manifest["history"],
        "evaluation": result,
        "pipeline_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "result.json", summary)
    click.echo(f"\nresult ({result['runtime']}, measured on {result['host']}):\n"
               f"  model     {summary['schedule']} trained with {summary['loss']}\n"
               f"  trained   {summary['train_data']}\n"
               f"  evaluated {result['dataset']}\n  protocol  {result['protocol']}\n"
               f"  accuracy  {result['summary']}\n  saved     {out / 'result.json'}")
    return summary
