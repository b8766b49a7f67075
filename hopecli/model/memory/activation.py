"""The memories' nonlinearity, GELU (exact, erf form), and its derivative.

The inner gradients are written out by hand, so the backward of the MLP memory needs
gelu'(p) as a differentiable expression: the outer loss differentiates through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(p: Tensor) -> Tensor:
    """gelu(p) = p * Phi(p)."""
    return F.gelu(p)


def gelu_grad_times(g: Tensor, p: Tensor) -> Tensor:
    """g * gelu'(p) in one pass: torch's own GELU backward, which autograd differentiates
    again (gelu'' for the outer gradient), instead of the eight elementwise passes of
    g * gelu_grad(p) and their backwards."""
    return torch.ops.aten.gelu_backward(g, p)


def gelu_grad(p: Tensor) -> Tensor:
    """gelu'(p) = Phi(p) + p * phi(p), Phi / phi the standard normal cdf / pdf."""
    return 0.5 * (1.0 + torch.erf(p * _INV_SQRT2)) + p * torch.exp(-0.5 * p * p) * _INV_SQRT_2PI
