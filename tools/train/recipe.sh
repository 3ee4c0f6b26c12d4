#!/usr/bin/env bash
# Reproduces models/: tokenizer, main and draft models, GGUF conversion, evaluation sets.
# CPU only (2 cores: the two models train side by side, one thread each); about 60 minutes.
# Needs Debian's python3-torch, python3-numpy and libopenblas0-openmp, and a built specprefill.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
SP=../../build/specprefill
mkdir -p out
$PY bpe.py train --vocab 2048 --out out/tokenizer.json
# main: the larger model; draft: 2 layers, narrower. Time budgets as recorded in models/README.md.
$PY train.py --name main --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 384 --minutes ${MAIN_MINUTES:-55} --seed 2 --out out >out/main.log 2>&1 &
$PY train.py --name draft --dim 64 --layers 2 --heads 2 --kv-heads 1 --ffn 192 --minutes ${DRAFT_MINUTES:-23} --seed 3 --out out >out/draft.log 2>&1
wait
$SP convert --weights out/main.safetensors --tokenizer out/tokenizer.json --config out/main.json --type F16 --name "specprefill main" -o ../../models/main.gguf
$SP convert --weights out/draft.safetensors --tokenizer out/tokenizer.json --config out/draft.json --type F16 --name "specprefill draft" -o ../../models/draft.gguf
$PY make_eval.py --n 200 --tokens 2000-2400 --seed 100 >../../eval/retrieval-2k.jsonl
$PY make_eval.py --n 40 --tokens 2000-2200 --seed 200 >../../eval/retrieval-2k-ci.jsonl
$PY make_eval.py --n 8 --tokens 7800-8200 --seed 300 >../../eval/retrieval-8k.jsonl
