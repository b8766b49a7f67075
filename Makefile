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

# The main job end to end on the shipped sample data with the embedded default encoder:
# extract -> train (ViT naive + joint, HOPE and hybrid naive, CPU-sized presets) -> eval
# -> test-time adaptation on the held-out friction clip -> a rollout picture.
# The ViT runs use 5 blocks so that they match hope_tiny's parameter count (196,800 vs 197,632).
DEMO ?= demo_out
HOPE := $(VENV)/bin/hope
DEMO_TASKS ?= low,mid,high
DEMO_TRAIN ?= --tasks $(DEMO_TASKS) --steps 100 --batch-size 8 --lr 2e-3 --val-fraction 0.15 --seed 0

demo: $(STAMP)
	$(HOPE) extract sample_data --out $(DEMO)/sample.zarr --allow-skips
	@echo "feature store: $(DEMO)/sample.zarr"
	$(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/vit_naive --preset vit_tiny --pattern TTTTT --strategy naive $(DEMO_TRAIN)
	$(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/vit_joint --preset vit_tiny --pattern TTTTT --strategy joint $(DEMO_TRAIN)
	$(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/hope_naive --preset hope_tiny --strategy naive $(DEMO_TRAIN)
	$(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/hybrid_naive --preset hybrid_tiny --strategy naive $(DEMO_TRAIN)
	$(HOPE) eval $(DEMO)/vit_naive $(DEMO)/vit_joint $(DEMO)/hope_naive $(DEMO)/hybrid_naive \
		--naive $(DEMO)/vit_naive --joint $(DEMO)/vit_joint --out-figure $(DEMO)/comparison.png
	$(HOPE) adapt --run $(DEMO)/hope_naive --clip sample_data/new_friction.mp4 \
		--baseline $(DEMO)/vit_naive --png $(DEMO)/adapt.png
	$(HOPE) rollout --run $(DEMO)/hope_naive --clip sample_data/new_friction.mp4 \
		--context 2 --png $(DEMO)/rollout.png --out $(DEMO)/rollout.npy
	@echo "demo outputs in $(DEMO)/: sample.zarr, runs, comparison.png, adapt.png, rollout.png"

clean-demo:
	rm -rf $(DEMO)
