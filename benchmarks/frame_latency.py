"""The robot's frame on this host (issue 27): a 640x480 frame with one LFW face, detect + align + embed (flip) +
match against 1,000 templates, one thread, per detector and embedder runtime. Writes
reports/detectors/latency.json and its section of reports/detectors/README.md (the figures of the README's robot
section). Each row is `compress bench --frame PHOTO --threads 1 --detector D [--detect-side S] --model M`;
the rows are measured in interleaved rounds (the host is shared) and the median of the round medians is
reported next to every round's.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frame_latency.py [--rounds 3 --seconds 4]
The embedders: zoo:table3 in PyTorch and as its plain ONNX export (runs/exports/zoo-table3-onnx-fp32, made by
`compress export --target onnx --precision fp32 --model zoo:table3`), and the MobileFaceNet teacher (ONNX).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compress.artifacts import host_description, now_iso, versions, write_json  # noqa: E402
from readme_section import write_section  # noqa: E402

PHOTO = ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled" / "Colin_Powell" / "Colin_Powell_0001.jpg"
EXPORT = ROOT / "runs" / "exports" / "zoo-table3-onnx-fp32"
# the ward's default embedder, exported plain (`compress export --target onnx --model zoo:mfn-113m --out WARD`)
WARD_EXPORT = ROOT / "runs" / "exports" / "zoo-mfn-113m-onnx-fp32"
TEACHER = ROOT.parent / "shared" / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"
OUT = ROOT / "reports" / "detectors"
GOAL = {"detect": 5.0, "total": 15.0}  # issue 27, one thread, median ms


def rows() -> list[tuple[str, int | None, str]]:
    emb = [str(EXPORT)] if (EXPORT / "manifest.json").is_file() else []
    out = [("mtcnn", None, "zoo:table3"), ("yunet", 640, "zoo:table3"), ("yunet", None, "zoo:table3"),
           ("blazeface", 640, "zoo:table3"), ("blazeface", 320, "zoo:table3")]
    out += [("yunet", s, e) for e in emb for s in (None, 640)] + [("mtcnn", None, e) for e in emb]
    out += [("yunet-onet", None, e) for e in ["zoo:table3", *emb]]
    if (WARD_EXPORT / "manifest.json").is_file():
        out += [(d, None, str(WARD_EXPORT)) for d in ("yunet-onet", "yunet", "blazeface")]
    if TEACHER.is_file():
        out += [("yunet-onet", None, str(TEACHER)), ("yunet", None, str(TEACHER)), ("blazeface", None, str(TEACHER))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--photo", type=Path, default=PHOTO)
    ap.add_argument("--detect-only", type=int, metavar="N", help="only the interleaved detect comparison (N calls "
                    "per detector, alternating), added to the existing latency.json")
    args = ap.parse_args()
    if args.detect_only:
        import json

        report = json.loads((OUT / "latency.json").read_text())
        report["detect_interleaved"] = detect_interleaved(args.photo, args.detect_only)
        write_json(OUT / "latency.json", report)
        write_section(OUT / "README.md", "latency", readme(report), "Face detectors (issue 27)")
        return print(readme(report))
    from compress.bench.frame import bench_frame

    results: dict[int, list[dict]] = {}
    load_start = [round(x, 2) for x in os.getloadavg()]
    for _ in range(args.rounds):
        for i, (det, side, model) in enumerate(rows()):
            r = bench_frame(args.photo, det, model, threads=1, seconds=args.seconds, detect_side=side)
            results.setdefault(i, []).append(r)
            print(f"{det}@{r['detector']['detect_max_side']} {r['model']['name']}: {r['total']['median_ms']} ms",
                  file=sys.stderr)
    table = []
    for i, rs in results.items():
        first = rs[0]
        med = {s: float(np.median([r["stages"][s]["median_ms"] for r in rs])) for s in first["stages"]}
        p90 = {s: float(np.median([r["stages"][s]["p90_ms"] for r in rs])) for s in first["stages"]}
        low = {s: float(min(r["stages"][s]["min_ms"] for r in rs)) for s in first["stages"]}
        tot = [r["total"]["median_ms"] for r in rs]
        table.append({"detector": first["detector"], "model": first["model"], "stages_median_ms": med,
                      "stages_p90_ms": p90, "stages_min_ms": low,
                      "total_min_ms": float(min(r["total"]["min_ms"] for r in rs)), "total_median_ms": float(np.median(tot)),
                      "total_p90_ms": float(np.median([r["total"]["p90_ms"] for r in rs])),
                      "total_median_ms_per_round": tot, "runs_per_round": [r["runs"] for r in rs],
                      "detect_median_ms_per_round": [r["stages"]["detect"]["median_ms"] for r in rs]})
    report = {"format": "compress.detectors.frame_latency/1", "created": now_iso(), "measured": True,
              "host": host_description(), "cpu_flags": results[0][0]["cpu_flags"], "threads": 1,
              "photo": str(args.photo), "frame": results[0][0]["frame"], "templates": results[0][0]["templates"],
              "flip": True, "rounds": args.rounds, "seconds_per_row_per_round": args.seconds, "goal_ms": GOAL,
              "load_average_at_start": load_start, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "versions": results[0][0]["versions"], "rows": table}
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "latency.json", report)
    write_section(OUT / "README.md", "latency", readme(report), "Face detectors (issue 27)")
    print(readme(report))


# (detector, longer side detected at, YuNet's runtime): YuNet by onnxruntime (the default) and by OpenCV
DETECT_ROWS = (("yunet", 320, "onnxruntime"), ("yunet", 320, "opencv"), ("yunet-onet", 320, None),
               ("blazeface", 640, None), ("blazeface", 320, None), ("yunet", 640, "onnxruntime"))


def detect_interleaved(photo: Path, n: int) -> dict:
    """Detect alone (the aligner's frame preparation + the detector; what `bench --frame` times as 'detect'), the
    detectors called in turn on the same frame, one thread, so neighbouring calls share the host's load: per
    detector median / p90 / min, and the median of the per-turn ratios to the first (YuNet at 320)."""
    import time

    import cv2

    from compress.bench.frame import place_in_frame
    from compress.data.align import frame_config
    from compress.identify.pipeline import FaceFinder, read_image

    cv2.setNumThreads(1)
    frame = place_in_frame(read_image(photo))
    from compress.data.detectors import YunetDetector

    finders = [FaceFinder(config=frame_config(d, s), detector=YunetDetector(runtime=rt) if d == "yunet" else None)
               for d, s, rt in DETECT_ROWS]
    times = np.zeros((n, len(finders)))
    load = [round(x, 2) for x in os.getloadavg()]
    for f in finders:
        for _ in range(5):  # warm-up
            f.detect(frame)
    for i in range(n):
        for j in np.roll(np.arange(len(finders)), i):  # rotate who goes first
            t0 = time.perf_counter()
            f = finders[j].detect(frame)
            times[i, j] = (time.perf_counter() - t0) * 1e3
    rows = []
    for j, (d, s, rt) in enumerate(DETECT_ROWS):
        t = times[:, j]
        rows.append({"detector": d, "detect_max_side": s, "runtime": rt or {"yunet-onet": "onnxruntime (YuNet and ONet)"}.get(d, "LiteRT (XNNPACK)"), "median_ms": round(float(np.median(t)), 3),
                     "p90_ms": round(float(np.percentile(t, 90)), 3), "min_ms": round(float(t.min()), 3),
                     "ratio_to_first_median": round(float(np.median(t / times[:, 0])), 3)})
    return {"created": now_iso(), "calls_per_detector": n, "load_average_at_start": load,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "rows": rows}


def readme(r: dict) -> str:
    lines = [f"Frame latency measured {r['created'][:16]} on {r['host']} (CPU flags {' '.join(r['cpu_flags'])}), "
             f"one thread, by `benchmarks/frame_latency.py` ({r['rounds']} interleaved rounds; median of the round "
             f"medians; load average {r['load_average_at_start'][0]} at start: a shared host, so these are upper "
             f"bounds). Frame: {r['frame']} ({Path(r['photo']).name}); embed with flip; match against "
             f"{r['templates']} templates. Goal (issue 27): detect <= {r['goal_ms']['detect']} ms, total <= "
             f"{r['goal_ms']['total']} ms.", "",
             "| detector (detected at) [runtime] | embedder [runtime, sha256] | detect | align | embed | match | total median | "
             "total p90 | detect / total min | detect vs yunet 320 (median / min) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = {t["model"]["sha256"]: t for t in r["rows"] if t["detector"]["name"] == "yunet"
            and t["detector"]["detect_max_side"] == 320}
    for t in r["rows"]:
        s, d, m = t["stages_median_ms"], t["detector"], t["model"]
        lines.append(f"| {d['name']} ({d['detect_max_side']} px max side) [{d.get('runtime', '?').split()[0]}] | {m['name']} [{m['runtime']}, "
                     f"{m['sha256'][:12]}] | {s['detect']:.1f} | {s['align']:.1f} | {s['embed']:.1f} | "
                     f"{s['match']:.1f} | {t['total_median_ms']:.1f} | {t['total_p90_ms']:.1f} | "
                     f"{t['stages_min_ms']['detect']:.1f} / {t['total_min_ms']:.1f} | " + ratio(t, base) + " |")
    di = r.get("detect_interleaved")
    if di:
        lines += ["", f"Detect alone, the detectors called in turn on the same frame ({di['calls_per_detector']} calls "
                  f"each, one thread; {di['created'][:16]}, load average {di['load_average_at_start'][0]} at start; "
                  "`benchmarks/frame_latency.py --detect-only N`): the ratio is the median of per-turn ratios, "
                  "the figure least moved by the shared host's load.", "",
                  "| detector (detected at) [runtime] | median ms | p90 ms | min ms | vs yunet 320 (median of ratios) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {x['detector']} ({x['detect_max_side']} px max side) [{x.get('runtime', '?')}] | {x['median_ms']:.2f} | {x['p90_ms']:.2f} "
                  f"| {x['min_ms']:.2f} | {x['ratio_to_first_median']:.2f} |" for x in di["rows"]]
    return "\n".join(lines)


def ratio(t: dict, base: dict) -> str:
    """Detect time over YuNet-at-320's with the same embedder, measured in the same interleaved rounds (the
    ratio survives the shared host's load better than the milliseconds): median of per-round ratios, and min/min."""
    b = base.get(t["model"]["sha256"])
    if b is None or "detect_median_ms_per_round" not in t:
        return "-"
    per = np.median(np.array(t["detect_median_ms_per_round"]) / np.array(b["detect_median_ms_per_round"]))
    return f"{per:.2f} / {t['stages_min_ms']['detect'] / b['stages_min_ms']['detect']:.2f}"


if __name__ == "__main__":
    main()
