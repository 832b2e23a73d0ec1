#!/bin/bash
# One device check of tldrlab's CUDA paths on a GPU machine, each stage time-boxed, every stage run even after
# another failed. What it checks, in order of value:
#   env      nvidia-smi, torch/transformers versions, torch.cuda.is_available
#   train    tiny gpt2 and tiny t5 on --device cuda, precision auto (fp16) and bf16 (loss, tokens/s, MFU)
#   resume   2N steps straight vs the same run killed (SIGKILL) after its step-N checkpoint and resumed:
#            per-step train losses equal / max abs diff
#   smollm2  a randomly initialised SmolLM2-135M-shaped Llama with the real SmolLM2 tokenizer, fine-tuned by
#            `tldrlab train --model causal_lm`, full and LoRA, bf16, batch 8 of ~128 tokens (tokens/s, MFU)
#   eval     tldrlab eval / generate / score of a tiny run on cuda
#   extras   a dendrite experiment (perforatedai), a 2-trial sweep (optuna), tiny, on cuda
#   pytest   tests/{train,evaluate,models,...} with CUDA visible, so device=auto picks cuda (junit.xml)
# Results: $OUT/summary.json, $OUT/summary.md, $OUT/stages.jsonl, $OUT/logs.tar.gz (every stage's log and
# the runs' log/metrics files), $OUT/junit.xml.
#
# On the GPU machine (from the repo root; the carried .whl holds what its image lacks, .gpucheck the SmolLM2
# tokenizer files and the test data), with carry [".whl", ".gpucheck"] and timeout_s 420:
#   bash bench/cuda_check.sh
# Carried: .whl (24 MB: pydantic & co., fastapi/starlette/opentelemetry for the tests' imports, optuna &
# sqlalchemy/alembic for the sweep, perforatedai for dendrites, rouge_score built here from its sdist, typer/
# click/rich at the versions tested here) and .gpucheck (7.6 MB: smollm2-tokenizer/, saved from the bundled
# GGUF by `cuda_check.py tokenizer`, and shared-data.tar.gz, the tinyshakespeare and debian_descriptions sets
# the tests read from ../shared/data). The tests that need what does not travel fail there whatever the
# device: gguf and the bundled SmolLM2 GGUF (tests/models/test_causal_lm.py, test_bundled_smollm2.py), the
# MiniLM package (BERTScore, the default embedder), embedded PostgreSQL ([postgres] cases), uvicorn, wandb.
# Here, on the CPU, a quick run of the same stages:
#   DEVICE=cpu QUICK=1 PYTHON=/path/to/python OUT=/tmp/cuda-check bash bench/cuda_check.sh
# Settings: DEVICE (cuda), QUICK (0), PYTHON (python3), OUT ($OUT, else /tmp/cuda-check-out), WORK
# (/tmp/cuda-check), SKIP_INSTALL (0: install .whl into $WORK/site first), PYTEST_SECONDS (150),
# DEADLINE (330: the pytest stage gets what is left of it, counted from the start, at most PYTEST_SECONDS),
# PYTEST_WORKERS (8), HARD_LIMIT (390: no stage runs past it, so the summary is written inside the device
# command's own limit; give the command 420 s or more).
set -u
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/cuda-check-out}
WORK=${WORK:-/tmp/cuda-check}
PYTEST_SECONDS=${PYTEST_SECONDS:-150}
DEADLINE=${DEADLINE:-330}
HARD_LIMIT=${HARD_LIMIT:-390}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
mkdir -p "$OUT" "$WORK/logs"
rm -rf "$WORK/home" "$WORK/data"
LOGS=$WORK/logs
HELPER="$REPO/bench/cuda/cuda_check.py"
export PYTHONUNBUFFERED=1 TLDRLAB_WANDB_MODE=disabled WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
START=$(date +%s)

if [ "$QUICK" = 1 ]; then
  STEPS=4; RESUME_N=6; SMOL_STEPS=2; SMOL_LAYERS='"num_layers": 2, '
else
  STEPS=60; RESUME_N=150; SMOL_STEPS=40; SMOL_LAYERS=''
fi

# stage NAME SECONDS CMD...: run CMD under `timeout`, log to $LOGS/NAME.log, record rc and seconds
stage() {
  local name=$1 seconds=$2
  shift 2
  local t0 rc left
  t0=$(date +%s)
  left=$((HARD_LIMIT - (t0 - START)))
  if [ "$left" -lt 15 ]; then # so the summary is written before the command's own limit ends it all
    echo "=== stage $name skipped: out of time"
    printf '{"stage": "%s", "rc": -1, "seconds": 0, "note": "skipped: out of time"}\n' "$name" >> "$OUT/stages.jsonl"
    return 1
  fi
  [ "$seconds" -gt "$left" ] && seconds=$left
  echo "=== $(date -u +%H:%M:%S) [+$((t0 - START))s] stage $name (limit ${seconds}s)"
  timeout -s "${STAGE_SIGNAL:-TERM}" -k 15 "$seconds" "$@" > "$LOGS/$name.log" 2>&1 < /dev/null
  rc=$?
  echo "    rc=$rc in $(($(date +%s) - t0))s; last lines:"
  tail -n 4 "$LOGS/$name.log" | cut -c1-300 | sed 's/^/    | /'
  printf '{"stage": "%s", "rc": %d, "seconds": %d, "at": %d}\n' "$name" "$rc" "$(($(date +%s) - t0))" \
    "$((t0 - START))" >> "$OUT/stages.jsonl"
  "$PYTHON" "$HELPER" summary "$OUT" "$WORK/home" > /dev/null 2>&1 # kept current in case the run is cut off
  return $rc
}
note() { # a key figure for the summary
  printf '{"stage": "%s", "rc": 0, "seconds": 0, "note": %s}\n' "$1" "$("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")" >> "$OUT/stages.jsonl"
}
TL=("$PYTHON" -m tldrlab)
finish() {
  echo "=== $(date -u +%H:%M:%S) [+$(($(date +%s) - START))s] summary"
  "$PYTHON" "$HELPER" summary "$OUT" "$WORK/home" | head -80
  (cd "$WORK" && find home -name '*.json' -o -name '*.jsonl' -o -name '*.log' -o -name '*.csv' \
     | grep -v '/checkpoints/' | tar -czf "$OUT/logs.tar.gz" -T - logs 2>/dev/null)
  ls -la "$OUT"
}
trap finish EXIT

# -- install the carried wheels (the image lacks pydantic & co.) --------------------------------------------
rm -f "$OUT/stages.jsonl"
if [ "${SKIP_INSTALL:-0}" != 1 ] && ls .whl/*.whl > /dev/null 2>&1; then
  stage install 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl
  export PYTHONPATH=$WORK/site:$REPO/src
else
  export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
fi

# -- 1. environment --------------------------------------------------------------------------------------------
stage env 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PYTHON -c 'import sys, torch, transformers, accelerate, peft, pydantic; \
print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available()); \
print(\"transformers\", transformers.__version__, \"accelerate\", accelerate.__version__, \"peft\", peft.__version__, \"pydantic\", pydantic.__version__); \
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no cuda\"); \
print(\"bf16\", torch.cuda.is_available() and torch.cuda.is_bf16_supported())'; \
  $PYTHON -m tldrlab --help | head -5"
stage data 60 "$PYTHON" "$HELPER" data "$WORK/data"
DATA=$WORK/data

# -- 2. tiny gpt2 / t5 on the device, fp16 (auto) and bf16 ----------------------------------------------------
COMMON=(--device "$DEVICE" --max-steps "$STEPS" --eval-every "$STEPS" --train.log-every 1 --train.no-plot
        --train.no-progress --wandb disabled --seed 0 --json)
GPT2=(--model gpt2 --model-size tiny --data "$DATA/corpus.txt" --tokenizer-method bpe --vocab-size 1024
      --batch-size 16 --block-size 128)
T5=(--model t5 --model-size tiny --data "$DATA/pairs.jsonl" --format pairs --tokenizer-method bpe
    --vocab-size 1024 --batch-size 16 --data.max-source-len 128 --data.max-target-len 32)
for precision in auto bf16; do
  stage "train_gpt2_$precision" 90 "${TL[@]}" train "${GPT2[@]}" "${COMMON[@]}" --precision "$precision" \
    --home "$WORK/home/gpt2_$precision"
  stage "train_t5_$precision" 90 "${TL[@]}" train "${T5[@]}" "${COMMON[@]}" --precision "$precision" \
    --home "$WORK/home/t5_$precision"
done

# -- 3. exact resume on the device -------------------------------------------------------------------------
RESUME=(--model gpt2 --model-size tiny --data "$DATA/corpus.txt" --tokenizer-method bpe --vocab-size 1024
        --batch-size 8 --block-size 64 --device "$DEVICE" --max-steps $((2 * RESUME_N)) --eval-every 0
        --checkpoint-every "$RESUME_N" --train.log-every 1 --train.no-plot --train.no-progress --wandb disabled
        --seed 0 --final-eval.no-enabled)
stage resume_straight 90 "${TL[@]}" train "${RESUME[@]}" --home "$WORK/home/resume_straight"
resume_killed() { # start the same run, SIGKILL it once its step-N checkpoint is written, then resume it
  local home=$WORK/home/resume_killed pid run ckpt
  ckpt=$(printf 'step-%08d' "$RESUME_N")
  "${TL[@]}" train "${RESUME[@]}" --home "$home" &
  pid=$!
  for _ in $(seq 1 3000); do
    run=$(ls -d "$home"/runs/train-* 2>/dev/null | head -1)
    if [ -n "$run" ] && [ -e "$run/checkpoints/$ckpt/index.json" ]; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.02
  done
  kill -9 "$pid" 2>/dev/null && echo "killed $pid after $ckpt" || echo "run ended before the kill"
  wait "$pid"
  echo "losses logged before the resume: $("$PYTHON" -c "import sys; sys.path.insert(0, '$REPO/bench/cuda'); \
import cuda_check, pathlib; print(len(cuda_check.train_losses(pathlib.Path('$run'))))")"
  "${TL[@]}" train --resume "$(basename "$run")" --home "$home" --json
}
stage resume_killed 120 bash -c "$(declare -p PYTHON TL RESUME RESUME_N WORK REPO); $(declare -f resume_killed); resume_killed"
compare=$("$PYTHON" "$HELPER" compare "$(ls -d "$WORK"/home/resume_straight/runs/train-* | head -1)" \
  "$(ls -d "$WORK"/home/resume_killed/runs/train-* | head -1)" 2>&1)
echo "    resume comparison: $compare"
note resume_compare "$compare"

# -- 5. SmolLM2-135M-shaped Llama, fine-tuned by tldrlab (full and LoRA), bf16, 8 x ~128 tokens ---------------
stage smol_build 120 "$PYTHON" "$HELPER" smol "$WORK/smol135" "$REPO/.gpucheck/smollm2-tokenizer"
SMOL=(--model causal_lm --data "$DATA/pairs.jsonl" --format pairs --batch-size 8 --data.max-source-len 96
      --data.max-target-len 32 --precision bf16 --device "$DEVICE" --max-steps "$SMOL_STEPS" --eval-every 0
      --train.log-every 1 --train.no-plot --train.no-progress --wandb disabled --seed 0 --final-eval.no-enabled
      --tokenizer "$WORK/smol135" --json)
stage smol_full 150 "${TL[@]}" train "${SMOL[@]}" --lr 5e-5 \
  --model-config "{${SMOL_LAYERS}\"path\": \"$WORK/smol135\"}" --home "$WORK/home/smol_full"
stage smol_lora 150 "${TL[@]}" train "${SMOL[@]}" --lr 3e-4 \
  --model-config "{${SMOL_LAYERS}\"path\": \"$WORK/smol135\", \"lora\": {\"r\": 16, \"alpha\": 32}}" \
  --home "$WORK/home/smol_lora"

# -- 4. eval / generate / score of a tiny run on the device -------------------------------------------------
T5RUN=$(ls -d "$WORK"/home/t5_auto/runs/train-* 2>/dev/null | head -1)
GPTRUN=$(ls -d "$WORK"/home/gpt2_auto/runs/train-* 2>/dev/null | head -1)
stage eval_t5 120 "${TL[@]}" eval "$(basename "${T5RUN:-none}")" --home "$WORK/home/t5_auto" --data "$DATA/pairs.jsonl" \
  --format pairs --max-samples 16 --no-bertscore --json
stage generate_gpt2 60 "${TL[@]}" generate "$(basename "${GPTRUN:-none}")" --home "$WORK/home/gpt2_auto" \
  -p "tldrlab trains" --max-new-tokens 32
stage score_gpt2 60 "${TL[@]}" score "$(basename "${GPTRUN:-none}")" --home "$WORK/home/gpt2_auto" \
  --text "tldrlab trains small models" --json

# -- 6. dendrites, sweep (tiny). ELM is left out: `elm prepare` embeds with the MiniLM package (88 MB), too big
# to carry.
stage dendrites 120 "${TL[@]}" experiment dendrites --data "$DATA/pairs.jsonl" --format pairs --home "$WORK/home/dendrites" \
  --arms baseline,compressed_pai --seeds 1 --budget-steps $((STEPS / 2 + 2)) --train-limit 200 --eval-size 8 \
  --test-size 8 --model-size tiny --vocab-size 512 --batch-size 8 --compression-ratio 0.5 --no-bertscore --wandb disabled --json
sed -e "s|path: ../shared/data/debian_descriptions|path: $DATA/pairs.jsonl|" -e "s|device: cpu|device: $DEVICE|" \
  -e "s|wandb: offline|wandb: disabled|" src/tldrlab/sweep/examples/tiny_t5.yaml > "$WORK/sweep.yaml"
stage sweep 150 "${TL[@]}" sweep run "$WORK/sweep.yaml" --trials 2 --home "$WORK/home/sweep" --json

# -- 7. the training/evaluation/model tests with CUDA visible (device=auto picks it) ---------------------------
if [ ! -d ../shared/data ] && [ -f .gpucheck/shared-data.tar.gz ]; then
  mkdir -p ../shared/data && tar -xzf .gpucheck/shared-data.tar.gz -C ../shared/data
fi
# what is left of DEADLINE (from the start), at most PYTEST_SECONDS; SIGINT first so pytest still writes its
# report and junit.xml
left=$((DEADLINE - ($(date +%s) - START)))
[ "$left" -lt "$PYTEST_SECONDS" ] && PYTEST_SECONDS=$left
[ "$PYTEST_SECONDS" -lt 20 ] && PYTEST_SECONDS=20
STAGE_SIGNAL=INT stage pytest "$PYTEST_SECONDS" "$PYTHON" -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-8}" -rf --timeout 120 \
  --junitxml "$OUT/junit.xml" tests/train tests/evaluate tests/models tests/test_device.py
exit 0
