"""Shared Rich consoles: progress and tables on stderr, data on stdout."""

from rich.console import Console

err = Console(stderr=True)
out = Console()
