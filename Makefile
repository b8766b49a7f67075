# Set-up is automatic: every target that needs the environment builds .venv first when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hope-installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv test demo demo-icl demo-cl demo-record man clean-demo

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
# sample clips -> extract -> train (ViT naive + joint, HOPE and hybrid naive, CPU-sized presets,
# 2 seeds each) -> eval (mean and 95% interval over seeds) -> test-time adaptation on the
# held-out friction clip -> a rollout picture -> a plan -> profile, then make demo-icl.
# The ViT runs use 5 blocks so that they match hope_tiny's parameter count (196,800 vs 198,400).
DEMO ?= demo_out
HOPE := $(VENV)/bin/hope
DEMO_TASKS ?= low,mid,high
DEMO_SEEDS ?= 0,1
# lr 6e-3 rather than 2e-3: at equal steps it learned the moving patches faster (README,
# "What limits the demo's models"); more steps would help more, at about 1 s a step in each
# HOPE run on one core (compiled: --compile auto compiles training runs of 250+ steps on the CPU).
# --val-clips 3: the last 3 clips of each friction, the fewest that eval trusts.
DEMO_TRAIN ?= --tasks $(DEMO_TASKS) --steps 100 --batch-size 8 --lr 6e-3 --val-clips 3 --seeds $(DEMO_SEEDS)
# REC: empty, or the recorder that make demo-record puts before every command.
REC ?=
comma := ,
SEED0 := seed$(firstword $(subst $(comma), ,$(DEMO_SEEDS)))

demo: $(STAMP)
	$(REC) $(HOPE) synth --out $(DEMO)/clips --clips 2 --regime low=0.1 --regime high=0.8 --seed 3
	$(REC) $(HOPE) extract sample_data --out $(DEMO)/sample.zarr --allow-skips
	$(REC) $(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/vit_naive --preset vit_tiny --pattern TTTTT --strategy naive $(DEMO_TRAIN)
	$(REC) $(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/vit_joint --preset vit_tiny --pattern TTTTT --strategy joint $(DEMO_TRAIN)
	$(REC) $(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/hope_naive --preset hope_tiny --strategy naive $(DEMO_TRAIN)
	$(REC) $(HOPE) train $(DEMO)/sample.zarr --out $(DEMO)/hybrid_naive --preset hybrid_tiny --strategy naive $(DEMO_TRAIN)
	$(REC) $(HOPE) eval $(DEMO)/vit_naive $(DEMO)/vit_joint $(DEMO)/hope_naive $(DEMO)/hybrid_naive \
		--naive $(DEMO)/vit_naive --joint $(DEMO)/vit_joint --out-figure $(DEMO)/comparison.png
	$(REC) $(HOPE) adapt --run $(DEMO)/hope_naive/$(SEED0) --clip sample_data/new_friction.mp4 \
		--baseline $(DEMO)/vit_naive/$(SEED0) --png $(DEMO)/adapt.png
	$(REC) $(HOPE) rollout --run $(DEMO)/hope_naive/$(SEED0) --clip sample_data/new_friction.mp4 \
		--context 2 --png $(DEMO)/rollout.png --out $(DEMO)/rollout.npy
	$(REC) $(HOPE) rollout --run $(DEMO)/hope_naive/$(SEED0) --clip sample_data/new_friction.mp4 --context 1 \
		--plan --goal sample_data/low_000.mp4 --samples 100 --iterations 5 --png $(DEMO)/plan.png
	$(REC) $(HOPE) profile --run $(DEMO)/hope_naive/$(SEED0) --run $(DEMO)/vit_naive/$(SEED0) --batch-size 2 --frames 8
	@echo "demo outputs in $(DEMO)/: clips, sample.zarr, runs, comparison.png, adapt.png, rollout.png, plan.png"
	$(MAKE) demo-icl DEMO=$(DEMO)

# The README's tour quotes one recorded run of make demo (bench/demo_record.log): this target
# makes that run in a fresh $(DEMO) with one thread per command, keeps its log and refreshes
# the README's recorded blocks; tests/test_readme.py checks the README against the log.
# The README's commands and Python example name demo_out: keep DEMO at its default here.
demo-record: $(STAMP)
	@test ! -e $(DEMO) || { echo "$(DEMO) exists: a record comes from a fresh run (make clean-demo first)"; exit 1; }
	HOPE_THREADS=1 $(PY) bench/record.py start $(DEMO)/demo.log
	HOPE_THREADS=1 $(MAKE) demo DEMO=$(DEMO) REC="$(PY) bench/record.py run $(DEMO)/demo.log --"
	$(PY) bench/record.py finish $(DEMO)/demo.log
	$(PY) bench/record.py run $(DEMO)/demo.log -- $(PY) bench/tour.py --api
	$(PY) bench/tour.py $(DEMO)/demo.log

# The in-context benchmark in a few minutes of CPU: feature clips whose every patch follows a
# hidden law of its clip (no video, no encoder); HOPE and the parameter-matched ViT trained
# alike on two families; eval shows each one's error per step beside copy, the no-context
# map, in-context least squares and the oracle (icl_in_context.png); adapt follows one clip
# of the held-out family step by step. Index 200: the 9th held-out clip (96 + 96 before it).
ICL_TRAIN ?= --strategy joint --tasks linear,nonlinear --steps 100 --batch-size 8 --lr 3e-3 --val-clips 12 \
	--rollout-weight 0 --jump-weight 0 --horizon 1 --seed 0

demo-icl: $(STAMP)
	$(REC) $(HOPE) synth --dynamics --clips 96 --out $(DEMO)/icl.zarr
	$(REC) $(HOPE) train $(DEMO)/icl.zarr --out $(DEMO)/icl_hope --preset hope_tiny $(ICL_TRAIN)
	$(REC) $(HOPE) train $(DEMO)/icl.zarr --out $(DEMO)/icl_vit --preset vit_tiny --pattern TTTTT $(ICL_TRAIN)
	$(REC) $(HOPE) eval $(DEMO)/icl_hope $(DEMO)/icl_vit --out-figure $(DEMO)/icl.png
	$(REC) $(HOPE) adapt --run $(DEMO)/icl_hope --store $(DEMO)/icl.zarr --index 200 --png $(DEMO)/icl_adapt.png
	@echo "in-context study in $(DEMO)/: icl.zarr, icl_hope, icl_vit, icl_in_context.png, icl_adapt.png"

# The seeds' continual-learning study at CPU size: base training, then five physics shifts
# (scaling, dissipation, discretization, kinematics, compositional), each evaluated on the
# last clips of every partition after every experience; both metric families in `hope eval`.
CL_TASKS := scaling,dissipation,discretization,kinematics,compositional
CL_TRAIN ?= --base-task base --tasks $(CL_TASKS) --base-steps 80 --steps 40 --batch-size 8 \
	--lr 2e-3 --val-clips 2 --jump-k 3 --schedule wsd --warmup-fraction 0.1 --decay-fraction 0.1 --seed 0
CL_VIT := --preset vit_tiny --pattern TTTTT

demo-cl: $(STAMP)
	$(HOPE) synth --study --clips 10 --out $(DEMO)/study --seed 0
	$(HOPE) extract $(DEMO)/study --out $(DEMO)/study.zarr
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_vit_naive $(CL_VIT) --strategy naive $(CL_TRAIN)
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_vit_joint $(CL_VIT) --strategy joint $(CL_TRAIN)
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_vit_replay $(CL_VIT) --strategy replay --replay-fraction 0.3 $(CL_TRAIN)
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_hope_naive --preset hope_tiny --strategy naive $(CL_TRAIN)
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_hybrid_naive --preset hybrid_tiny --strategy naive $(CL_TRAIN)
	$(HOPE) train $(DEMO)/study.zarr --out $(DEMO)/cl_gdn_naive --preset hope_tiny --pattern LL --strategy naive $(CL_TRAIN)
	$(HOPE) eval $(DEMO)/cl_vit_naive $(DEMO)/cl_vit_joint $(DEMO)/cl_vit_replay $(DEMO)/cl_hope_naive \
		$(DEMO)/cl_hybrid_naive $(DEMO)/cl_gdn_naive --naive $(DEMO)/cl_vit_naive --joint $(DEMO)/cl_vit_joint \
		--out-figure $(DEMO)/cl_comparison.png --json > $(DEMO)/cl_eval.json
	@echo "study results: $(DEMO)/cl_eval.json, $(DEMO)/cl_comparison.png, $(DEMO)/cl_*/eval.png"

clean-demo:
	rm -rf $(DEMO)
