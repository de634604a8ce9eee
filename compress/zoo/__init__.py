"""The model zoo: real-face weights that ship inside the package, addressed as `zoo:NAME` wherever a command
takes a model.

An entry is a folder `compress/zoo/NAME/` holding `model.pt` (the artifact format every command reads),
`manifest.json` (kind "zoo": the weights' sha256, the command chain and recipe that produced them, data, teacher,
host, library versions, and the LFW figures of the committed record `reports/zoo/NAME-lfw.json`) and
`MODEL_CARD.md`. Weights are checked against their sha256 every time they are resolved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import file_sha256
from ..errors import UserError

ZOO_DIR = Path(__file__).resolve().parent
PREFIX = "zoo:"
DEFAULT_MODEL = "zoo:table3"  # what export, quantize, evaluate, estimate and bench use without --model
DEFAULT_PRUNE_SOURCE = "zoo:table2"  # what prune starts from without --model
# What the robot's path (enrol a new gallery, the frame bench) uses without --model: the entry README's
# trade-off table recommends for a ward of 100 people (open-set rank-1 and DIR@FAR=1% at gallery 100).
WARD_MODEL = "zoo:mfn-113m"
ZOO_KIND = "zoo"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def spec(self) -> str:
        return PREFIX + self.name

    @property
    def model_file(self) -> Path:
        return self.folder / self.manifest["weights"]["file"]

    @property
    def sha256(self) -> str:
        return self.manifest["weights"]["sha256"]

    def lfw_line(self) -> str:
        f = self.manifest["lfw"]["flip"]
        return f"LFW {100 * f['accuracy_mean']:.2f}% +- {100 * f['accuracy_std']:.2f} (flip, 10-fold)"

    def describe(self) -> str:
        """One line naming what a command used: name, schedule, hash, LFW figure."""
        return (f"{self.spec} ({self.manifest['schedule']['name']}, sha256 {self.sha256[:12]}, {self.lfw_line()}, "
                f"record {self.manifest['lfw']['record']})")


def is_zoo_spec(spec: str | Path | None) -> bool:
    return spec is not None and str(spec).startswith(PREFIX)


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "manifest.json").is_file())


def load_entry(name: str) -> ZooEntry:
    """The entry NAME (without the prefix), manifest read and checked for the keys commands rely on."""
    folder = ZOO_DIR / name
    if not name or "/" in name or not (folder / "manifest.json").is_file():
        raise UserError(f"no zoo model '{name}'; choose one of: {', '.join(zoo_names()) or '(none installed)'} "
                        f"(`compress models` lists them)")
    try:
        m = json.loads((folder / "manifest.json").read_text())
        m["weights"]["sha256"], m["weights"]["file"], m["schedule"]["name"], m["lfw"]["flip"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"zoo entry {folder} has a broken manifest ({type(e).__name__}: {e}); reinstall the "
                        f"package or restore compress/zoo/{name} from git") from None
    if m.get("kind") != ZOO_KIND:
        raise UserError(f"{folder}/manifest.json is not a zoo manifest (kind {m.get('kind')!r})")
    return ZooEntry(name, folder, m)


def _entry(spec: str | Path) -> ZooEntry:
    return load_entry(str(spec)[len(PREFIX):])


def list_entries() -> list[ZooEntry]:
    return [load_entry(n) for n in zoo_names()]


def verified_model_file(spec: str | Path) -> Path:
    """`zoo:NAME` -> its model.pt, after checking the file against the sha256 its manifest names."""
    entry = _entry(spec)
    f = entry.model_file
    if not f.is_file():
        raise UserError(f"{spec}: weights {f} are missing; reinstall the package or restore compress/zoo from git")
    actual = file_sha256(f)
    if actual != entry.sha256:
        repo = ZOO_DIR.parents[1]
        fix = (f"restore them from git (`git checkout -- {f.relative_to(repo)}`)" if repo in f.parents
               else "reinstall the package")
        raise UserError(f"{spec}: weights {f} do not match their manifest (sha256 {actual[:12]} != "
                        f"{entry.sha256[:12]}); {fix}")
    return f


def describe_entry(spec: str) -> str:
    """The zoo entry's line (compress.model.io.describe_model says it for any model spec)."""
    return _entry(spec).describe()


def safe_name(spec: str | Path) -> str:
    """A folder-name part for a model spec: `zoo:table3` -> `zoo-table3`, a path -> its last part."""
    return str(spec).replace(":", "-") if is_zoo_spec(spec) else (Path(spec).name or "model")


FAMILIES = ("mobilefacenet", "paper")


def family_of(manifest: dict[str, Any]) -> str:
    """The network family of a zoo manifest: an explicit `family` key wins; otherwise the stored schedule says it.
    MobileFaceNet (its import and everything pruned from it) is the one with the global depthwise (GDC) head, or
    named / pruned from `mobilefacenet`; every other schedule is the paper's MobileNet-v2 face network (Table 2
    and what is pruned from it: Table 3). Derived, so manifests need no rebuild and a new entry needs no edit."""
    if manifest.get("family") in FAMILIES:
        return manifest["family"]
    s = manifest.get("schedule") or {}
    lineage = (str(s.get("name") or ""), str(s.get("prune_from") or ""))
    if s.get("head_pool") == "gdc" or any(n.startswith("mobilefacenet") for n in lineage):
        return "mobilefacenet"
    return "paper"


def table_rows(entries: list[ZooEntry]) -> list[dict[str, Any]]:
    """One row per entry for `compress models` (text and --json)."""
    rows = []
    for e in entries:
        m = e.manifest
        rows.append({"name": e.spec, "family": family_of(m), "schedule": m["schedule"]["name"], "params": m["params"], "macs": m["macs"],
                     "lfw_flip": m["lfw"]["flip"], "lfw_no_flip": m["lfw"].get("no_flip"),
                     "lfw_record": m["lfw"]["record"], "sha256": e.sha256, "size_bytes": e.model_file.stat().st_size,
                     "description": m.get("description", ""), "card": str(e.folder / "MODEL_CARD.md")})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    w = max([len("schedule")] + [len(r["schedule"]) for r in rows]) + 2  # derived schedules have long names
    head = f"{'name':<18}{'family':<15}{'schedule':<{w}}{'params':>11}{'MACs':>13}  {'LFW % (flip)':<16}{'TAR@1e-3':>9}  sha256"
    lines = [head]
    for r in rows:
        f = r["lfw_flip"]
        lines.append(f"{r['name']:<18}{r['family']:<15}{r['schedule']:<{w}}{r['params']:>11,}{r['macs']:>13,}  "
                     f"{100 * f['accuracy_mean']:.2f} +- {100 * f['accuracy_std']:.2f}   "
                     f"{100 * f['tar_at_far']['1e-3']:>7.2f}  {r['sha256'][:16]}")
    lines.append("LFW: deep-funneled View 2, 6000 pairs, 10-fold, flip fusion, PyTorch float on the CPU host named in "
                 "each record; MACs: ptflops, batch 1; family: mobilefacenet (GDC head, pruned from MobileFaceNet) or "
                 "paper (the paper's Table 2 network and what is pruned from it). Cards: compress/zoo/NAME/MODEL_CARD.md")
    return "\n".join(lines)
