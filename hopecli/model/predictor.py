"""The action-conditioned predictor: features, actions and states in, next-step features out.

Per step t the patch features z_t [P, D_in], action a_t and state s_t are projected to
width D and laid out as [action_t, state_t, patches] (N = P + 2 tokens); the frames
follow each other in time. Every token gets the learned `frame_pos_embed` of its frame
(counted from the start of the stream, so a state passed back in continues the count);
in jump prediction every token also gets `target_pos_embed` of the step to predict,
which is the only way the model can tell which future step is asked for (seed 002,
fix 1). The blocks follow the pattern (T / H / L), then the action and state tokens are
dropped, a LayerNorm and a linear map bring the patches back to D_in.

Teacher forcing: pred[:, t] predicts step t + 1 from steps <= t (block-causal).
Jump prediction (target_step given): pred[:, t] predicts step target_step from steps <= t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from hopecli.model.attention import KVCache, RopeTables, block_causal_mask, token_positions
from hopecli.model.blocks import HopeBlock, SequenceContext, build_block
from hopecli.model.config import COND_TOKENS, PredictorConfig
from hopecli.model.init import init_layers_
from hopecli.model.memory import TitanState


@dataclass(frozen=True)
class PredictorState:
    """Everything a stream carries from one call to the next.

    blocks[i] is block i's Titan state (H, L) or KV cache (T); frames counts the steps
    already seen (the frame offset of the next call).
    """

    blocks: tuple[TitanState | KVCache, ...]
    frames: int

    def detach(self) -> PredictorState:
        """The same state cut from the autograd graph (truncated backpropagation)."""
        return PredictorState(tuple(s.detach() for s in self.blocks), self.frames)


@dataclass
class PredictorOutput:
    pred: Tensor  # [B, T, P, D_in]
    state: PredictorState | None  # None when called with keep_state=False
    diagnostics: dict[str, Tensor]  # scalars, "block{i}/titan/{box}/..." etc.


@dataclass
class ParamGroup:
    """Parameters the optimizer treats alike; CMS levels step every `period` steps."""

    name: str
    kind: Literal["titan", "cms", "other"]
    period: int
    params: list[nn.Parameter]


class Predictor(nn.Module):
    """Next-step (or target-step) feature predictor with blocks chosen by the pattern."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        D = config.dim
        self.predictor_embed = nn.Linear(config.input_dim, D)
        self.action_encoder = nn.Linear(config.action_dim, D)
        self.state_encoder = nn.Linear(config.state_dim, D)
        self.frame_pos_embed = nn.Embedding(config.max_frames, D)
        self.target_pos_embed = nn.Embedding(config.max_frames, D)
        depth = len(config.pattern)
        rates = [config.drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            build_block(letter, config, i, rate) for i, (letter, rate) in enumerate(zip(config.pattern, rates))
        )
        self.predictor_norm = nn.LayerNorm(D, eps=1e-6)
        self.predictor_proj = nn.Linear(D, config.input_dim)
        init_layers_(
            self.predictor_embed,
            self.action_encoder,
            self.state_encoder,
            self.frame_pos_embed,
            self.target_pos_embed,
            self.predictor_norm,
            self.predictor_proj,
        )

    def forward(
        self,
        features: Tensor,
        actions: Tensor,
        states: Tensor,
        *,
        target_step: Tensor | None = None,
        state: PredictorState | None = None,
        update_memory: bool = True,
        keep_state: bool = True,
    ) -> PredictorOutput:
        """features [B, T, P, D_in], actions [B, T, A], states [B, T, S] -> PredictorOutput.

        target_step: LongTensor [B] of absolute steps for jump prediction, or None for
        teacher forcing. state: the state a previous call returned, to continue a stream.
        update_memory: False freezes the Titan memories (their state passes through).
        keep_state: False when nothing continues from this call (the last step of a
        planning rollout): the memories skip the writes only a later call would read, the
        same predictions come back, and the output's state is None.
        """
        cfg = self.config
        B, T = self._check_inputs(features, actions, states, target_step, state)
        offset = state.frames if state is not None else 0
        N = cfg.tokens_per_frame
        dtype = self.predictor_embed.weight.dtype
        device = features.device

        z = self.predictor_embed(features.to(dtype))  # [B, T, P, D]
        a = self.action_encoder(actions.to(dtype)).unsqueeze(2)  # [B, T, 1, D]
        s = self.state_encoder(states.to(dtype)).unsqueeze(2)  # [B, T, 1, D]
        x = torch.cat([a, s, z], dim=2)  # [B, T, N, D]
        frames = torch.arange(offset, offset + T, device=device)  # [T]
        x = x + self.frame_pos_embed(frames)[None, :, None]
        if target_step is not None:
            x = x + self.target_pos_embed(target_step.to(device))[:, None, None]
        x = x.flatten(1, 2)  # [B, T*N, D]

        has_attention = "T" in cfg.pattern
        positions = token_positions(offset, T, cfg.grid, COND_TOKENS, device)  # [T*N, 3]
        ctx = SequenceContext(
            tokens_per_frame=N,
            positions=positions,
            attn_mask=block_causal_mask(T, N, offset, device) if has_attention else None,
            chunk_size=cfg.memory_chunk_size,
            update_memory=update_memory,
            keep_state=keep_state,
            rope=RopeTables(positions) if has_attention else None,
        )
        new_states = []
        diagnostics: dict[str, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, block_state, diag = block(x, ctx, state.blocks[i] if state is not None else None)
            new_states.append(block_state)
            diagnostics.update({f"block{i}/{k}": v for k, v in diag.items()})

        x = x.reshape(B, T, N, cfg.dim)[:, :, COND_TOKENS:]  # [B, T, P, D]
        pred = self.predictor_proj(self.predictor_norm(x))  # [B, T, P, D_in]
        if cfg.predict_change:  # the head gives the change from the step it reads
            pred = pred + features.to(pred.dtype)
        new = PredictorState(tuple(new_states), offset + T) if keep_state else None
        return PredictorOutput(pred, new, diagnostics)

    def _check_inputs(
        self,
        features: Tensor,
        actions: Tensor,
        states: Tensor,
        target_step: Tensor | None,
        state: PredictorState | None,
    ) -> tuple[int, int]:
        cfg = self.config
        if features.dim() != 4 or features.shape[2:] != (cfg.patches_per_step, cfg.input_dim):
            raise ValueError(
                f"features must be [B, T, {cfg.patches_per_step}, {cfg.input_dim}], "
                f"got {tuple(features.shape)!r}"
            )
        B, T = features.shape[:2]
        if tuple(actions.shape) != (B, T, cfg.action_dim):
            raise ValueError(f"actions must be [{B}, {T}, {cfg.action_dim}], got {tuple(actions.shape)!r}")
        if tuple(states.shape) != (B, T, cfg.state_dim):
            raise ValueError(f"states must be [{B}, {T}, {cfg.state_dim}], got {tuple(states.shape)!r}")
        offset = state.frames if state is not None else 0
        if state is not None and len(state.blocks) != len(self.blocks):
            raise ValueError(
                f"state holds {len(state.blocks)} block states, the model has {len(self.blocks)} blocks"
            )
        if offset + T > cfg.max_frames:
            raise ValueError(
                f"{offset} frames seen plus {T} new exceed max_frames {cfg.max_frames}; "
                f"build the predictor with a larger max_frames"
            )
        if target_step is not None:
            if target_step.shape != (B,):
                raise ValueError(f"target_step must be [{B}], got {tuple(target_step.shape)!r}")
            lo, hi = int(target_step.min()), int(target_step.max())
            if lo < 0 or hi >= cfg.max_frames:
                raise ValueError(f"target_step values must lie in [0, {cfg.max_frames}), got {lo}..{hi}")
        return B, T

    def parameter_groups(self) -> list[ParamGroup]:
        """titan (every memory parameter, initial states included), one group per CMS
        level with its period, and other; every parameter in exactly one group."""
        titan: list[nn.Parameter] = []
        levels: dict[int, tuple[int, list[nn.Parameter]]] = {}
        for block in self.blocks:
            if isinstance(block, HopeBlock):
                titan.extend(block.memory.parameters())
                for l, (period, params) in enumerate(block.cms.level_parameters()):
                    levels.setdefault(l, (period, []))[1].extend(params)
        grouped = {id(p) for p in titan} | {id(p) for _, ps in levels.values() for p in ps}
        other = [p for p in self.parameters() if id(p) not in grouped]
        groups = [ParamGroup("titan", "titan", 1, titan)] if titan else []
        groups += [ParamGroup(f"cms{l}", "cms", period, ps) for l, (period, ps) in sorted(levels.items())]
        groups.append(ParamGroup("other", "other", 1, other))
        return groups

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
