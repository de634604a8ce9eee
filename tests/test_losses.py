import math

import numpy as np
import pytest
import torch

from compress.train.losses import MarginHead, arcsin_coefficients, theta_exact, theta_w


def test_series_coefficients():
    assert arcsin_coefficients(5) == pytest.approx([1, 1 / 6, 3 / 40, 15 / 336, 105 / 3456])
    # The coefficients sum to arcsin(1) = pi/2 in the limit.
    assert sum(arcsin_coefficients(4000)) == pytest.approx(math.pi / 2, abs=0.02)


def test_series_matches_arcsin():
    x = torch.linspace(0.01, 0.9, 50, dtype=torch.float64)
    for n in (1, 2, 3):
        series = math.pi / 2 - theta_w(x, n)
        assert torch.all(series <= torch.asin(x) + 1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_theta_w_at_least_theta_on_unit_interval(n):
    x = torch.linspace(1e-4, 1.0, 1001, dtype=torch.float64)
    assert torch.all(theta_w(x, n) >= torch.arccos(x) - 1e-12)
    # strictly larger (the margin is stronger; near 0 the gap is O(x^(2N+1)), below float resolution),
    # and largest at x = 1
    extra = theta_w(x, n) - torch.arccos(x)
    assert extra[-1] == pytest.approx(math.pi / 2 - sum(arcsin_coefficients(n)))
    assert torch.all(extra[x > 0.2] > 0)
    assert torch.all(extra[1:] >= extra[:-1] - 1e-12)


def test_exact_arccos_recovered_as_terms_grow():
    x = torch.linspace(0.0, 0.95, 200, dtype=torch.float64)
    errs = [float((theta_w(x, n) - torch.arccos(x)).abs().max()) for n in (1, 2, 4, 8, 16, 32, 64)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-3


def test_non_positive_cos_falls_back_to_exact_and_is_continuous():
    x = torch.linspace(-1.0, 0.0, 101, dtype=torch.float64)
    assert torch.allclose(theta_w(x, 2), theta_exact(x), atol=1e-6)
    eps = torch.tensor([-1e-6, 1e-6], dtype=torch.float64)
    a, b = theta_w(eps, 2)
    assert abs(float(a - b)) < 1e-5


@pytest.mark.parametrize("loss", ["arcface_w", "arcface"])
def test_gradients_finite_as_cos_approaches_one(loss):
    head = MarginHead(4, 3, loss=loss, s=64, m=0.5, terms=2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 4))
    emb = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [-1.0, 0, 0, 0]], requires_grad=True)  # cos = 1 and -1
    loss_v, _ = head(emb, torch.tensor([0, 1, 0]))
    loss_v.backward()
    assert torch.isfinite(loss_v)
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_target_logit_uses_margin_and_others_do_not():
    torch.manual_seed(0)
    head = MarginHead(8, 5, loss="arcface_w", s=10, m=0.3, terms=1)
    emb = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 3])
    logits = head.logits(emb, y)
    cos = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(head.weight).T
    mask = torch.nn.functional.one_hot(y, 5).bool()
    assert torch.allclose(logits[~mask], 10 * cos[~mask])
    cy = cos[mask]
    expected = torch.where(cy > 0, torch.cos(math.pi / 2 - cy + 0.3), cy - math.sin(0.3))
    assert torch.allclose(logits[mask], 10 * expected, atol=1e-5)


def test_arcface_w_margin_does_not_fade_for_negative_cos():
    """cos(arccos(x) + m) costs only ~0.12 below x = cos(pi - m); ArcFace-w keeps a margin >= sin(m) there."""
    head = MarginHead(2, 2, loss="arcface_w", s=1.0, m=0.5, terms=2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    xs = torch.linspace(-0.99, 0.99, 199)
    emb = torch.stack([xs, torch.sqrt(1 - xs**2)], 1)
    phi = head.logits(emb, torch.zeros(199, dtype=torch.long))[:, 0].detach()
    gap = xs - phi
    assert torch.all(gap[xs <= 0] >= math.sin(0.5) - 1e-6)
    assert torch.all(phi[1:] >= phi[:-1] - 1e-6)  # monotone in cos
    assert abs(float(phi[99]) + math.sin(0.5)) < 0.02  # continuous at x = 0


def test_margin_order_arcface_w_below_arcface_below_plain():
    cos = torch.tensor([[0.8, 0.1]])
    y = torch.tensor([0])
    vals = {}
    for loss in ("arcface_w", "arcface"):
        h = MarginHead(2, 2, loss=loss, s=1, m=0.5, terms=2)
        with torch.no_grad():
            h.weight.copy_(torch.eye(2))
        emb = torch.tensor([[0.8, math.sqrt(1 - 0.64)]])
        vals[loss] = float(h.logits(emb, y)[0, 0].detach())
    assert vals["arcface_w"] < vals["arcface"] < 0.8


def test_softmax_and_bad_args():
    h = MarginHead(4, 3, loss="softmax")
    loss, logits = h(torch.randn(2, 4), torch.tensor([0, 2]))
    assert logits.shape == (2, 3) and torch.isfinite(loss)
    with pytest.raises(ValueError):
        MarginHead(4, 3, loss="cosface")
    with pytest.raises(ValueError):
        MarginHead(4, 3, loss="arcface_w", terms=0)
