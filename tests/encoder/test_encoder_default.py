"""The embedded default encoder: deterministic everywhere, labelled as random features."""

import hashlib

import pytest
import torch

from hopecli.encoder import VisionTransformer, encoder_config, load_encoder

# sha256 over (name, float32 bytes) of every weight; it changes only if the init changes,
# and then every feature store made with the default encoder becomes incomparable.
DEFAULT_WEIGHTS_SHA256 = "dc35c925c64ee418b4d20082f69978e4bd9a89d39e5348d16488a7676ae24fd5"


def _fingerprint(model):
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def test_default_is_deterministic_and_labelled():
    torch.manual_seed(1)
    first = load_encoder()
    torch.manual_seed(2)  # the global RNG must not matter
    second = load_encoder()
    video = torch.randn(1, 3, 4, 32, 32)
    assert torch.equal(first.model(video), second.model(video))
    assert _fingerprint(first.model) == DEFAULT_WEIGHTS_SHA256
    assert first.info["name"] == "vjepa2-default-random"
    assert first.info["random_features"] is True
    assert first.info["checksum"] == "embedded-default"
    assert (first.config.embed_dim, first.config.img_size, first.config.num_frames) == (192, 128, 16)


@torch.no_grad()
def test_output_shape_follows_input_grid():
    enc = load_encoder()
    out = enc.model(torch.randn(2, 3, 6, 32, 64))
    assert out.shape == (2, 3 * 2 * 4, 192)
    with pytest.raises(ValueError, match=r"does not tile"):
        enc.model(torch.randn(1, 3, 5, 32, 32))


def test_random_other_size_is_labelled():
    enc = load_encoder(config=encoder_config("default", depth=1))
    assert enc.info["name"] == "vjepa2-custom-random" and enc.info["random_features"] is True
    assert len(enc.model.blocks) == 1


def test_vit_large_parameter_count():
    """24 blocks of 12.6M weights plus the tubelet embedding: the 300M of V-JEPA 2 ViT-L."""
    with torch.device("meta"):
        model = VisionTransformer(encoder_config("vit_large"))
    assert sum(p.numel() for p in model.parameters()) == 303_885_312
