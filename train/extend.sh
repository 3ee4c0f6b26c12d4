#!/usr/bin/env bash
# Length extension of the bundled pair toward 8k-16k tokens (issue #19): the stages run so far, in
# order, and the fresh evaluation documents they are measured on (models/README.md, section
# "Length extension", has the figures). One of them (yB's running mean) became the bundled main's
# last stage (recipe.sh, stage 9); this script is the lineage of the rest, so that the next stage
# starts from a reproducible model.
# Needs what train/recipe.sh needs (Debian's python3-torch, a built specprefill). Wall-clock
# minutes on the project's 2-core machine; stages marked "side by side" ran one per core.
# Each stage is skipped when its output exists: run it again to go on after an interruption.
#   train/extend.sh [OUT_DIR]      (default train/out-extend; ignored by git)
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
SP=../build/specprefill
OUT=${1:-out-extend}
mkdir -p "$OUT"
T="--tokenizer ../models/tokenizer.json --out $OUT --eval-docs 0"
M_SHAPE="--dim 64 --layers 4 --heads 4 --kv-heads 2 --head-dim 32 --ffn 256 --hop-questions"
M="$M_SHAPE --questions 6"
D="--dim 64 --layers 2 --heads 1 --kv-heads 1 --head-dim 32 --ffn 192 --questions 4"
gguf() { # NAME: NAME.gguf from NAME.safetensors unless it exists
  [ -f "$OUT/$1.gguf" ] || $SP convert --weights "$OUT/$1.safetensors" --tokenizer ../models/tokenizer.json \
    --config "$OUT/$1.json" --type F16 --name "specprefill $1" -o "$OUT/$1.gguf" >/dev/null
}
stage() { # NAME ARGS...: train.py unless NAME.safetensors exists, then the GGUF
  local name=$1; shift
  [ -f "$OUT/$name.safetensors" ] || $PY train.py --name "$name" $T "$@" >"$OUT/$name.log" 2>&1
  gguf "$name"
}

# The main they start from: the bundled main before its length stage (recipe.sh's out/main-i.gguf;
# models/main.gguf until session 27, which made the length stage part of the recipe).
MAIN0=${MAIN0:-out/main-i.gguf}
# The draft they start from: the three-stage draft (recipe.sh's out/draft.gguf; models/draft.gguf
# until session 30, which made the draft's length stage part of the recipe).
DRAFT0=${DRAFT0:-out/draft.gguf}
# the main: PoSE (short documents whose positions jump, to 10k) from the bundled main, 35 min at
# lr 4e-4, then 40 min at 3e-4 (session 18, side by side with the drafts)
stage mA $M --init "$MAIN0" --start-phase 6 --pose 10000 --minutes 35 --lr 4e-4 --seed 90
stage mA2 $M --init "$OUT/mA.safetensors" --start-phase 6 --pose 10000 --minutes 40 --lr 3e-4 --seed 93
# then real documents to ~9 500 units mixed with phase 5 (100-1 400), PoSE to 16k, both cores,
# bfloat16 products (session 19)
stage mC $M --init "$OUT/mA2.safetensors" --start-phase 5 --longest 9500 --pose 16000 --minutes 40 --lr 3e-4 --bf16 --threads 2 --seed 91
# under the engine's default YaRN (session 27, side by side, 38 min each, the running mean of the
# last quarter): PoSE to 16k on phase-6 documents (yA), or documents to 6 000 units and PoSE to 16k
# in half the batches (yB: recipe.sh's stage 9, the bundled main since), and the mean of the two
# running means (the figures are the running means': NAME-avg)
stage yA $M --init "$MAIN0" --start-phase 6 --pose 16000 --pose-share 0.6 --yarn --minutes 38 --lr 3e-4 --average-last 0.25 --seed 95
stage yB $M --init "$MAIN0" --start-phase 6 --longest 6000 --pose 16000 --pose-share 0.5 --yarn --minutes 38 --lr 3e-4 --average-last 0.25 --seed 96
[ -f "$OUT/yAB.safetensors" ] || $PY average.py --out "$OUT/yAB" "$OUT/yA-avg.safetensors" "$OUT/yB-avg.safetensors"
for name in yA-avg yB-avg yAB; do gguf "$name"; done
# from yB's running mean (the bundled main of session 27), 65 min more each at lr 2e-4, side by side
# (session 28): the same documents (zA), or real documents to 9 500 units (~16k tokens) with PoSE to
# 20k in 30 % of the batches (zB: its last step is recipe.sh's stage 10, the bundled main since); and
# the running means of their last 30 %
stage zA $M --init "$OUT/yB-avg.safetensors" --start-phase 6 --longest 6000 --pose 16000 --pose-share 0.5 --yarn --minutes 65 --lr 2e-4 --average-last 0.3 --seed 97
stage zB $M --init "$OUT/yB-avg.safetensors" --start-phase 6 --longest 9500 --pose 20000 --pose-share 0.3 --yarn --minutes 65 --lr 2e-4 --average-last 0.3 --seed 98
for name in zA-avg zB-avg; do gguf "$name"; done
# from zB (the bundled main of session 28), 60 min more each at lr 1.5e-4, side by side (session
# 29): half the batches read sparsely, as SpecPrefill shows the main a prompt (sA), or the same
# stage without them (sB); and the running means of their last 30 %
Z="--init $OUT/zB.safetensors --start-phase 6 --longest 9500 --pose 20000 --pose-share 0.3 --yarn --minutes 60 --lr 1.5e-4 --average-last 0.3"
stage sA $M $Z --sparse 0.5 --seed 99
stage sB $M $Z --seed 100
for name in sA-avg sB-avg; do gguf "$name"; done
# from stage 11 (the bundled main since session 29), 55 min each side by side at lr 1.5e-4, aimed at
# the record tables (where full prefill loses most at 8k-16k: about half the wrong answers find the
# row and miscopy a digit, the other half are another row's number):
# tables drawn 3x as often as their error alone would, up to 10 questions per document (tA, 296
# steps), and the same with the document text at a quarter of its loss weight, so that a long
# table's unpredictable names and digits weigh less against its answers (tB, 315 steps); the
# running means of their last 30 % (session 31: models/README.md, "Length extension")
[ -f "$OUT/sAB.safetensors" ] || $PY average.py --out "$OUT/sAB" "$OUT/sA-avg.safetensors" "$OUT/sB-avg.safetensors"
# stage 12 on: up to 10 questions a document (so these stages take the main's shape without M's 6)
T12="--start-phase 6 --longest 9500 --pose 20000 --yarn --minutes 55 --average-last 0.3 --questions 10"
S="--init $OUT/sAB.safetensors $T12 --pose-share 0.3 --lr 1.5e-4 --family-weights table=3"
stage tA $M_SHAPE $S --seed 103
stage tB $M_SHAPE $S --doc-weight 0.25 --seed 104
for name in tA-avg tB-avg; do gguf "$name"; done
# session 32 (tB's files lost with the machine): tB again from stage 11 as the engine reads it (F16,
# out/main-s.gguf: 359 steps), beside the same with the two-hop documents drawn 3x too (399 steps),
# which became the bundled main's stage 12 (recipe.sh main-t) and is not repeated here
stage tB2 $M_SHAPE --init "${MAIN11:-out/main-s.gguf}" $T12 --pose-share 0.3 --lr 1.5e-4 --family-weights table=3 --doc-weight 0.25 --seed 104
gguf tB2-avg
# from stage 12 (session 33), 55 min each side by side at lr 1e-4, stage 12's documents and weights:
# on documents from 200 units up (uA, 400 steps), or from 2 500 (~4 000 tokens) with PoSE in 15 % of
# the batches (uB, 298 steps); their running means, their mean (uAB) and the mean of the two with
# stage 12's weights as recipe.sh leaves them (uT3)
U="--init ${MAIN12:-../models/main.gguf} $T12 --family-weights table=3,multihop=3 --doc-weight 0.25 --lr 1e-4"
stage uA $M_SHAPE $U --pose-share 0.3 --seed 106
stage uB $M_SHAPE $U --pose-share 0.15 --shortest 2500 --seed 107
[ -f "$OUT/uAB.safetensors" ] || $PY average.py --out "$OUT/uAB" "$OUT/uA-avg.safetensors" "$OUT/uB-avg.safetensors"
[ -f "$OUT/uT3.safetensors" ] || $PY average.py --out "$OUT/uT3" "${MAIN12_F32:-out/main-t-avg.safetensors}" "$OUT/uA-avg.safetensors" "$OUT/uB-avg.safetensors"
for name in uA-avg uB-avg uAB uT3; do gguf "$name"; done

# the draft: PoSE to 10k (dA, 40 min), or real 2k-9 500-unit documents alone (dB, 35 min: the best
# selection at 8k, but it forgets 2k)
stage dA $D --init "$DRAFT0" --start-phase 6 --pose 10000 --minutes 40 --lr 5e-4 --seed 94
stage dB $D --init "$DRAFT0" --start-phase 6 --shortest 2000 --longest 9500 --minutes 35 --lr 5e-4 --seed 92
# the draft under the engine's YaRN (session 30), 50 min each side by side, on documents from 200
# units up (the short ones keep 2k): to 9 500 units with PoSE to 20k in 30 % of the batches at lr
# 3e-4 (dY), or to 11 000 units at lr 5e-4 (dZ, whose running mean became recipe.sh's draft stage 4)
stage dY $D --init "$DRAFT0" --start-phase 6 --longest 9500 --pose 20000 --pose-share 0.3 --yarn --average-last 0.3 --minutes 50 --lr 3e-4 --seed 101
stage dZ $D --init "$DRAFT0" --start-phase 6 --longest 11000 --yarn --average-last 0.3 --minutes 50 --lr 5e-4 --seed 102
for name in dY-avg dZ-avg; do gguf "$name"; done

# fresh documents no stage trains on (make_eval.py's generator, seeds outside every training run)
for set in "4k 3800-4200 4401 40" "8k 7800-8200 8801 24" "16k 15600-16400 16601 20"; do
  read -r name tokens seed n <<<"$set"
  [ -f "$OUT/eval-$name.jsonl" ] || $PY make_eval.py --tokenizer ../models/tokenizer.json --tokens "$tokens" --seed "$seed" --n "$n" \
    >"$OUT/eval-$name.jsonl"
done
# exact match of full prefill and of SpecPrefill at keep 10 %, and the answers each selection keeps
measure() { # MAIN.gguf DRAFT.gguf
  for set in ../eval/retrieval-2k-ci.jsonl "$OUT/eval-4k.jsonl" "$OUT/eval-8k.jsonl" "$OUT/eval-16k.jsonl"; do
    echo "== $1 + $2 on $set"
    $SP eval -m "$1" --draft "$2" --task "$set" --methods full,spec,oracle,random,recency --keep 0.1 | grep "^| [a-zA-Z]"
  done
}
measure "$OUT/mC.gguf" "$OUT/dB.gguf"
