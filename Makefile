# Set-up is automatic: every target that needs the environment builds .venv first when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hope-installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv test demo man clean-demo

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

man: $(STAMP)
	$(PY) -m hopecli.manpages man

# The main job end to end on the shipped sample data with the embedded default encoder.
DEMO ?= demo_out
HOPE := $(VENV)/bin/hope

demo: $(STAMP)
	$(HOPE) extract sample_data --out $(DEMO)/sample.zarr --allow-skips
	@echo "feature store: $(DEMO)/sample.zarr"

clean-demo:
	rm -rf $(DEMO)
