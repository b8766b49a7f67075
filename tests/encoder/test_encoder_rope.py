"""3D RoPE: V-JEPA 2's block layout, the repeat (not repeat_interleave) quirk, identity at 0."""

import math

import pytest
import torch

from hopecli.encoder.rope import grid_positions, rope_3d, rope_block_dim


def test_grid_positions_order_t_h_w():
    pos = grid_positions(2, 2, 3)
    assert pos.dtype == torch.long and pos.shape == (12, 3)
    assert pos[:4].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert pos[6].tolist() == [1, 0, 0] and pos[-1].tolist() == [1, 1, 2]


@pytest.mark.parametrize("head_dim, block", [(64, 20), (80, 26), (14, 4), (12, 4), (5, 0)])
def test_block_dim(head_dim, block):
    assert rope_block_dim(head_dim) == block


def test_repeat_quirk_by_hand():
    """head_dim 14: blocks of 4 dims (angles p * [1, 0.01]) per axis, 2 dims unrotated.

    With repeat the angles per dim are [f0, f1, f0, f1], so a pair (x0, x1) turns x0 by f0
    and x1 by f1; repeat_interleave ([f0, f0, f1, f1]) would turn both by f0.
    """
    x = torch.arange(1.0, 15.0, dtype=torch.float64)  # 1 .. 14
    pos = torch.tensor([[3, 0, 2]])
    out = rope_3d(x[None], pos)[0]

    def block(x0, x1, x2, x3, p):
        f0, f1 = p * 1.0, p * 0.01  # omega_i = 10000^(-i / 2)
        return [x0 * math.cos(f0) - x1 * math.sin(f0),
                x1 * math.cos(f1) + x0 * math.sin(f1),
                x2 * math.cos(f0) - x3 * math.sin(f0),
                x3 * math.cos(f1) + x2 * math.sin(f1)]

    expected = block(1, 2, 3, 4, 3) + [5, 6, 7, 8] + block(9, 10, 11, 12, 2) + [13, 14]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_position_zero_is_identity_per_axis():
    x = torch.randn(2, 3, 4, 64)  # [B, H, N, head_dim]
    assert torch.equal(rope_3d(x, torch.zeros(4, 3, dtype=torch.long)), x)
    pos = torch.tensor([[5, 0, 0]] * 4)  # an action token: rotated on time only
    out = rope_3d(x, pos)
    assert torch.equal(out[..., 20:], x[..., 20:])
    assert not torch.allclose(out[..., :20], x[..., :20])


def test_each_axis_rotates_its_own_block():
    x = torch.randn(1, 3, 64)
    for axis in range(3):
        pos = torch.zeros(3, 3, dtype=torch.long)
        pos[:, axis] = torch.tensor([1, 2, 3])
        changed = (rope_3d(x, pos) != x).any(dim=(0, 1))  # [64]
        assert changed[axis * 20:(axis + 1) * 20].all() and changed.sum() == 20


def test_keeps_dtype_and_rejects_bad_positions():
    x = torch.randn(2, 6, 64, dtype=torch.bfloat16)
    assert rope_3d(x, grid_positions(1, 2, 3)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"pos must be \[N, 3\] with N = 6"):
        rope_3d(x, grid_positions(1, 2, 2))
