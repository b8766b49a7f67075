"""Checkpoint loaders: official .pt layout, our own safetensors, and loud failures."""

import hashlib

import pytest
import torch

from hopecli.encoder import VisionTransformer, encoder_config, file_sha256, load_encoder, save_encoder
from hopecli.encoder.vit import init_deterministic
from hopecli.errors import CheckpointError

CFG = encoder_config("default")  # 192 wide, 4 deep, 3 heads: inferable from the weights
VIDEO = torch.randn(1, 3, 4, 32, 48, generator=torch.Generator().manual_seed(0))


def _model(seed):
    return init_deterministic(VisionTransformer(CFG), seed).eval()


def _official(model):
    """A state dict as facebookresearch/vjepa2 saves it: prefixed, with a pos_embed."""
    state = {f"module.backbone.{k}": v.clone() for k, v in model.state_dict().items()}
    state["module.backbone.pos_embed"] = torch.zeros(1, 512, CFG.embed_dim)
    return state


def _checkpoint(path, encoder_state, target_state):
    payload = {"encoder": encoder_state, "target_encoder": target_state,
               "predictor": {"module.backbone.mask_tokens.0": torch.zeros(1, 1, 8)},
               "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 3}
    torch.save(payload, path)
    return path


@torch.no_grad()
def test_official_checkpoint_encoder_and_target(tmp_path):
    online, target = _model(1), _model(2)
    path = _checkpoint(tmp_path / "vitx.pt", _official(online), _official(target))
    for which, reference in (("encoder", online), ("target_encoder", target)):
        enc = load_encoder(path, which=which)
        assert torch.equal(enc.model(VIDEO), reference(VIDEO))
        assert enc.config == CFG
        assert enc.info["name"] == f"vjepa2-default-{which}"
        assert enc.info["checksum"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert enc.info["random_features"] is False
        assert not any(p.requires_grad for p in enc.model.parameters())
    assert not torch.equal(online(VIDEO), target(VIDEO))
    default = load_encoder(path)  # target_encoder unless told otherwise
    assert torch.equal(default.model(VIDEO), target(VIDEO))


@torch.no_grad()
def test_own_safetensors_round_trip(tmp_path):
    model = init_deterministic(VisionTransformer(encoder_config("default", img_size=64)), 5)
    path = save_encoder(model, tmp_path / "enc.safetensors")
    enc = load_encoder(path)
    assert enc.config == model.config  # read from the file's metadata, img_size included
    assert torch.equal(enc.model(VIDEO), model(VIDEO))
    assert enc.info["checksum"] == file_sha256([path])


def test_missing_key_names_file_and_key(tmp_path):
    state = _official(_model(1))
    del state["module.backbone.blocks.3.mlp.fc2.bias"]
    path = _checkpoint(tmp_path / "broken.pt", state, state)
    with pytest.raises(CheckpointError) as err:
        load_encoder(path)
    assert str(err.value) == (
        f"{path}: does not fit the default encoder config: 1 missing keys (blocks.3.mlp.fc2.bias)"
    )


def test_unexpected_key_names_file_and_key(tmp_path):
    state = _official(_model(1))
    state["module.backbone.blocks.0.attn.q_norm.weight"] = torch.ones(64)
    path = _checkpoint(tmp_path / "extra.pt", state, state)
    with pytest.raises(CheckpointError, match=r"extra\.pt: .*unexpected keys \(blocks\.0\.attn\.q_norm"):
        load_encoder(path, which="encoder")


def test_wrong_size_is_refused(tmp_path):
    path = save_encoder(_model(1), tmp_path / "small.safetensors")
    with pytest.raises(CheckpointError, match=r"small\.safetensors: .*missing keys \(blocks\.10\."):
        load_encoder(path, config="vit_large")
    wide_mlp = encoder_config("default", mlp_ratio=2.0)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight has shape \(768, 192\)"):
        load_encoder(path, config=wide_mlp)


def test_missing_half_of_checkpoint(tmp_path):
    path = tmp_path / "online_only.pt"
    torch.save({"encoder": _official(_model(1)), "opt": {}}, path)
    with pytest.raises(CheckpointError, match=r"online_only\.pt: has no 'target_encoder' weights \(it holds: encoder, opt\)"):
        load_encoder(path)


class _Payload:
    """Anything that needs code to unpickle."""


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"target_encoder": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"unsafe\.pt: cannot be read safely"):
        load_encoder(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such file"):
        load_encoder(tmp_path / "nope.pt")
