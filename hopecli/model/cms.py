"""Continuum Memory System (HOPE phase B): a chain of MLPs that learn at different rates.

Level l is a pre-norm residual MLP x <- x + MLP_l(LN_l(x)) with hidden width
hidden_mults[l] * D (fast -> medium -> slow, e.g. 2.0 / 2.5 / 3.0). What makes the chain
a memory system is when each level's parameters change: level l takes an optimizer step
every periods[l] steps (e.g. 1 / 4 / 16) with the gradients accumulated in between,
during training and, online, at test time. The module itself is a plain function of its
parameters; it exposes its levels' parameters with their periods so that the optimizer
(train / adapt) can schedule them, counting optimizer steps, not forward calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from hopecli.model.init import init_layers_


class CMSLevel(nn.Module):
    """One level: LN, Linear(D -> hD), GELU, Linear(hD -> D)."""

    def __init__(self, dim: int, hidden_mult: float) -> None:
        super().__init__()
        hidden = int(round(dim * hidden_mult))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class ContinuumMemory(nn.Module):
    """Chain of residual MLP levels, each with its own update period (Eq. 96 of HOPE)."""

    def __init__(
        self, dim: int, hidden_mults: Sequence[float], periods: Sequence[int], drop_path: float = 0.0
    ) -> None:
        super().__init__()
        if len(hidden_mults) != len(periods):
            raise ValueError(
                f"need one period per CMS level, got hidden_mults {tuple(hidden_mults)!r} "
                f"and periods {tuple(periods)!r}"
            )
        self.periods = tuple(int(p) for p in periods)
        self.levels = nn.ModuleList(CMSLevel(dim, m) for m in hidden_mults)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        init_layers_(self)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """x [B, L, D] -> (x after every level [B, L, D], diagnostics).

        Diagnostics: per level, the RMS of its residual branch relative to the RMS of its
        input ("cms/level{l}/update_ratio"), to see which levels carry signal.
        """
        diag: dict[str, Tensor] = {}
        for i, level in enumerate(self.levels):
            branch = level(x)
            with torch.no_grad():  # same element count, so the norm ratio is the RMS ratio
                ratio = torch.linalg.vector_norm(branch) / torch.linalg.vector_norm(x).clamp_min(1e-12)
            diag[f"cms/level{i}/update_ratio"] = ratio.float()
            x = x + self.drop_path(branch)
        return x, diag

    def level_parameters(self) -> list[tuple[int, list[nn.Parameter]]]:
        """(period, parameters) of each level, fast level first."""
        return [(p, list(level.parameters())) for p, level in zip(self.periods, self.levels)]
