"""Self-modifying Titan memory (HOPE phase A): reference (naive) and fast (chunked) paths."""

from hopecli.model.memory.config import BOXES, TitanConfig
from hopecli.model.memory.state import TitanGates, TitanState
from hopecli.model.memory.titan import SelfModifyingTitan

__all__ = ["BOXES", "SelfModifyingTitan", "TitanConfig", "TitanGates", "TitanState"]
