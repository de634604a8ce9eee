"""Short in-memory fine-tuning of a model with the training loss: margin loss on labelled faces plus
embedding distillation from a reference network. One loop for the two places that need it: recovering a
pruned network (reference = the unpruned model) and quantization-aware training (reference = the float model).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.folder import FaceSet
from ..data.transforms import augment, to_float
from ..errors import UserError
from .losses import MarginHead


@torch.no_grad()
def embed(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """L2-normalised embeddings of uint8 [N,H,W,3] faces (eval mode, CPU); the model's mode is restored."""
    was = model.training
    model.eval()
    t = torch.from_numpy(np.ascontiguousarray(images))
    out = [model(to_float(t[i:i + batch_size])) for i in range(0, len(t), batch_size)]
    model.train(was)
    return nn.functional.normalize(torch.cat(out), dim=1)


def class_centres(reference: nn.Module, faces: FaceSet) -> torch.Tensor:
    """Mean normalised reference embedding per class: a margin head that starts at the classes' centres gives a
    meaningful loss from step one, instead of gradients from a random head kicking a trained network."""
    known = faces.labels >= 0
    emb = embed(reference, faces.images[known])
    labels = torch.from_numpy(faces.labels[known])
    centres = torch.zeros(faces.num_classes, emb.shape[1])
    centres.index_add_(0, labels, emb)
    return nn.functional.normalize(centres + 1e-6 * torch.randn_like(centres), dim=1)


def margin_head_for(reference: nn.Module, faces: FaceSet, embedding_size: int, loss: str = "arcface_w",
                    s: float = 32.0, m: float = 0.5, terms: int = 2) -> MarginHead:
    head = MarginHead(embedding_size, max(1, faces.num_classes), loss, s, m, terms)
    if bool((faces.labels >= 0).any()) and loss != "softmax":
        head.weight.data.copy_(class_centres(reference, faces))
    return head


def finetune(model: nn.Module, faces: FaceSet, reference: nn.Module, *, steps: int, lr: float,
             batch_size: int = 32, distill_weight: float = 50.0, loss: str = "arcface_w", s: float = 32.0,
             m: float = 0.5, terms: int = 2, weight_decay: float = 0.0, freeze_bn: bool = False,
             augment_images: bool = True, seed: int = 0, progress: bool = True, desc: str = "fine-tune",
             history: list[dict[str, Any]] | None = None) -> nn.Module:
    """Train `model` in place for `steps` AdamW steps of margin loss (labelled faces; label -1 excluded) +
    distill_weight x (1 - cos) to the frozen `reference`. freeze_bn keeps BatchNorm in eval mode (QAT: the
    quantizer ranges were calibrated on its statistics). Returns `model` in eval mode."""
    if steps < 1 or lr <= 0 or batch_size < 1:
        raise UserError(f"fine-tuning needs steps >= 1, lr > 0 and batch size >= 1 (got {steps}, {lr}, {batch_size})")
    if len(faces) < 1:
        raise UserError("fine-tuning needs training faces; pass --data (the folder the model was trained on)")
    torch.manual_seed(seed)
    reference = reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    head = margin_head_for(reference, faces, reference_dim(reference, faces), loss, s, m, terms)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    images = torch.from_numpy(faces.images)
    labels = torch.from_numpy(faces.labels)
    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, len(faces))
    model.train()
    head.train()
    if freeze_bn:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    bar = tqdm(total=steps, unit="step", desc=desc, disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    perm, pos = torch.randperm(len(faces), generator=g), 0
    for step in range(steps):
        if pos + bs > len(perm):
            perm, pos = torch.randperm(len(faces), generator=g), 0
        idx = perm[pos:pos + bs]
        pos += bs
        x = to_float(images[idx])
        if augment_images:
            x = augment(x, g)
        y = labels[idx]
        with torch.no_grad():
            target = reference(x)
        emb = model(x)
        known = y >= 0
        cls_loss = head(emb[known], y[known])[0] if known.any() else emb.sum() * 0.0
        distill = (1 - nn.functional.cosine_similarity(emb, target, dim=1)).mean()
        total = cls_loss + distill_weight * distill
        if not torch.isfinite(total):
            raise RuntimeError(f"{desc}: loss became {total.item()} at step {step + 1}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        rec = {"step": step + 1, "loss": total.item(), "cls_loss": cls_loss.item(), "distill": distill.item()}
        if history is not None:
            history.append(rec)
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", cos=f"{1 - rec['distill']:.4f}",
                        img_s=f"{(step + 1) * bs / (time.perf_counter() - t0):.0f}")
    bar.close()
    return model.eval()


def reference_dim(reference: nn.Module, faces: FaceSet) -> int:
    schedule = getattr(reference, "schedule", None)
    if schedule is not None:
        return int(schedule.embedding_size)
    size = faces.images.shape[1]
    with torch.no_grad():
        return int(reference.eval()(torch.zeros(1, 3, size, size)).shape[1])
