"""Open-set 1:N identification on all of LFW, for the teacher, the float zoo:table3 and its int8 exports, in one
run. Writes reports/identify/lfw_open_set.json and the table in reports/identify/README.md.

Protocol (issue 19): gallery = the first image (sorted file name) of each person with >= 2 images; genuine
probes = their other images; impostor probes = every image of the people with exactly one image (never in any
gallery). Gallery sizes 100 and 1000 are random subsets of those people (10 draws, seed 0..9; mean +- std),
whose genuine probes are the subset's people's other images; "all" is every such person. Scores: cosine of
L2-normalised embeddings with flip fusion (as `compress enrol` stores them), one template per person.
  - closed-set rank-1: fraction of genuine probes whose best-scoring gallery person is the right one.
  - open-set DIR at FAR f: the threshold lets at most floor(f * impostors) impostor probes score above it
    (their best score over the gallery); DIR = fraction of genuine probes that are rank-1 correct AND above it.
Images are aligned by the project's aligner (compress.data.align, cached); where it finds no face the LFW
benchmark's fallback applies (centre crop, counted in the JSON), as in `compress evaluate --lfw`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lfw_open_set.py [--export DIR ...]
int8 exports default to runs/exports/zoo-table3-{onnx,intel-nuc,raspberry-pi-4}-int8, made for the committed
figures by `compress quantize --model zoo:table3 --calibration ../shared/data/celeba-299 --align --out
runs/quantized/zoo-table3-ptq` then `compress export --precision int8 --model runs/quantized/zoo-table3-ptq
--target T --out runs/exports/zoo-table3-T-int8 --parity-data lfw-unpaired:../shared/data/lfw`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import (atomic_write, atomic_write_text, host_description, now_iso, versions,  # noqa: E402
                                write_json)
from compress.evaluate.embed import execution_notes  # noqa: E402
from compress.identify.openset import open_set_metrics  # noqa: E402
from compress.report.schema import runtime_label  # noqa: E402
from readme_section import write_section  # noqa: E402

SHARED = ROOT.parent / "shared"
LFW = SHARED / "data" / "lfw"
TEACHER = SHARED / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"
EXPORTS = [ROOT / "runs" / "exports" / f"zoo-table3-{t}-int8" for t in ("onnx", "intel-nuc", "raspberry-pi-4")]
OUT = ROOT / "reports" / "identify"
CACHE = ROOT / ".cache" / "identify"
FARS = (1e-2, 1e-3)
SIZES = (100, 1000, "all")
DRAWS = 10


def lfw_split(root: Path, only: set[str] | None = None) -> dict:
    """Gallery / genuine / impostor image lists following the protocol above; ``only``: relative image names
    to restrict LFW to (the --subset pairs variant), counted again per person."""
    people = {d.name: sorted(f for f in d.glob("*.jpg") if only is None or f"{d.name}/{f.name}" in only)
              for d in sorted(root.iterdir()) if d.is_dir()}
    people = {n: imgs for n, imgs in people.items() if imgs}
    multi = [n for n, imgs in people.items() if len(imgs) >= 2]
    files, gallery_idx, probe_idx, probe_person, impostor_idx = [], [], [], [], []
    for pi, n in enumerate(multi):
        gallery_idx.append(len(files))
        files.append(people[n][0])
        for f in people[n][1:]:
            probe_idx.append(len(files))
            probe_person.append(pi)
            files.append(f)
    for n, imgs in people.items():
        if len(imgs) == 1:
            impostor_idx.append(len(files))
            files.append(imgs[0])
    return {"files": files, "people": multi, "gallery": np.array(gallery_idx), "probes": np.array(probe_idx),
            "probe_person": np.array(probe_person), "impostors": np.array(impostor_idx)}


def open_set(emb: np.ndarray, split: dict, people: np.ndarray) -> dict:
    """The metrics for a gallery of the given people (sorted indices into split['people'])."""
    keep = np.isin(split["probe_person"], people)
    truth = np.searchsorted(people, split["probe_person"][keep])
    return open_set_metrics(emb[split["gallery"][people]], emb[split["probes"][keep]], truth,
                            emb[split["impostors"]], FARS)


def evaluate(emb: np.ndarray, split: dict) -> dict:
    n_all = len(split["people"])
    res = {}
    for size in SIZES:
        if size == "all" or size >= n_all:
            res["all"] = open_set(emb, split, np.arange(n_all))
            continue
        draws = [open_set(emb, split, np.sort(np.random.default_rng(seed).choice(n_all, size, replace=False)))
                 for seed in range(DRAWS)]
        keys = [k for k in draws[0] if k.startswith(("rank1", "dir@"))]
        res[str(size)] = {"draws": DRAWS, **{k: draws[0][k] for k in ("gallery", "impostor_probes")},
                          "genuine_probes_mean": float(np.mean([d["genuine_probes"] for d in draws])),
                          **{k: float(np.mean([d[k] for d in draws])) for k in keys},
                          **{f"{k}_std": float(np.std([d[k] for d in draws])) for k in keys}}
    return res


def embeddings(m, images: np.ndarray, files: list[Path]) -> tuple[np.ndarray, dict]:
    """Flip-fused embeddings of every image, cached per model hash and image list in .cache/identify/ (the
    embedding is the cost; a re-run after adding a model embeds only that model)."""
    import hashlib
    import json

    key = hashlib.sha256("\n".join(str(f) for f in files).encode()).hexdigest()[:12]
    cache = CACHE / f"lfw-{m.sha256[:16]}-{key}-flip.npy"
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file():
        return np.load(cache), {**json.loads(meta.read_text()), "embeddings": f"cached ({cache.name})"}
    t0 = time.perf_counter()
    emb = m.embedder.embed(images, batch_size=64, flip=True, progress=True)
    dt = time.perf_counter() - t0
    timing = {"embed_s": round(dt, 1), "images_per_s": round(len(images) / dt, 1), "embedded_at": now_iso()}
    CACHE.mkdir(parents=True, exist_ok=True)
    def save(path: Path) -> None:
        with path.open("wb") as f:
            np.save(f, emb)

    atomic_write(cache, save)
    atomic_write_text(meta, json.dumps(timing))
    return emb, {**timing, "embeddings": "computed in this run"}


def models(exports: list[Path]):
    """(label, EmbedModel) in order of cost, so the cheap ones are reported first; loaded one at a time."""
    from compress.identify.embedder import load_embed_model

    yield "zoo:table3 float", lambda: load_embed_model("zoo:table3")
    yield "zoo:table3-faces float", lambda: load_embed_model("zoo:table3-faces")
    for e in exports:
        if (e / "manifest.json").is_file():
            label = f"zoo:table3 int8 {e.name.replace('zoo-table3-', '').replace('-int8', '')}"
            yield label, lambda e=e: load_embed_model(e, threads=1)
        else:
            print(f"skipped (not found; see the docstring): {e}", file=sys.stderr)
    if TEACHER.is_file():
        yield "MobileFaceNet teacher", lambda: load_embed_model(TEACHER, threads=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", action="append", type=Path, help="int8 export folder(s) [runs/exports/...]")
    ap.add_argument("--lfw", type=Path, default=LFW)
    ap.add_argument("--subset", choices=("all", "pairs"), default="all",
                    help="all: every LFW image (the protocol); pairs: only the 7,701 images named in pairs.txt, "
                         "people and their image counts taken within that set (a smaller, labelled variant)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from compress.evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images

    pairs_path, root = locate_lfw(args.lfw)
    only = set(unique_images(parse_pairs(pairs_path))) if args.subset == "pairs" else None
    split = lfw_split(root, only)
    t0 = time.perf_counter()
    images, align_info = align_benchmark_images(split["files"], None, progress=True)
    align_s = time.perf_counter() - t0
    rows = []
    name = "lfw_open_set" if only is None else "lfw_open_set_pairs_subset"
    report = {"format": "compress.identify.lfw_open_set/1", "created": now_iso(), "host": host_description(),
              "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
              "versions": versions(), "subset": args.subset,
              "dataset": (f"LFW deep-funneled, all {len(split['files'])} images" if only is None else
                          f"LFW deep-funneled, the {len(split['files'])} images named in pairs.txt (subset 'pairs': "
                          "people with >= 2 / exactly 1 image counted within those)") + f" ({root})",
              "protocol": __doc__.split("Protocol (issue 19): ")[1].split("\n\n")[0].replace("\n", " "),
              "counts": {"people_with_2plus": len(split["people"]), "genuine_probes": len(split["probes"]),
                         "impostor_probes": len(split["impostors"])},
              "alignment": {k: v for k, v in align_info.items() if k != "failed_images"}, "align_s": round(align_s, 1),
              "models": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    for label, load in models(args.export or EXPORTS):
        m = load()
        emb, timing = embeddings(m, images, split["files"])
        rows.append({"model": label, "name": m.name, "sha256": m.sha256, "runtime": runtime_label(
                         {"runtime": m.runtime, **execution_notes(m.embedder)}), **execution_notes(m.embedder),
                     "precision": m.precision, **timing, "results": evaluate(emb, split)})
        print(f"{label}: {rows[-1]['results']['all']}", file=sys.stderr)
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        write_json(OUT / f"{name}.json", report)  # after every model: what finished is reported
        write_section(OUT / "README.md", name, readme(report, f"{name}.json"), "Identification (issue 19)")
    print(f"wrote {OUT / (name + '.json')} and {OUT / 'README.md'}")


def _cell(r: dict, key: str) -> str:
    v = 100 * r[key]
    return f"{v:.2f} +- {100 * r[key + '_std']:.2f}" if key + "_std" in r else f"{v:.2f}"


def readme(rep: dict, json_name: str) -> str:
    c = rep["counts"]
    lines = ["## Open-set 1:N identification on LFW", "",
             f"Made by `benchmarks/lfw_open_set.py` on {rep['created'][:10]}, host: {rep['host']} (measured).", "",
             f"Data: {rep['dataset']}. Gallery: one image of each of the {c['people_with_2plus']} people with >= 2 "
             f"images; {c['genuine_probes']} genuine probes (their other images); {c['impostor_probes']} impostor "
             "probes (the people with one image). Sizes 100 and 1000: mean +- std over 10 random subsets of people. "
             f"Alignment: the project's aligner, {rep['alignment']['failures']} of {rep['alignment']['images']} "
             "images without a detected face use the LFW benchmark's centre-crop fallback.", "",
             "Scores: cosine, flip fusion, one template per person. DIR@FAR: rank-1 correct and above the threshold "
             "that lets at most floor(FAR x impostors) impostor probes through (FAR 0.1% = "
             f"{int(c['impostor_probes'] * 1e-3)} false accepts allowed: a coarse estimate).", "",
             "| model | runtime | precision | sha256 | gallery | rank-1 % | DIR@FAR=1% | DIR@FAR=0.1% |",
             "|---|---|---|---|---|---|---|---|"]
    for m in rep["models"]:
        for size, r in m["results"].items():
            lines.append(f"| {m['model']} | {m['runtime']} | {m['precision']} | `{m['sha256'][:12]}` | {r['gallery']} "
                         f"| {_cell(r, 'rank1')} | {_cell(r, 'dir@far=0.01')} | {_cell(r, 'dir@far=0.001')} |")
    lines += ["", f"Full numbers, thresholds and timings: [{json_name}]({json_name})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
