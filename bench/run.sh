#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: makes random-weight models of the reference shapes (Llama-3.2-1B
# and the ~90M draft, Llama-3 vocabulary) in models-big/ (ignored by git), then runs
# `specprefill bench` on them. Needs ../shared/fixtures/tokenizer/vocab-llama3.gguf for the
# vocabulary, ~6 GB of disk, and about an hour on 2 cores.
#   bench/run.sh engine    pp512/pp2048/tg32 for F16, Q8_0, Q4_K_M (+ F16 with SPECPREFILL_F16=bf16, pp8192)
#   bench/run.sh single    one thread (pinned to CPU 0): pp512 and tg32, against llama.cpp's one-thread row
#   bench/run.sh ttft      full prefill vs speculative prefill, 1k-8k tokens
#   bench/run.sh ttft-long the same at 8k, 16k and 32k tokens (the bundled pair, then the 1B pair): about 30 min
#   bench/run.sh parallel  generation for 1, 2, 4 and 8 sequences at once (batched decode, a server's slots)
set -euo pipefail
cd "$(dirname "$0")/.."
SP=build/specprefill
VOCAB=${VOCAB:-../shared/fixtures/tokenizer/vocab-llama3.gguf}
mkdir -p models-big
[ -f models-big/1b-f16.gguf ] || $SP make-model --preset 1b --vocab-from "$VOCAB" --type F16 -o models-big/1b-f16.gguf
[ -f models-big/1b-q8_0.gguf ] || $SP quantize models-big/1b-f16.gguf models-big/1b-q8_0.gguf Q8_0
[ -f models-big/1b-q4_k_m.gguf ] || $SP quantize models-big/1b-f16.gguf models-big/1b-q4_k_m.gguf Q4_K_M
[ -f models-big/draft-f16.gguf ] || $SP make-model --preset draft --vocab-from "$VOCAB" --type F16 -o models-big/draft-f16.gguf
[ -f models-big/draft-q8_0.gguf ] || $SP quantize models-big/draft-f16.gguf models-big/draft-q8_0.gguf Q8_0
T=${THREADS:-2}
case "${1:-engine}" in
engine)
  for m in 1b-f16 1b-q8_0 1b-q4_k_m; do $SP bench -m models-big/$m.gguf -p 512,2048 -n 32 -r 3 -t $T; done
  SPECPREFILL_F16=bf16 $SP bench -m models-big/1b-f16.gguf -p 512,2048 -n 0 -r 3 -t $T
  for m in 1b-q8_0 1b-q4_k_m; do $SP bench -m models-big/$m.gguf -p 8192 -n 0 -r 1 -t $T; done
  for m in draft-f16 draft-q8_0; do $SP bench -m models-big/$m.gguf -p 512,2048,8192 -n 0 -r 3 -t $T; done
  ;;
single)
  for m in 1b-f16 1b-q8_0 1b-q4_k_m; do taskset -c 0 $SP bench -m models-big/$m.gguf -p 512 -n 32 -r 3 -t 1; done
  SPECPREFILL_F16=bf16 taskset -c 0 $SP bench -m models-big/1b-f16.gguf -p 512 -n 0 -r 3 -t 1
  for m in draft-f16 draft-q8_0; do taskset -c 0 $SP bench -m models-big/$m.gguf -p 512 -n 0 -r 3 -t 1; done
  ;;
ttft-long)
  $SP bench -m models/main.gguf --draft models/draft.gguf -p 0 -n 0 -r 1 -t $T --ttft 8192,16384,32768 --keep 0.1
  $SP bench -m models-big/1b-q8_0.gguf --draft models-big/draft-q8_0.gguf -p 0 -n 0 -r 1 -t $T --ttft 8192,16384,32768 --keep 0.1
  ;;
parallel)
  for m in 1b-f16 1b-q8_0 1b-q4_k_m; do $SP bench -m models-big/$m.gguf -p 0 -n 32 -r 3 -t $T --parallel 2,4,8; done
  ;;
ttft)
  $SP bench -m models-big/1b-q8_0.gguf --draft models-big/draft-q8_0.gguf -p 0 -n 0 -r 1 -t $T --ttft 1024,2048,4096,8192 --keep 0.1,0.3
  $SP bench -m models-big/1b-q8_0.gguf --self-spec -p 0 -n 0 -r 1 -t $T --ttft 2048,8192 --keep 0.1
  ;;
esac
