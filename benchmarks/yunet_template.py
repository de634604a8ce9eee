"""Fit YuNet's alignment template (issue 27): where YuNet's five points fall, on average, in MTCNN-aligned 112x112
crops. YuNet places its points a little differently on a face than MTCNN (its eyes ~1.3 px further apart and its
mouth corners ~1.2 px higher in an MTCNN crop), so warping YuNet's points onto the ArcFace template would give
crops slightly off the ones the models were trained and benchmarked on; warping them onto this template gives
the MTCNN crop on average. Fitted on LFW images NOT named in pairs.txt (the LFW accuracy never sees them):
MTCNN's transform from the shared alignment cache, YuNet's points from the aligner (photo settings).
Prints the template to paste into compress/data/detectors.py (YUNET_TEMPLATE_112) and writes
reports/detectors/yunet_template.json. ``--detector blazeface``: the same fit for BlazeFace's four points (eyes,
nose tip, mouth centre; BLAZEFACE_TEMPLATE_112, blazeface_template.json); its ArcFace counterpart puts the
mouth centre midway between the template's mouth corners.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/yunet_template.py [--images 1000] [--detector D]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import host_description, now_iso, write_json  # noqa: E402

LFW = ROOT.parent / "shared" / "data" / "lfw"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--detector", default="yunet", choices=("yunet", "blazeface"))
    args = ap.parse_args()
    from tqdm import tqdm

    from compress.data.align import (TEMPLATE_112, AlignConfig, _Cache, _decode, apply_transform, default_cache_dir,
                                     get_aligner)
    from compress.evaluate.lfw import locate_lfw, parse_pairs, unique_images

    pairs_path, root = locate_lfw(LFW)
    used = set(unique_images(parse_pairs(pairs_path)))
    rest = sorted(p for p in root.glob("*/*.jpg") if f"{p.parent.name}/{p.name}" not in used)
    pick = [rest[i] for i in sorted(np.random.default_rng(0).permutation(len(rest))[:args.images])]
    mt = _Cache(default_cache_dir(), AlignConfig().tag())
    yunet = get_aligner(AlignConfig(detector=args.detector))
    pts = []
    # BlazeFace's mouth centre against the midpoint of the ArcFace mouth corners
    arcface = TEMPLATE_112 if args.detector == "yunet" else np.r_[TEMPLATE_112[:3], TEMPLATE_112[3:].mean(0)[None]]
    for p in tqdm(pick, desc="fit"):
        data = p.read_bytes()
        m = mt.get(mt.key(data))
        if m is None or "transform" not in m[0]:
            continue  # MTCNN found no face or the cache lacks it: nothing to compare with
        r = yunet.align_batch([_decode(data)], haar=False)[0]
        if r is not None:
            pts.append(apply_transform(np.array(m[0]["transform"]), r.landmarks))
    pts = np.array(pts)
    tmpl = pts.mean(0)
    out = {"created": now_iso(), "host": host_description(), "images": len(pts),
           "data": f"LFW deep-funneled images not in pairs.txt, {args.images} drawn with seed 0",
           "template_112": tmpl.round(4).tolist(), "std_px": pts.std(0).round(3).tolist(),
           "detector": args.detector, "arcface_template_112": arcface.tolist(),
           "shift_px": (tmpl - arcface).round(3).tolist()}
    write_json(ROOT / "reports" / "detectors" / f"{args.detector}_template.json", out)
    print(np.array2string(tmpl.round(4), separator=", "))


if __name__ == "__main__":
    main()
