"""Classification heads for face-embedding training: ArcFace-w (the paper's), ArcFace, plain softmax.

ArcFace's target logit is s*cos(theta_y + m) with theta_y = arccos(cos theta_y). ArcFace-w replaces the
arccos by pi/2 - arcsin_N(x), the arcsin Taylor series truncated to N terms. For 0 < x <= 1 every term is
positive, so the truncated sum is below arcsin(x) and theta_w >= theta: an extra, adaptive margin that grows as
a sample nears its class centre (up to pi/2 - sum(coeffs) at x = 1: 0.571 rad for N=1, 0.404 for N=2).
The paper only argues for x > 0. For x <= 0 the truncated series would *shrink* theta (odd powers of a
negative x), so theta_w there is the exact arccos (both sides give pi/2 with slope -1 at x = 0). The target
logit for x <= 0 is the additive cosine margin x - sin(m) rather than cos(arccos(x) + m), which meets the arc
form at x = 0 and, unlike it, does not fade as theta nears pi - m (see MarginHead.logits). The polynomial also has finite gradient at x = 1, where arccos' is
infinite; the exact ArcFace clamps x to +-(1 - 1e-7) for the same reason.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("arcface_w", "arcface", "softmax")
DEFAULT_TERMS = 2  # provisional: the LFW ablation (README "ArcFace-w ablation") decides it
_EPS = 1e-7


def arcsin_coefficients(n_terms: int) -> list[float]:
    """Coefficients of x^(2k+1), k < n_terms, in arcsin's series: (2k)! / (4^k (k!)^2 (2k+1))."""
    if n_terms < 1:
        raise ValueError(f"ArcFace-w needs at least 1 series term, got {n_terms}")
    return [math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1)) for k in range(n_terms)]


def theta_w(cos: torch.Tensor, n_terms: int) -> torch.Tensor:
    """ArcFace-w's angle: pi/2 - truncated arcsin series for cos > 0, exact arccos for cos <= 0."""
    x_pos = cos.clamp(0.0, 1.0)
    series = torch.zeros_like(cos)
    power = x_pos
    x2 = x_pos * x_pos
    for c in arcsin_coefficients(n_terms):
        series = series + c * power
        power = power * x2
    # Clamping before arccos keeps its gradient out of the masked-off branch (0 * inf = nan otherwise).
    exact_neg = torch.arccos(cos.clamp(-1.0 + _EPS, 0.0))
    return torch.where(cos > 0, math.pi / 2 - series, exact_neg)


def theta_exact(cos: torch.Tensor) -> torch.Tensor:
    return torch.arccos(cos.clamp(-1.0 + _EPS, 1.0 - _EPS))


class MarginHead(nn.Module):
    """Maps embeddings to class logits with the chosen loss' margin; forward returns the loss."""

    def __init__(self, embedding_size: int, num_classes: int, loss: str = "arcface_w", s: float = 64.0,
                 m: float = 0.5, terms: int = DEFAULT_TERMS) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        if loss == "arcface_w":
            arcsin_coefficients(terms)  # validates terms
        self.loss, self.s, self.m, self.terms = loss, float(s), float(m), int(terms)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if loss == "softmax" else None

    def logits(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.loss == "softmax":
            return F.linear(emb, self.weight, self.bias)
        cos = F.linear(F.normalize(emb), F.normalize(self.weight))
        if labels is None:
            return self.s * cos
        cos_y = cos.gather(1, labels[:, None])
        if self.loss == "arcface_w":
            # x <= 0: cos(arccos(x) + m) loses its margin as theta nears pi - m (cos(theta + m) flattens at -1),
            # and training was measured to collapse there (every embedding anti-aligned with every class
            # centre: loss fell while accuracy went to chance). An additive cosine margin x - sin(m) meets the
            # arc margin at x = 0 and costs the same everywhere below it.
            arc = torch.cos(theta_w(cos_y, self.terms) + self.m)
            phi = torch.where(cos_y > 0, arc, cos_y - math.sin(self.m))
        else:
            theta = theta_exact(cos_y)
            # Past theta + m > pi, cos(theta + m) would rise again; insightface's linear fallback there.
            phi = torch.where(theta <= math.pi - self.m, torch.cos(theta + self.m), cos_y - self.m * math.sin(self.m))
        return self.s * cos.scatter(1, labels[:, None], phi)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, logits); logits carry the margin, so their argmax is a conservative accuracy."""
        logits = self.logits(emb, labels)
        return F.cross_entropy(logits, labels), logits

    def describe(self) -> str:
        if self.loss == "softmax":
            return "softmax (linear classifier + cross-entropy)"
        base = f"s={self.s:g}, m={self.m:g}"
        return f"ArcFace-w (N={self.terms} arcsin terms, {base})" if self.loss == "arcface_w" else f"ArcFace ({base})"
