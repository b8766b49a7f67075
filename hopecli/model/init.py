"""Weight initialisation of the predictor's own layers, as V-JEPA 2's predictors do it.

Linear and embedding weights ~ truncated normal (std 0.02), biases 0, LayerNorm 1 / 0.
The last linear of every residual branch of block i is then scaled by 1 / sqrt(2 (i+1))
so that deep stacks start with small residual updates. The Titan memories initialise
their own (meta-learned) states and are left alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_STD = 0.02


@torch.no_grad()
def init_layers_(*modules: nn.Module) -> None:
    """Initialise every Linear, Embedding and LayerNorm inside the given modules."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=INIT_STD)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


@torch.no_grad()
def rescale_residual_(layer: nn.Linear, block_index: int) -> None:
    """Scale a residual branch's output layer by 1 / sqrt(2 (block_index + 1))."""
    layer.weight.div_(math.sqrt(2.0 * (block_index + 1)))
