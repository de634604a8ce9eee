"""Issue 29's measurement: Raspberry Pi bundles on the emulated Arm CPU beside the same bundles on this x86 host.

    .venv/bin/python tools/emulate_measure.py OUT.json BUNDLE... --lfw ../shared/data/lfw [--lfw-pairs N]

Per bundle (LFW for the --lfw-precisions ones only): (1) `compress emulate` (run_on_board.py on the emulated board: parity vs the PyTorch embeddings in
the bundle); (2) the same run_on_board.py on this host's Python (x86 kernels), same faces; (3) the bundle's model
on LFW pair images, embedded by the runner's own code (prepare + LiteRtBackend) on the emulated board and here,
compared face by face (and the bundle's 32 parity faces, every bundle); (4) LFW View 2 accuracy (flip fusion, 10-fold) of the x86 embeddings over all 6000 pairs,
and of both over the first N pairs of each fold (threshold from the other folds' same subset), so the Arm and x86
figures come from the same pairs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compress.artifacts import host_description, write_json
from compress.bench import emulate as em
from compress.evaluate.lfw import align_benchmark_images, locate_lfw, parse_pairs, unique_images
from compress.evaluate.verification import cosine_scores, kfold_verification


def host_run(bundle: Path) -> dict:
    """run_on_board.py on this host's Python: the x86 kernels, the same faces and code as on the board."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = em.open_bundle(bundle, Path(tmp))
        out = Path(tmp) / "x86.json"
        subprocess.run([sys.executable, "-I", str(folder / em.BUNDLE_RUNNER), "--out", str(out), "--threads", "1",
                        *em.RUNNER_TIMING], check=True, capture_output=True)
        return json.loads(out.read_text())


def host_embed(bundle: Path, images: np.ndarray) -> np.ndarray:
    """The emulated board's embedding script, run by this host's Python."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = em.open_bundle(bundle, Path(tmp))
        (Path(tmp) / "embed.py").write_text(em.EMBED_SCRIPT)
        np.save(Path(tmp) / "faces.npy", images)
        subprocess.run([sys.executable, "-I", str(Path(tmp) / "embed.py"), str(folder / em.BUNDLE_RUNNER),
                        str(folder), str(Path(tmp) / "faces.npy"), str(Path(tmp) / "emb.npy"), "1"], check=True)
        return np.load(Path(tmp) / "emb.npy")


def flip_fused(embed, images: np.ndarray) -> np.ndarray:
    """embedding(image) + embedding(mirror), L2-normalised: the LFW protocol's flip fusion."""
    both = embed(np.concatenate([images, np.ascontiguousarray(images[:, :, ::-1])]))
    e = both[:len(images)] + both[len(images):]
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    # float64 throughout: normalising in float32 alone leaves 1 - cosine ~1e-7 for identical vectors
    an = a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=1, keepdims=True)
    bn = b.astype(np.float64) / np.linalg.norm(b.astype(np.float64), axis=1, keepdims=True)
    cos = np.sum(an * bn, axis=1)
    return {"n": len(a), "identical_rows": int(np.sum(np.all(a == b, axis=1))),
            "max_abs_diff": float(np.max(np.abs(a - b))), "cosine_min": float(cos.min()),
            "one_minus_cosine_max": float(1 - cos.min())}


def accuracy(emb: np.ndarray, li: np.ndarray, ri: np.ndarray, issame: np.ndarray, folds: np.ndarray) -> dict:
    r = kfold_verification(cosine_scores(emb[li], emb[ri]), issame, folds=folds).to_dict()
    return {k: r[k] for k in ("accuracy_mean", "accuracy_std", "n_pairs", "auc")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--lfw", type=Path, required=True)
    ap.add_argument("--lfw-pairs", type=int, default=10, help="pairs per fold and class (of 300) run emulated")
    ap.add_argument("--lfw-precisions", nargs="+", default=["int8"], help="bundles that get the LFW figures")
    a = ap.parse_args()
    pairs_path, root = locate_lfw(a.lfw)
    pairs = parse_pairs(pairs_path)
    names = unique_images(pairs)
    images, align_info = align_benchmark_images([root / n for n in names], None, progress=False)
    index = {n: i for i, n in enumerate(names)}
    li = np.array([index[n] for n in pairs.left])
    ri = np.array([index[n] for n in pairs.right])
    # The subset: the first N matched and first N mismatched pairs of every fold.
    per = pairs.pairs_per_fold
    pos = np.arange(len(pairs)) % (2 * per)
    sub = np.flatnonzero((pos < a.lfw_pairs) | ((pos >= per) & (pos < per + a.lfw_pairs)))
    sub_names = sorted(set(li[sub]) | set(ri[sub]))
    sub_index = {j: i for i, j in enumerate(sub_names)}
    sli, sri = np.array([sub_index[j] for j in li[sub]]), np.array([sub_index[j] for j in ri[sub]])
    sub_images = images[sub_names]
    out = {"what": __doc__.strip().splitlines()[0], "host": host_description(), "lfw": str(pairs_path),
           "lfw_alignment": {k: align_info[k] for k in ("aligner", "images", "aligned", "failures")},
           "lfw_subset": f"{len(sub)} pairs (first {a.lfw_pairs} matched + {a.lfw_pairs} mismatched of each of "
                         f"{pairs.n_folds} folds), {len(sub_names)} images, flip fusion, 10-fold over the subset",
           "bundles": {}}
    for b in a.bundles:
        rec: dict = {}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            emu = em.emulate_bundle(b, Path(tmp) / "e.json", log=lambda m: print(m, file=sys.stderr))
        rec["emulated_runner"] = {k: emu[k] for k in ("measured", "measured_on", "emulated", "parity", "model_sha256",
                                                       "target", "precision", "runtime_version")}
        rec["emulated_runner"]["wall_s"] = round(time.perf_counter() - t0, 1)
        x86 = host_run(b)
        rec["x86_runner"] = {k: x86[k] for k in ("measured_on", "parity", "runtime_version")}
        with tempfile.TemporaryDirectory() as tmp:
            faces = np.load(em.open_bundle(b, Path(tmp)) / "parity_faces.npz")["images"]
        rec["parity_faces_arm_vs_x86"] = compare(em.embed_on_board(b, faces), host_embed(b, faces))
        if emu["precision"] not in a.lfw_precisions:
            out["bundles"][b.name] = rec
            write_json(a.out, out)
            continue
        t0 = time.perf_counter()
        e_arm = flip_fused(lambda x: em.embed_on_board(b, x), sub_images)
        rec["lfw_subset_emulated_s"] = round(time.perf_counter() - t0, 1)
        e_x86_sub = flip_fused(lambda x: host_embed(b, x), sub_images)
        rec["lfw_subset_embeddings_arm_vs_x86"] = compare(e_arm, e_x86_sub)
        rec["lfw_subset_accuracy"] = {"arm_emulated": accuracy(e_arm, sli, sri, pairs.issame[sub], pairs.folds[sub]),
                                      "x86": accuracy(e_x86_sub, sli, sri, pairs.issame[sub], pairs.folds[sub])}
        e_x86 = flip_fused(lambda x: host_embed(b, x), images)
        rec["lfw_6000_accuracy_x86"] = accuracy(e_x86, li, ri, pairs.issame, pairs.folds)
        out["bundles"][b.name] = rec
        print(json.dumps({b.name: rec}, indent=1, default=str), file=sys.stderr)
        write_json(a.out, out)


if __name__ == "__main__":
    main()
