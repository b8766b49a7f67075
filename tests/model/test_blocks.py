"""Pieces of the blocks: the block-causal mask, attention against a reference, spatial
mixing, CMS levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hopecli.encoder.rope import rope_3d
from hopecli.model.attention import BlockCausalAttention, RopeTables, apply_rope, block_causal_mask, token_positions
from hopecli.model.blocks import HopeBlock, SequenceContext
from hopecli.model.cms import ContinuumMemory
from hopecli.model.memory import TitanConfig
from hopecli.model.mixing import SpatialMixing

N, D = 3, 16  # tokens per frame, width


def test_block_causal_mask_lets_a_frame_see_itself_and_the_past() -> None:
    mask = block_causal_mask(3, 2)
    frame = torch.arange(3).repeat_interleave(2)
    torch.testing.assert_close(mask, frame[None, :] <= frame[:, None])
    with_past = block_causal_mask(2, 2, past_frames=1)  # queries are frames 1, 2 of 0..2
    torch.testing.assert_close(with_past, mask[2:])
    assert block_causal_mask(1, 2, past_frames=5) is None  # one new frame sees everything


def test_attention_matches_a_masked_softmax_reference() -> None:
    torch.manual_seed(0)
    attn = BlockCausalAttention(D, num_heads=2)
    x = torch.randn(2, 3 * N, D)
    pos = torch.tensor([[t, r, c] for t in range(3) for r, c in [(0, 0), (0, 1), (1, 0)]])
    mask = block_causal_mask(3, N)
    y, cache = attn(x, pos, mask)

    q, k, v = attn.qkv(x).view(2, 3 * N, 3, 2, D // 2).permute(2, 0, 3, 1, 4)
    q, k = rope_3d(q, pos), rope_3d(k, pos)
    scores = (q @ k.transpose(-1, -2)) / (D // 2) ** 0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(2, 3 * N, D))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache.k, k)


@pytest.mark.parametrize("head_dim", [16, 64, 6, 15])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_shared_rope_tables_rotate_exactly_as_the_encoder(head_dim: int, dtype) -> None:
    """The tables a forward shares between its attention layers give rope_3d bit for bit
    (its repeat-tiled angles, the unrotated rest of the head; an odd head takes rope_3d)."""
    torch.manual_seed(0)
    pos = token_positions(first_frame=3, frames=2, grid=(4, 5))
    x = torch.randn(2, 3, pos.shape[0], head_dim).to(dtype)
    tables = RopeTables(pos)
    assert torch.equal(apply_rope(x, tables), rope_3d(x, pos))
    assert torch.equal(apply_rope(x[:1], tables), rope_3d(x[:1], pos))  # the same tables again


def test_spatial_mixing_is_zero_at_init_and_never_mixes_frames() -> None:
    torch.manual_seed(0)
    mix = SpatialMixing(N, D)
    x = torch.randn(2, 4 * N, D)
    torch.testing.assert_close(mix(x), x, rtol=0, atol=0)
    torch.nn.init.normal_(mix.fc2.weight)
    y = mix(x)
    assert (y - x).abs().max() > 1e-3  # now it mixes ...
    x2 = x.clone()
    x2[:, N + 1] += 5.0  # change one token of frame 1
    changed = (mix(x2) - y).abs().amax(-1).view(2, 4, N).amax((0, 2))
    assert changed[1] > 1e-3 and changed[[0, 2, 3]].eq(0).all()  # ... but only inside the frame


def test_hope_block_with_mixing_equals_block_without_at_init() -> None:
    memory = TitanConfig(dim=D, heads=2, hidden_mult=2.0)
    torch.manual_seed(0)
    with_mix = HopeBlock(D, memory, (1.0,), (1,), N, True, 0.0, 0)
    torch.manual_seed(0)
    without = HopeBlock(D, memory, (1.0,), (1,), N, False, 0.0, 0)
    without.load_state_dict(with_mix.state_dict(), strict=False)
    ctx = SequenceContext(N, torch.zeros(4 * N, 3, dtype=torch.long), None, N, True)
    x = torch.randn(2, 4 * N, D)
    torch.testing.assert_close(with_mix(x, ctx)[0], without(x, ctx)[0], rtol=0, atol=0)


def test_cms_is_a_chain_of_residual_levels_grouped_with_periods() -> None:
    torch.manual_seed(0)
    cms = ContinuumMemory(D, (2.0, 2.5, 3.0), (1, 4, 16))
    x = torch.randn(2, 5, D)
    y, diag = cms(x)
    ref = x
    for level in cms.levels:
        ref = ref + level.fc2(F.gelu(level.fc1(F.layer_norm(ref, (D,), level.norm.weight, level.norm.bias, 1e-6))))
    torch.testing.assert_close(y, ref)
    assert [level.fc1.out_features for level in cms.levels] == [32, 40, 48]
    assert [p for p, _ in cms.level_parameters()] == [1, 4, 16]
    assert sorted(diag) == [f"cms/level{i}/update_ratio" for i in range(3)]


def test_token_positions_put_action_and_state_on_the_time_axis_only() -> None:
    pos = token_positions(first_frame=5, frames=2, grid=(2, 3))
    assert pos.shape == (2 * 8, 3)
    frame0 = pos[:8].tolist()
    assert frame0[:2] == [[5, 0, 0], [5, 0, 0]]  # action, state
    assert frame0[2:] == [[5, r, c] for r in range(2) for c in range(3)]
    assert pos[8:, 0].eq(6).all()
