"""Predictor configuration: JSON round trip, validation messages, preset sizes."""

from __future__ import annotations

import json

import pytest
import torch

from hopecli.model import PRESETS, PredictorConfig, build_predictor, preset_config
from hopecli.model.memory import TitanConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_survives_a_json_round_trip(name: str) -> None:
    cfg = preset_config(name, input_dim=32, patches_per_step=6, grid=(2, 3), chunk_size=4)
    back = PredictorConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert isinstance(back.memory, TitanConfig) and isinstance(back.grid, tuple)


def test_letter_l_gets_a_linear_gated_delta_memory() -> None:
    cfg = preset_config("hope_tiny", pattern="HL")
    assert cfg.memory_config("L").kind == "linear" and cfg.memory_config("L").update_rule == "gd"
    assert cfg.memory_config("H") == cfg.memory


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pattern": "HXT"}, "unknown block letter 'X' in pattern 'HXT'"),
        ({"patches_per_step": 10}, "patches_per_step 10 is not a square; give grid (rows, cols)"),
        ({"chunk_size": 5}, "chunk_size 5 must divide the 258 tokens of a frame"),
        ({"cms_periods": (1, 4)}, "need one CMS period per level"),
        ({"pattern": "T", "num_heads": 5}, "dim 384 is not divisible by num_heads 5"),
        ({"memory": TitanConfig(dim=128)}, "memory.dim 128 differs from the predictor's dim 384"),
    ],
)
def test_bad_config_values_are_quoted(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PredictorConfig(**fields)


def test_unknown_keys_and_presets_are_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown predictor config key\(s\) \['dimm'\]"):
        PredictorConfig.from_dict({"dimm": 3})
    with pytest.raises(ValueError, match=r"unknown memory config key\(s\) \['hiden_mult'\]"):
        PredictorConfig.from_dict({"memory": {"dim": 384, "hiden_mult": 2.0}})
    with pytest.raises(ValueError, match="unknown predictor preset 'hope_big'"):
        preset_config("hope_big")


def test_preset_overrides_reach_the_memory() -> None:
    cfg = preset_config("hope_phase5", dim=192, memory={"heads": 3})
    assert cfg.memory.dim == 192 and cfg.memory.heads == 3 and cfg.memory.static_q


def _count(name: str) -> int:
    with torch.device("meta"):
        model = build_predictor(name, input_dim=1024, action_dim=2, state_dim=2, patches_per_step=256)
    return model.num_parameters()


@pytest.mark.parametrize("name", ["vit_baseline", "hope_phase5", "hybrid", "hope_multihead"])
def test_full_presets_are_matched_at_about_43m_parameters(name: str) -> None:
    assert abs(_count(name) - 43e6) <= 0.03 * 43e6


def test_vit_baseline_and_phase5_counts() -> None:
    D, H = 384, 1536
    block = (3 * D * D + 3 * D) + (D * D + D) + (D * H + H + H * D + D) + 4 * D
    io = (1024 * D + D) + 2 * (2 * D + D) + 2 * 64 * D + 2 * D + (D * 1024 + 1024)
    assert _count("vit_baseline") == 24 * block + io
    assert abs(_count("hope_phase5") - 43.6e6) <= 0.005 * 43.6e6  # the seeds' phase 5 size
