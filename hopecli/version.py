"""The version of hope: a leaf module, so every module below the package face can name it."""

__version__ = "0.1.0"
