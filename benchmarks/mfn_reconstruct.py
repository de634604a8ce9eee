"""Issue 26: what least-squares reconstruction (compress.prune.reconstruct, `prune --reconstruct`) does to the
57 M budget-pruned MobileFaceNet of benchmarks/mfn_chain.sh (runs/mfn-chain/pruned-57M, pruned without it):
1 - cos of its embeddings to the teacher's on 256 held-out CelebA-299 faces before/after, the per-conv relative
errors, and LFW (10-fold, flip) after reconstruction with no fine-tuning (71.73% before: reports/mfn/).
Writes runs/recon-57M.json; needs ../shared. `prune --reconstruct` does the same from the selection; here the
kept channels are recovered from the pruned artifact's depthwise kernels.
    .venv/bin/python benchmarks/mfn_reconstruct.py
"""
import sys, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
import os; os.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
from compress.model.io import load_model
from compress.prune.reconstruct import reconstruct, pointwise_convs, relative_error
from compress.data.sources import load_faces
from compress.data.transforms import to_float
src = load_model("../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx").eval()
pr = load_model("runs/mfn-chain/pruned-57M").eval()
faces = load_faces("../shared/data/celeba-299", progress=False, align=True)
idx = np.random.default_rng(1).choice(len(faces.images), 512, replace=False)
imgs = to_float(torch.from_numpy(faces.images[idx]))
smods = dict(src.named_modules()); pmods = dict(pr.named_modules())
# recover kept output channels by matching rows (the experiment only; the command has the selection)
out = {}
for t in pointwise_convs(pr):
    ws, wt = smods[t].weight.flatten(1), pmods[t].weight.flatten(1)
    if ws.shape[0] == wt.shape[0]: continue
    cols = wt.shape[1]
    # source rows restricted to the kept input columns are unknown; match on the dw conv instead
    dws = smods[t.replace("conv.0.0", "conv.1.0")].weight.flatten(1); dwt = pmods[t.replace("conv.0.0", "conv.1.0")].weight.flatten(1)
    out[t] = np.array([int(torch.nonzero((dws == r).all(1))[0]) for r in dwt])
test = to_float(torch.from_numpy(faces.images[np.random.default_rng(2).choice(len(faces.images), 256, replace=False)]))
cos_before = relative_error(src, pr, test)
print("1-cos before", cos_before)
t0 = time.time()
rec = reconstruct(src, pr, imgs, lambda t: t, out, progress=print)
print("took", time.time() - t0)
cos_after = relative_error(src, pr, test)
print("1-cos after", cos_after)


import json
from compress.prune.measure import lfw_record
from pathlib import Path
after = lfw_record(pr, Path("../shared/data/lfw"), "pruned-57M reconstructed (no fine-tune)")
print("LFW after reconstruction:", after["summary"])
json.dump({"one_minus_cos_before_after": {"before": cos_before, "after": cos_after}, "lfw_after_reconstruction": after, "reconstruction": rec},
          open("runs/recon-57M.json", "w"), indent=1, default=str)
