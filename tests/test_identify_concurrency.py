"""Several processes reading and writing one gallery at once (WAL + busy timeout): no corruption, no lost write.

Kept apart from test_identify.py so the spawned workers import only the gallery module, not torch."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from compress.identify.gallery import Gallery


_start = None


def _init(barrier) -> None:
    global _start
    _start = barrier


def _writer(args: tuple[str, int, int]) -> None:
    db, worker, n = args
    rng = np.random.default_rng(worker)
    _start.wait(timeout=120)  # every worker writes at the same time, not one after another
    with Gallery(db) as g:
        for i in range(n):
            with g.transaction() as c:
                g.audit(c, command="test", decision=f"w{worker}", scores=[i], model_sha256="m")
                if i % 5 == 0:
                    g.add_person(c, f"w{worker}-{i}", "src", [{"vector": rng.normal(size=8), "image": "x",
                                                            "model_sha256": "m", "runtime": "r", "precision": "p"}],
                                 replace=False)
            g.templates("m")  # a read between writes, while the others write
            g.counts()


def test_several_processes_read_and_write_without_corruption(tmp_path):
    db = tmp_path / "ward.db"
    with Gallery(db, create=True) as g, g.transaction() as c:
        g.add_person(c, "seed", "src", [{"vector": np.ones(8), "image": "x", "model_sha256": "m", "runtime": "r",
                                         "precision": "p"}], replace=False)
    workers, n = 4, 30
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(ctx.Barrier(workers),)) as pool:
        pool.map(_writer, [(str(db), w, n) for w in range(workers)])
    with Gallery(db) as g:
        assert g.integrity() == "ok"
        counts = g.counts()
        assert counts["audit"] == workers * n
        assert counts["people"] == 1 + workers * (n // 5) and counts["embeddings"] == counts["people"]
        per_worker = [sum(r["decision"] == f"w{w}" for r in g.audit_rows()) for w in range(workers)]
        assert per_worker == [n] * workers
