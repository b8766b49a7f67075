"""hope: action-conditioned video world models with self-modifying memories."""

__version__ = "0.1.0"
