"""The predictor family: HOPE blocks (self-modifying Titan memory, CMS, spatial mixing),
linear-memory blocks and block-causal transformer blocks, stacked by a pattern."""

from hopecli.model.config import BLOCK_LETTERS, PredictorConfig
from hopecli.model.predictor import ParamGroup, Predictor, PredictorOutput, PredictorState
from hopecli.model.presets import PRESETS, build_predictor, preset_config

__all__ = [
    "BLOCK_LETTERS",
    "PRESETS",
    "ParamGroup",
    "Predictor",
    "PredictorConfig",
    "PredictorOutput",
    "PredictorState",
    "build_predictor",
    "preset_config",
]
