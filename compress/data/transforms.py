"""Batch augmentation (mirror, shift, crop) and normalisation, on uint8 NHWC tensors.

Done on whole batches with torch ops, because per-image PIL transforms dominate a CPU training step for a
network this small. Normalisation is ImageNet's mean/std, the same as the MobileFaceNet teacher, so every model
in the project (and exported files) takes identical input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NORMALIZATION = "rgb, (x/255 - imagenet_mean) / imagenet_std"


def to_float(batch_nhwc_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,3] RGB -> normalised float [N,3,H,W]."""
    x = batch_nhwc_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _warp(x: torch.Tensor, flip: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
          angle: torch.Tensor | None = None) -> torch.Tensor:
    """One affine grid sample per batch: per-image mirror, scale (zoom), optional rotation (radians), shift."""
    mirror = torch.where(flip, -1.0, 1.0)
    cos, sin = (torch.cos(angle), torch.sin(angle)) if angle is not None else (1.0, 0.0)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = scale * cos * mirror
    theta[:, 0, 1] = -scale * sin
    theta[:, 1, 0] = scale * sin * mirror
    theta[:, 1, 1] = scale * cos
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 6, min_scale: float = 0.88,
            p_flip: float = 0.5, return_flip: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal mirror, then a random crop (scale in [min_scale, 1]) and shift resampled back to
    the input size, as one affine grid sample per batch. x: float [N,3,H,W]. With return_flip, also the
    per-image mirror mask (distillation picks the teacher's embedding of the same view)."""
    n, _, h, w = x.shape
    dev = x.device
    flip = torch.rand(n, generator=generator) < p_flip
    scale = min_scale + (1 - min_scale) * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * max_shift / w)
    out = _warp(x, flip, scale, shift)
    return (out, flip) if return_flip else out


def augment_mirror(x: torch.Tensor, generator: torch.Generator, p_flip: float = 0.5, return_flip: bool = False
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The "mirror" policy: a random horizontal mirror and nothing else, so a cached teacher's embedding of the
    image or of its mirror is exactly the target of the view the student sees (the MobileFaceNet teacher's own
    embedding moves by 1 - cos = 0.17 under the light policy's crop and shift: a target that noisy caps
    distillation)."""
    flip = torch.rand(len(x), generator=generator) < p_flip
    out = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    return (out, flip) if return_flip else out


AUGMENT_POLICIES = ("light", "strong", "mirror")


def augment_strong(x: torch.Tensor, generator: torch.Generator, max_rotate_deg: float = 12.0,
                   scale: tuple[float, float] = (0.80, 1.06), max_shift: int = 10, jitter: float = 0.35,
                   p_gray: float = 0.15, return_flip: bool = False
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The "strong" policy, for training whose teacher sees the same view (online distillation): mirror,
    rotation, zoom in and out, shift (one affine grid sample), then per-image brightness / contrast /
    saturation jitter and occasional greyscale. Meant to widen a small data set's coverage of pose and
    lighting, so the student matches the teacher as a function rather than on a few thousand points.
    x: normalised float [N,3,H,W]; returns the same layout and normalisation."""
    n, _, h, w = x.shape
    dev = x.device
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_rotate_deg)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * max_shift / w)
    out = _warp(x, flip, s, shift, angle)
    # Colour in [0, 1] space, then back to the project's normalisation.
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    rgb = out * std + mean

    def factor() -> torch.Tensor:
        return (1 + (torch.rand(n, generator=generator) * 2 - 1) * jitter).view(n, 1, 1, 1).to(dev)

    luma = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = rgb * factor()  # brightness
    rgb = (rgb - gray.mean((2, 3), keepdim=True)) * factor() + gray.mean((2, 3), keepdim=True)  # contrast
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = (rgb - gray) * factor() + gray  # saturation
    to_gray = (torch.rand(n, generator=generator) < p_gray).view(n, 1, 1, 1).to(dev)
    rgb = torch.where(to_gray, gray.expand_as(rgb), rgb).clamp_(0, 1)
    out = (rgb - mean) / std
    return (out, flip) if return_flip else out
