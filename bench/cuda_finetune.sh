#!/usr/bin/env bash
# The measurement a GPU makes affordable: LoRA fine-tuning of the bundled SmolLM2-135M-Instruct on SciTLDR
# train with the recipe docs/models.md measured on a CPU (44 steps in 45 minutes there), run here for up to
# three epochs, then the 200-paper dev evaluation that docs/models.md's SciTLDR table reports. The run's
# eval table comes back (finetune.tar.gz) so the paired bootstrap against Lead-1 and the top-1 highlight runs
# on the CPU machine: bench/summary_baselines.py --against eval_table.csv.
#
# Settings: GGUF (the bundled model file), DATA (a SciTLDR directory), OUT (results), DEVICE (cuda),
# PRECISION (bf16), STEPS (750), MINUTES (2), SAMPLES (200), BATCH (8), EVAL_EVERY (50), PY (python3).
# A CPU dry run: DEVICE=cpu PRECISION=fp32 STEPS=6 MINUTES=3 SAMPLES=4 BATCH=2 EVAL_EVERY=3 ...
#
# The GGUF (94 MiB) is larger than one device call may carry (64 MiB), so it travels in two calls while the
# machine stays warm (30 s between calls): here `head -c 47000000 GGUF > .gguf1/part1; tail -c +47000001 GGUF
# > .gguf2/part2` (both folders in .git/info/exclude); there `cp .gguf1/part1 /tmp/smol/` (carry .gguf1), then
# `cat /tmp/smol/part1 .gguf2/part2 > /tmp/smol/SmolLM2-135M-Instruct.Q4_1.gguf` (carry .gguf2), then this
# script with the wheels (carry .whl and .gpudata, SciTLDR copied from ../shared/data). On an H200 (2026-12-01)
# training took 166 s (417 steps in the 2-minute budget, model loading and the final evaluation) and the
# 200-paper dev evaluation more than the 84 s left of a 250 s time box: give the whole script 400 s.
set -u
: "${GGUF:?the SmolLM2 .gguf file}" "${DATA:?a SciTLDR directory}" "${OUT:?a folder for the results}"
DEVICE=${DEVICE:-cuda} PRECISION=${PRECISION:-bf16} STEPS=${STEPS:-750} MINUTES=${MINUTES:-2} SAMPLES=${SAMPLES:-200}
BATCH=${BATCH:-8} EVAL_EVERY=${EVAL_EVERY:-50} PY=${PY:-python3}
export TLDRLAB_HOME=${TLDRLAB_HOME:-/tmp/ft-home} TLDRLAB_WANDB_MODE=disabled WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
work=$(mktemp -d)
log=$work/finetune.log
stamp() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
trap 'tar -czf "$OUT/finetune.tar.gz" -C "$work" . ; stamp "results in $OUT/finetune.tar.gz"' EXIT

stamp "train: LoRA r16, lr 1e-3 constant, batch $BATCH, up to $STEPS steps or $MINUTES min, $DEVICE $PRECISION"
$PY -m tldrlab train --model causal_lm --data "$DATA" \
    --model-config "{\"path\": \"$GGUF\", \"lora\": {\"r\": 16, \"alpha\": 32, \"dropout\": 0.05}}" \
    --lr 1e-3 --lr-schedule constant --warmup-steps 5 --max-steps "$STEPS" --max-minutes "$MINUTES" \
    --batch-size "$BATCH" --eval-every "$EVAL_EVERY" --generate-every 4 --checkpoint-every 1000000 \
    --data.max-source-len 256 --data.max-target-len 40 --data.max-val-examples 24 --data.generate-examples 8 \
    --device "$DEVICE" --precision "$PRECISION" --train.no-progress --json > "$work/train.json" 2>> "$log"
stamp "train exit $?"
run=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/train.json" 2>> "$log")
[ -n "$run" ] || exit 1
dir=$TLDRLAB_HOME/runs/$run
cp "$dir/metrics.jsonl" "$dir/log.jsonl" "$dir/manifest.json" "$dir"/plots/*.png "$work/" 2>> "$log"
# the LoRA adapter (a few MB) comes back too: the dev evaluation can then be redone on the CPU machine if
# the device's time runs out before it ends (it did, the first time)
cp -r "$dir/model/adapter" "$work/adapter" 2>> "$log"
stamp "eval $run on dev, $SAMPLES papers"
$PY -m tldrlab eval "$run" --split dev --max-samples "$SAMPLES" --max-source-len 320 --max-new-tokens 48 \
    --no-bertscore --json > "$work/eval.json" 2>> "$log"
stamp "eval exit $?"
eval_run=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/eval.json" 2>> "$log")
cp "$TLDRLAB_HOME/runs/$eval_run/eval_table.csv" "$work/dev_eval_table.csv" 2>> "$log"
tail -3 "$work/metrics.jsonl"; head -c 1500 "$work/eval.json"; echo
