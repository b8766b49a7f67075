"""Load a frozen V-JEPA 2 encoder from any of the layouts its weights are published in.

Three layouts are read, all without executing pickled code:
- an official `.pt` checkpoint (facebookresearch/vjepa2): a dict with `encoder`,
  `target_encoder`, `predictor`, `opt`, ...; weight names carry `module.` / `backbone.`
  prefixes and an unused `pos_embed`;
- a Hugging Face `vjepa2` folder (config.json + model.safetensors, or sharded with an
  index): q, k and v are separate linears, fused here into one qkv in q, k, v order;
- our own state dict (safetensors written by `save_encoder`, or a `.pt` of tensors).
Every key must be accounted for: a missing, unexpected or mis-shaped weight is a
CheckpointError, never a half-loaded model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from hopecli.encoder.config import ENCODER_SIZES, EncoderConfig, encoder_config, size_name
from hopecli.encoder.vit import VisionTransformer, init_deterministic
from hopecli.errors import CheckpointError

WHICH = ("encoder", "target_encoder")
DEFAULT_SEED = 0
EMBEDDED_CHECKSUM = "embedded-default"
CONFIG_METADATA_KEY = "hope_encoder_config"
OFFICIAL_PREFIXES = ("module.", "backbone.")
OFFICIAL_UNUSED = ("pos_embed",)
HF_IGNORED_PREFIXES = ("predictor.", "pooler.", "classifier.")
HF_DEFAULTS = {"in_chans": 3, "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu"}
MAX_KEYS_SHOWN = 4


@dataclass(frozen=True)
class LoadedEncoder:
    """A frozen encoder (eval mode, no gradients) with the facts a feature store records."""

    model: VisionTransformer
    config: EncoderConfig
    info: dict[str, Any]  # name, config, checksum, random_features, source


def load_encoder(
    weights: str | Path | None = None,
    *,
    which: str = "target_encoder",
    config: EncoderConfig | str | None = None,
) -> LoadedEncoder:
    """Build the encoder from weights (official .pt, HF folder or own state dict).

    weights None gives a deterministically initialised encoder of the given size (the
    embedded "default" when config is None), labelled as random features. which picks
    the official checkpoint's `encoder` or `target_encoder`. config, a size name or an
    EncoderConfig, fixes the architecture; otherwise it is read from the weights.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    given = encoder_config(config) if isinstance(config, str) else config
    if weights is None:
        return _random_encoder(given or ENCODER_SIZES["default"], config)

    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    stored: EncoderConfig | None = None  # a config the weights carry with them
    label: str | None = None  # which half of an official checkpoint
    files = [path]
    if path.is_dir():
        state, stored, files = _read_hf_folder(path)
    elif path.suffix == ".safetensors":
        state = _read_safetensors(path)
        stored = _stored_config(path)
    else:
        state, label = _read_torch(path, which)

    state = _native_keys(state, path)
    cfg = given or stored or _infer_config(state, path)
    model = _build_strict(cfg, state, path)
    name = f"vjepa2-{size_name(cfg)}" + (f"-{label}" if label else "")
    info = {"name": name, "config": cfg.to_dict(), "checksum": file_sha256(files),
            "random_features": False, "source": str(path)}
    return LoadedEncoder(model=model, config=cfg, info=info)


def save_encoder(model: VisionTransformer, path: str | Path) -> Path:
    """Write model's weights in our own layout (safetensors, config in the metadata)."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())})
    return path


def file_sha256(paths: Iterable[Path], chunk_bytes: int = 1 << 20) -> str:
    """sha256 of the files' bytes in order, read in chunks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


def _random_encoder(cfg: EncoderConfig, requested: EncoderConfig | str | None) -> LoadedEncoder:
    model = init_deterministic(VisionTransformer(cfg), DEFAULT_SEED).eval().requires_grad_(False)
    label = requested if isinstance(requested, str) else size_name(cfg)
    info = {"name": f"vjepa2-{label}-random", "config": cfg.to_dict(),
            "checksum": EMBEDDED_CHECKSUM, "random_features": True, "source": "embedded"}
    return LoadedEncoder(model=model, config=cfg, info=info)


def _read_torch(path: Path, which: str) -> tuple[dict[str, Tensor], str | None]:
    """A .pt file: an official checkpoint (returns payload[which]) or a flat state dict."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for unreadable or unsafe files
        raise CheckpointError(f"{path}: cannot be read safely as a weights-only checkpoint ({exc})")
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, not a dict of weights")
    if all(isinstance(v, Tensor) for v in payload.values()):
        return _tensor_dict(payload, path), None
    if which not in payload:
        held = ", ".join(sorted(str(k) for k in payload))
        raise CheckpointError(f"{path}: has no {which!r} weights (it holds: {held})")
    return _tensor_dict(payload[which], path), which


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: cannot be read as safetensors ({exc})")


def _stored_config(path: Path) -> EncoderConfig | None:
    """The config our own files carry in their metadata, if any."""
    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(CONFIG_METADATA_KEY)
    if text is None:
        return None
    try:
        return EncoderConfig.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: has an invalid stored encoder config ({exc})")


def _read_hf_folder(path: Path) -> tuple[dict[str, Tensor], EncoderConfig, list[Path]]:
    """config.json + model.safetensors (or its shards) of a transformers VJEPA2Model."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path}: is a folder without config.json, not a Hugging Face model")
    cfg = _hf_config(config_path)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [path / name for name in sorted(set(weight_map.values()))]
    else:
        raise CheckpointError(f"{path}: has no model.safetensors or model.safetensors.index.json")
    state: dict[str, Tensor] = {}
    for file in files:
        state.update(_read_safetensors(file))
    return state, cfg, files


def _hf_config(config_path: Path) -> EncoderConfig:
    raw = json.loads(config_path.read_text())
    if raw.get("model_type") != "vjepa2":
        raise CheckpointError(
            f"{config_path}: model_type is {raw.get('model_type')!r}, not 'vjepa2'"
        )
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio",
                "patch_size", "tubelet_size", "crop_size", "frames_per_clip")
    missing = [key for key in required if key not in raw]
    if missing:
        raise CheckpointError(f"{config_path}: lacks {', '.join(missing)}")
    fields = {**HF_DEFAULTS, **{k: raw[k] for k in HF_DEFAULTS if k in raw}}
    if fields["hidden_act"] != "gelu":
        raise CheckpointError(f"{config_path}: hidden_act {fields['hidden_act']!r} is not 'gelu'")
    try:
        return EncoderConfig(
            img_size=raw["crop_size"], num_frames=raw["frames_per_clip"],
            patch_size=raw["patch_size"], tubelet_size=raw["tubelet_size"],
            in_chans=fields["in_chans"], embed_dim=raw["hidden_size"],
            depth=raw["num_hidden_layers"], num_heads=raw["num_attention_heads"],
            mlp_ratio=float(raw["mlp_ratio"]), qkv_bias=bool(fields["qkv_bias"]),
            norm_eps=float(fields["layer_norm_eps"]),
        )
    except ValueError as exc:
        raise CheckpointError(f"{config_path}: describes an invalid encoder ({exc})")


def _tensor_dict(value: object, path: Path) -> dict[str, Tensor]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Tensor) for v in value.values()):
        raise CheckpointError(f"{path}: the weights are not a flat dict of tensors")
    return {str(k): v for k, v in value.items()}


def _native_keys(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Rename a state dict of any supported layout to our parameter names."""
    keys = list(state)
    if any(re.match(r"(vjepa2\.)?encoder\.(layer|embeddings)\.", k) for k in keys):
        return _from_hf(state, path)
    native = {}
    for key, value in state.items():
        while key.startswith(OFFICIAL_PREFIXES):
            key = key.split(".", 1)[1]
        if key not in OFFICIAL_UNUSED:
            native[key] = value
    return native


def _from_hf(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """HF names -> ours; q, k, v are concatenated (in that order) into the fused qkv."""
    native: dict[str, Tensor] = {}
    split: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        key = key.removeprefix("vjepa2.")
        if key.startswith(HF_IGNORED_PREFIXES):
            continue
        if m := re.fullmatch(r"encoder\.layer\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", key):
            split.setdefault(f"blocks.{m[1]}.attn.qkv.{m[3]}", {})[m[2]] = value
            continue
        key = re.sub(r"^encoder\.layer\.(\d+)\.attention\.proj\.", r"blocks.\1.attn.proj.", key)
        key = re.sub(r"^encoder\.layer\.", "blocks.", key)
        key = key.replace("encoder.embeddings.patch_embeddings.proj.", "patch_embed.proj.")
        key = key.replace("encoder.layernorm.", "norm.")
        native[key] = value
    for key, parts in split.items():
        absent = [p for p in ("query", "key", "value") if p not in parts]
        if absent:
            raise CheckpointError(f"{path}: {key} lacks its {'/'.join(absent)} part")
        native[key] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return native


def _infer_config(state: dict[str, Tensor], path: Path) -> EncoderConfig:
    """Architecture from weight shapes; the head count from the named size of that width."""
    embed = state.get("patch_embed.proj.weight")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if embed is None or fc1 is None or embed.dim() != 5:
        raise CheckpointError(
            f"{path}: has no V-JEPA 2 encoder weights (missing patch_embed.proj.weight or "
            f"blocks.0.mlp.fc1.weight; keys start {_show(sorted(state))})"
        )
    width, in_chans, tubelet, patch, _ = embed.shape
    depth = 1 + max(int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    matches = [s for s in ENCODER_SIZES.values() if s.embed_dim == width]
    if not matches:
        raise CheckpointError(
            f"{path}: the number of heads of a {width}-wide encoder is unknown; "
            f"pass its config explicitly"
        )
    size = next((s for s in matches if s.depth == depth), matches[0])
    hidden = fc1.shape[0]
    ratio = size.mlp_ratio if size.mlp_hidden_dim == hidden else hidden / width
    return EncoderConfig(
        img_size=size.img_size, num_frames=size.num_frames, patch_size=patch,
        tubelet_size=tubelet, in_chans=in_chans, embed_dim=width, depth=depth,
        num_heads=size.num_heads, mlp_ratio=ratio,
        qkv_bias="blocks.0.attn.qkv.bias" in state, norm_eps=size.norm_eps,
    )


def _build_strict(cfg: EncoderConfig, state: dict[str, Tensor], path: Path) -> VisionTransformer:
    """The model with exactly these weights, or a CheckpointError naming what differs."""
    with torch.device("meta"):
        model = VisionTransformer(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_show(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_show(unexpected)})")
        raise CheckpointError(
            f"{path}: does not fit the {size_name(cfg)} encoder config: {'; '.join(parts)}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(state[key].shape)} but the "
                f"{size_name(cfg)} encoder config expects {tuple(tensor.shape)}"
            )
    weights = {k: v.to(torch.float32) for k, v in state.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def _show(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_SHOWN])
    return shown + (", ..." if len(keys) > MAX_KEYS_SHOWN else "")
