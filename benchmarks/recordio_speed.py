"""Images/s of the RecordIO reader (DataLoader, 2 workers) against the image-folder readers, on this host.

Writes N synthetic 112x112 JPEG faces (quality 95, 200 identities; a coloured 8x8 identity pattern plus
noise; at most 10,000 distinct images, repeated beyond that) once under /tmp, as an image folder and as an
insightface train.rec/.idx/property holding the same JPEG bytes, then times one full pass of each reader over
all N images, decoded to uint8 RGB arrays:

- recordio, 2 workers: compress.data.recordio.RecordFaces through the training DataLoader (batch 128)
- lazy folder, 2 workers: compress.data.lazy.LazyFolder, same DataLoader
- in-memory folder, 1 process: compress.data.folder.read_image_folder (what training used before streaming)

The files were just written, so they are read from the page cache (no disk in the figure). Timing is wall
clock on a host that may be shared; each reader runs `--rounds` times and the median is kept.

    .venv/bin/python benchmarks/recordio_speed.py [--n 10000] [--rounds 3] [--out reports/recordio] [--overwrite]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the RecordIO writer is kept with the tests (the product only reads)

from compress.artifacts import host_description, versions, write_json  # noqa: E402
from compress.errors import UserError  # noqa: E402
from readme_section import write_section  # noqa: E402

IDENTITIES = 200
UNIQUE = 10_000  # distinct encoded images; larger sets repeat them (image i is image i % UNIQUE, same label)


def synthetic_jpegs(n: int, root: Path, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """n encoded 112x112 JPEG faces and their labels (identity i % IDENTITIES). The UNIQUE distinct images are
    taken from a finished UNIQUE-image set under root when there is one (encoding is the slow part)."""
    labels = np.arange(n) % IDENTITIES
    pool_dir = root / str(UNIQUE) / "folder"
    if n > UNIQUE and (root / str(UNIQUE) / "complete").is_file():
        files = sorted(pool_dir.glob("*/*.jpg"), key=lambda p: int(p.stem))
        pool = [p.read_bytes() for p in files]
    else:
        pool = _encode(min(n, UNIQUE), seed)
    return [pool[i % UNIQUE] for i in range(n)], labels


def _encode(n: int, seed: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (IDENTITIES, 8, 8, 3)).astype(np.float32)
    out = []
    for y in np.arange(n) % IDENTITIES:
        img = np.kron(protos[y], np.ones((14, 14, 1), np.float32)) + rng.normal(0, 20, (112, 112, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def make_data(n: int, root: Path) -> tuple[Path, Path]:
    """(image folder, train.rec) of n synthetic faces under root, written once (a marker says complete)."""
    from tests.recordio_writer import pack, write_record

    folder, recdir, done = root / "folder", root / "rec", root / "complete"
    if done.is_file():
        return folder, recdir / "train.rec"
    jpegs, labels = synthetic_jpegs(n, root.parent)
    for i, (data, y) in enumerate(zip(jpegs, labels)):
        d = folder / f"id{y:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:07d}.jpg").write_bytes(data)
    recdir.mkdir(parents=True, exist_ok=True)
    order = np.argsort(labels, kind="stable")  # insightface layout: images grouped by identity
    a = 1 + n
    idx = []
    with open(recdir / "train.rec", "wb") as f:
        def put(key: int, payload: bytes) -> None:
            idx.append(f"{key}\t{f.tell()}\n")
            write_record(f, payload)

        put(0, pack((float(a), float(a + IDENTITIES)), b""))
        for k, i in enumerate(order):
            put(1 + k, pack(float(labels[i]), jpegs[i], 1 + k))
        for j in range(IDENTITIES):
            rows = np.flatnonzero(labels[order] == j)
            put(a + j, pack((float(1 + rows[0]), float(2 + rows[-1])), b""))
    (recdir / "train.idx").write_text("".join(idx))
    (recdir / "property").write_text(f"{IDENTITIES},112,112\n")
    done.write_text(f"{n}\n")
    return folder, recdir / "train.rec"


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers are joined after a pass)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def loader_pass(dataset, workers: int, batch: int = 128) -> tuple[float, float]:
    """(wall s, CPU s) of one pass of the DataLoader over every image (what a training epoch reads)."""
    from torch.utils.data import DataLoader

    t0, c0 = time.perf_counter(), _cpu_seconds()
    n = 0
    for x, _ in DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers):
        n += len(x)
    assert n == len(dataset)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def time_readers(folder: Path, rec: Path, rounds: int, workers: int) -> dict[str, dict]:
    from compress.data.folder import read_image_folder
    from compress.data.lazy import LazyFolder
    from compress.data.recordio import RecordFaces

    runs = {f"recordio, {workers} workers": lambda: loader_pass(RecordFaces(rec), workers),
            f"lazy folder, {workers} workers": lambda: loader_pass(LazyFolder(folder), workers),
            "in-memory folder, 1 process": lambda: _timed(lambda: read_image_folder(folder, progress=False))}
    n = len(RecordFaces(rec))
    out = {}
    for name, run in runs.items():
        walls, cpus = zip(*[run() for _ in range(rounds)])
        out[name] = {"images_per_s": round(n / statistics.median(walls), 1),
                     "images_per_cpu_s": round(n / statistics.median(cpus), 1),
                     "wall_seconds": [round(s, 2) for s in walls], "cpu_seconds": [round(s, 2) for s in cpus]}
        print(f"  {name}: {out[name]['images_per_s']} images/s wall, {out[name]['images_per_cpu_s']} images per "
              f"CPU-second (median of {rounds})", flush=True)
    return out


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), _cpu_seconds()
    fn()
    return time.perf_counter() - t0, _cpu_seconds() - c0


def write_report(out: Path, name: str, record: dict, readme_section: str, overwrite: bool) -> None:
    """JSON + its section of out/README.md, atomically; an existing JSON is replaced only with --overwrite."""
    target = out / f"{name}.json"
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    write_json(target, record)
    write_section(out / "README.md", name, readme_section, "RecordIO and streamed data: measurements")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("/tmp/compress-recordio-bench"))
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "recordio")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    folder, rec = make_data(args.n, args.data / str(args.n))
    print(f"data: {args.n} synthetic JPEG faces in {args.data / str(args.n)} ({time.perf_counter() - t0:.0f} s)")
    results = time_readers(folder, rec, args.rounds, args.workers)
    record = {"what": "images/s (wall clock) and images per CPU-second (process + DataLoader workers) of one full "
                      "pass over every image (decoded to uint8 RGB), median of rounds",
              "data": f"{args.n} synthetic 112x112 JPEG faces (quality 95, {IDENTITIES} identities), same bytes in "
                      f"an image folder and an insightface train.rec; page cache warm",
              "command": "benchmarks/recordio_speed.py " + " ".join(sys.argv[1:]),
              "host": host_description(), "cpu_count": os.cpu_count(),
              "note": "host shared with other jobs while measured; compare readers within this run only",
              "versions": {k: v for k, v in versions().items() if k in ("torch", "pillow", "numpy", "python")},
              "results": results}
    rows = "\n".join(f"| {k} | {v['images_per_s']:,} | {v['images_per_cpu_s']:,} |" for k, v in results.items())
    section = (f"## Reader speed ({args.n} images)\n\n`{record['command']}` on {record['host']} "
               f"(shared with other jobs), {record['data']}:\n\n"
               f"| reader | images/s (wall) | images per CPU-second |\n|---|---|---|\n{rows}\n\n"
               f"Wall-clock rates depend on what else the host ran (it was shared); images per CPU-second (this "
               f"process "
               f"plus its DataLoader workers) is the cost, which contention changes much less.\n\n"
               f"Data: [speed.json](speed.json).")
    write_report(args.out, "speed", record, section, args.overwrite)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
