"""Training images/s of a (pruned) network on this CPU: the student's share of a distillation step from cached
teacher embeddings (forward, ArcFace-w + 500 x (1 - cos) to fixed targets, backward, AdamW), batch 64, BN in
train mode. Data loading/augmentation is not included (the trainer prefetches it); the teacher costs nothing
per step with cached views. Prints one JSON line with the host, threads and the load average around the run.

    .venv/bin/python benchmarks/mfn_train_speed.py SCHEDULE_OR_TOML [--threads 1] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from compress.artifacts import host_description
from compress.model.complexity import count_macs
from compress.model.network import build_model
from compress.train.losses import MarginHead


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("schedule")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build_model(a.schedule)
    size = net.schedule.input_size
    macs = count_macs(net.eval(), (3, size, size))
    head = MarginHead(net.schedule.embedding_size, 299, "arcface_w", 32.0, 0.5, 2)
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=1e-3)
    x = torch.randn(a.batch, 3, size, size)
    y = torch.randint(0, 299, (a.batch,))
    target = F.normalize(torch.randn(a.batch, net.schedule.embedding_size), dim=1)
    net.train()

    def step() -> None:
        emb = net(x)
        loss = head(emb, y)[0] + 500.0 * (1 - F.cosine_similarity(emb, target)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"schedule": net.schedule.name, "macs": macs, "batch": a.batch, "steps": a.steps,
                      "threads": a.threads, "images_per_s": round(a.steps * a.batch / dt, 1),
                      "host": host_description(), "loadavg_1min_before_after": [load0, os.getloadavg()[0]],
                      "measured_by": "benchmarks/mfn_train_speed.py (student step only, synthetic batch)"}))


if __name__ == "__main__":
    main()
