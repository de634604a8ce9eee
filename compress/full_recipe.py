"""A whole recipe: every section typed and checked, [train] as compress.train.config.TrainConfig.

It sits above both compress.recipe (reading recipes: sections, `base`, paths) and compress.train.config (which
reads its [train] table through compress.recipe), so neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .recipe import (SECTIONS, BenchConfig, EvaluateConfig, ExportConfig, PipelineConfig, PruneConfig,
                     QuantizeConfig, ReferenceConfig, read_sections, resolve_recipe, section_config)
from .train.config import TrainConfig, train_config


@dataclass(frozen=True)
class Recipe:
    path: Path
    train: TrainConfig
    evaluate: EvaluateConfig
    prune: PruneConfig | None  # None: no (or an empty) [prune] section, the pipeline does not prune
    quantize: QuantizeConfig
    export: ExportConfig
    bench: BenchConfig
    reference: ReferenceConfig
    pipeline: PipelineConfig


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe, every section typed and checked, the [train] section as a validated TrainConfig."""
    path = resolve_recipe(name_or_path)
    sec = read_sections(path)
    typed = {name: section_config(name, sec.get(name, {}), path) for name in SECTIONS}
    if not sec.get("prune"):
        typed["prune"] = None
    return Recipe(path=path, train=train_config(sec["train"], path), **typed)
