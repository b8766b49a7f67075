"""Per-memory diagnostics of one Titan forward: rates, inner loss, update and state size.

Both implementations feed the same running sums, so their diagnostics agree. Every value
is a detached 0-dim float32 tensor keyed "titan/{box}/{name}":
  eta_mean, eta_std, alpha_mean, alpha_std  over batch, tokens and heads;
  inner_loss   1/2 ||M_box(k_t) - v_hat_box,t||^2 per head at the chunk-start weights W_c
               (where the write is linearised), mean over batch, tokens, heads;
  update_norm  ||M_c+1 - M_c|| (Frobenius over all layers and heads) per sample, mean
               over batch and chunks (0 when updates are off);
  state_norm   ||M|| of the returned state per sample, mean over batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _per_sample_norm(layers: tuple[Tensor, ...]) -> Tensor:
    """Frobenius norm of every memory per sample: layers [B, NB, ...] -> [B, NB]."""
    # one pass per layer, summed in float64 without a float64 copy of the weights
    return torch.sqrt(sum(torch.linalg.vector_norm(w.flatten(2), dim=-1, dtype=torch.float64).square()
                          for w in layers))


class DiagnosticsAccumulator:
    """Running sums of one forward pass (inputs are detached on the way in)."""

    def __init__(self, boxes: tuple[str, ...]) -> None:
        self.boxes = boxes
        self.sums: dict[str, Tensor | float] = {}
        self.counts: dict[str, int] = {}

    def _add(self, name: str, values: Tensor) -> None:
        """values [NB, N]: N samples of one quantity per memory."""
        values = values.detach().double()
        self.sums[name] = self.sums.get(name, 0.0) + values.sum(-1)
        self.counts[name] = self.counts.get(name, 0) + values.shape[-1]

    @torch.no_grad()
    def add_rates(self, eta: Tensor, alpha: Tensor, loss: Tensor) -> None:
        """eta, alpha, loss [NB, N] (memory first, any number of tokens x heads after)."""
        for name, values in (("eta", eta), ("alpha", alpha)):
            self._add(name, values)
            self._add(name + "_sq", values.square())
        self._add("inner_loss", loss)

    @torch.no_grad()
    def add_update(self, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> None:
        """One chunk's state change; old, new as TitanState.layers."""
        diff = tuple(n.detach() - o.detach() for o, n in zip(old, new))
        self._add("update_norm", _per_sample_norm(diff).mean(0)[:, None])

    @torch.no_grad()
    def result(self, layers: tuple[Tensor, ...]) -> dict[str, Tensor]:
        mean = {name: self.sums[name] / self.counts[name] for name in self.sums}
        stats = {
            "eta_mean": mean["eta"],
            "eta_std": (mean["eta_sq"] - mean["eta"].square()).clamp_min(0).sqrt(),
            "alpha_mean": mean["alpha"],
            "alpha_std": (mean["alpha_sq"] - mean["alpha"].square()).clamp_min(0).sqrt(),
            "inner_loss": mean["inner_loss"],
            "update_norm": mean["update_norm"],
            "state_norm": _per_sample_norm(layers).mean(0),
        }
        return {
            f"titan/{box}/{name}": values[i].float()
            for i, box in enumerate(self.boxes)
            for name, values in stats.items()
        }
