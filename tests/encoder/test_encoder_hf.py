"""Our encoder reproduces transformers.VJEPA2Model on the same weights (HF folder loader)."""

import pytest
import torch

from hopecli.encoder import load_encoder, size_name

transformers = pytest.importorskip("transformers")

CROP, FRAMES = 64, 4


def _hf_model(tmp_path, **shard):
    # head_dim 64: RoPE blocks of 20 dims per axis and 4 unrotated dims
    config = transformers.VJEPA2Config(
        crop_size=CROP, frames_per_clip=FRAMES, hidden_size=128, num_hidden_layers=2,
        num_attention_heads=2, mlp_ratio=3.0, pred_hidden_size=32, pred_num_hidden_layers=1,
        pred_num_attention_heads=2, pred_num_mask_tokens=2, num_pooler_layers=1,
    )
    torch.manual_seed(0)
    model = transformers.VJEPA2Model(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, sharp position-dependent attention
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
            if ".attention.query." in name or ".attention.key." in name:
                param.mul_(8.0)
    model.save_pretrained(tmp_path, **shard)
    model.set_attn_implementation("eager")  # a reference independent of our SDPA path
    return model


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("shard", [{}, {"max_shard_size": "200KB"}], ids=["single", "sharded"])
def test_matches_transformers_vjepa2(tmp_path, shard):
    hf = _hf_model(tmp_path, **shard)
    enc = load_encoder(tmp_path)
    video = torch.randn(2, 3, FRAMES, CROP, CROP)  # [B, C, F, H, W]
    with torch.no_grad():
        ref = hf(pixel_values_videos=video.transpose(1, 2), skip_predictor=True).last_hidden_state
        ours = enc.model(video)
    assert ours.shape == ref.shape == (2, FRAMES // 2 * (CROP // 16) ** 2, 128)
    assert _rel_err(ours, ref) < 1e-4
    assert enc.config.num_heads == 2 and enc.config.mlp_hidden_dim == 384
    assert enc.info["random_features"] is False and len(enc.info["checksum"]) == 64


def test_longer_clip_than_config(tmp_path):
    """Positions follow the actual frame count, as in both references."""
    hf = _hf_model(tmp_path)
    enc = load_encoder(tmp_path)
    video = torch.randn(1, 3, 3 * FRAMES, CROP, CROP)
    with torch.no_grad():
        ref = hf(pixel_values_videos=video.transpose(1, 2), skip_predictor=True).last_hidden_state
        ours = enc.model(video)
    assert _rel_err(ours, ref) < 1e-4


def test_size_inferred_from_hf_config(tmp_path):
    _hf_model(tmp_path)
    enc = load_encoder(tmp_path)
    assert size_name(enc.config) == "custom"
    assert (enc.config.img_size, enc.config.num_frames) == (CROP, FRAMES)
