"""The package top: a small API, imported on first use, with one-sentence errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hopecli


def test_import_hopecli_stays_light():
    code = "import hopecli, sys; print('torch' in sys.modules, callable(hopecli.roll_out))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]  # torch arrives only with the first API call


def test_the_api_is_listed_and_documented():
    for name in ("load_run", "read_clip", "roll_out", "adapt_clips", "evaluate_runs"):
        assert name in dir(hopecli) and name in hopecli.__all__
        assert getattr(hopecli, name).__doc__.strip()
    with pytest.raises(AttributeError, match="module 'hopecli' has no attribute 'rollout_clip'"):
        hopecli.rollout_clip  # noqa: B018


def test_read_clip_mistakes_are_one_sentence():
    with pytest.raises(hopecli.HopeError, match=r"^read_clip needs either video= or store= \(with index=\)$"):
        hopecli.read_clip(None)
    with pytest.raises(hopecli.HopeError, match=r"^s.zarr: read_clip needs index= with store=$"):
        hopecli.read_clip(None, store="s.zarr")
