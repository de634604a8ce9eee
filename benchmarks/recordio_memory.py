"""Peak memory (RSS) of the training readers at 10 k and 100 k images: streamed stays flat, in-memory grows.

For each size, the synthetic JPEG faces of benchmarks/recordio_speed.py (image folder + train.rec, under /tmp)
are read by each reader in a fresh Python process, which then reports its peak RSS (getrusage ru_maxrss) and
the largest peak among its DataLoader workers:

- recordio, 2 workers and lazy folder, 2 workers: the data set opened in full (index or file list of all N
  images), then --batches shuffled DataLoader batches of 128 (0 = a whole pass). A streamed batch is freed
  once used, so what grows with N is the index, which opening the set already holds;
- in-memory folder: compress.data.folder.read_image_folder, the pre-streaming path (all pixels in one array);
  above --in-memory-max images it is not run, and its pixel array alone (N x 112 x 112 x 3 bytes) is given,
  labelled computed.

    .venv/bin/python benchmarks/recordio_memory.py [--sizes 10000 100000] [--out reports/recordio] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from recordio_speed import REPO, make_data, write_report

from compress.artifacts import host_description

_CHILD = r"""
import json, resource, sys
from pathlib import Path
kind, path, batches = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
import torch
from torch.utils.data import DataLoader
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "in-memory folder":
    from compress.data.folder import read_image_folder
    n = len(read_image_folder(path, progress=False))
else:
    from compress.data.lazy import open_streamed
    data = open_streamed(path)
    def read():  # the loader goes out of scope on return: its workers are joined, so RUSAGE_CHILDREN sees them
        n = 0
        for i, (x, _) in enumerate(DataLoader(data, batch_size=128, shuffle=True, num_workers=2)):
            n += len(x)
            if i + 1 == batches:
                break
        return n
    n = f"{read()} of {len(data)}"
kib = lambda who: resource.getrusage(who).ru_maxrss
print(json.dumps({"images": n, "peak_rss_mib": round(kib(resource.RUSAGE_SELF) / 1024, 1),
                  "after_imports_mib": round(base / 1024, 1),
                  "largest_worker_peak_rss_mib": round(kib(resource.RUSAGE_CHILDREN) / 1024, 1)}))
"""


def measure(kind: str, path: Path, batches: int) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), str(batches)], capture_output=True, text=True,
                       cwd=REPO, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _cell(m: dict) -> str:
    if "computed_pixel_array_mib" in m:
        return f">= {m['computed_pixel_array_mib']:,} (computed: pixel array alone, not run)"
    worker = m.get("largest_worker_peak_rss_mib")
    return f"{m['peak_rss_mib']:,}" + (f" ({worker:,})" if worker else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--data", type=Path, default=Path("/tmp/compress-recordio-bench"))
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "recordio")
    ap.add_argument("--in-memory-max", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=20, help="streamed readers: batches of 128 read (0 = all)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    for n in args.sizes:
        folder, rec = make_data(n, args.data / str(n))
        for kind, path in (("recordio, 2 workers", rec), ("lazy folder, 2 workers", folder),
                           ("in-memory folder", folder)):
            if kind == "in-memory folder" and n > args.in_memory_max:
                results.setdefault(kind, {})[str(n)] = {"computed_pixel_array_mib": round(n * 112 * 112 * 3 / 2**20, 1),
                                                        "note": "not run; the uint8 pixel array alone, computed"}
                continue
            results.setdefault(kind, {})[str(n)] = m = measure(kind, path, args.batches)
            print(f"{n} images, {kind}: peak RSS {m['peak_rss_mib']} MiB (largest worker "
                  f"{m['largest_worker_peak_rss_mib']} MiB)", flush=True)
    record = {"what": "peak RSS (getrusage ru_maxrss) of a fresh process that opens the whole set and reads it "
                      "(in-memory: every image; streamed: --batches batches of 128, 0 = all); for the DataLoader "
                      "readers also the largest worker's peak",
              "data": "synthetic 112x112 JPEG faces (quality 95, 200 identities; 10,000 distinct images, repeated in "
                      "larger sets), written by benchmarks/recordio_speed.py",
              "command": "benchmarks/recordio_memory.py " + " ".join(sys.argv[1:]),
              "host": host_description(), "results": results}
    header = " | ".join(f"{n:,} images" for n in args.sizes)
    rows = "\n".join(f"| {k} | " + " | ".join(_cell(v[str(n)]) for n in args.sizes) + " |" for k, v in results.items())
    section = (f"## Peak memory\n\n`{record['command']}` on {record['host']}: peak RSS in MiB of a fresh process "
               f"that opens the whole set and reads it (in-memory: every image; streamed: "
               f"{args.batches or 'all'} shuffled batches of 128), largest DataLoader worker in brackets; "
               f"{record['data']}:\n\n"
               f"| reader | {header} |\n|---|{'---|' * len(args.sizes)}\n{rows}\n\nData: [memory.json](memory.json).")
    write_report(args.out, "memory", record, section, args.overwrite)


if __name__ == "__main__":
    main()
