#!/usr/bin/env bash
# make gpu-pack: what tests/gpu/check.sh needs on a lent GPU machine that can fetch nothing.
# 1. the embedded model's config and tokenizer (build/gpu-model; random weights are made there);
# 2. the wheels its Python 3.12 image lacks (build/gpu-wheels), downloaded for that machine,
#    each alone: requirements.txt lists the whole set, the rest is on the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
MODEL=resources/models/smollm2-135m
test -f "$MODEL/config.json" || "$PYTHON" -m llenergymeasure prepare-model smollm2-135m "$MODEL"
"$PYTHON" -c "from tests.gpu.random_model import pack; from pathlib import Path; \
pack(Path('$MODEL'), Path('build/gpu-model'))"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d build/gpu-wheels -r tests/gpu/requirements.txt
