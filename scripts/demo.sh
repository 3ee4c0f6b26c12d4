#!/usr/bin/env bash
# The main job, from a fresh clone: install, build, then answer one long prompt twice — with a
# full prefill and with speculative prefill at keep 10% — and print both TTFTs and the speedup.
# Until the project ships its trained models, the demo makes a small random-weight main model
# and draft (their text is noise; the timings and the kept-token page are real).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_INSTALL:-0}" = 1 ] || scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build >/dev/null
SP=build/specprefill
mkdir -p out
[ -f out/demo-main.gguf ] || $SP make-model --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 4 --n-ff 2816 --type Q8_0 --seed 1 -o out/demo-main.gguf
[ -f out/demo-draft.gguf ] || $SP make-model --n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 768 --type Q8_0 --seed 2 -o out/demo-draft.gguf
# a long document with one fact in the middle, and a question about it
{
  for i in $(seq 1 12); do echo "Section $i. The weather in the valley was mild and the river ran slowly past the old mill."; done
  echo "The access code of Maria Lopez is 48213."
  for i in $(seq 13 24); do echo "Section $i. Travellers spoke of markets, bridges and the long road to the coast."; done
  echo "Question: What is the access code of Maria Lopez? Answer:"
} >out/demo-prompt.txt
echo "== full prefill"
$SP generate -m out/demo-main.gguf -f out/demo-prompt.txt -n 16 --temp 0 2>out/full.log | tail -c 200; grep -E "TTFT" out/full.log
echo "== speculative prefill, keep 10%"
$SP generate -m out/demo-main.gguf --draft out/demo-draft.gguf --keep 0.1 -f out/demo-prompt.txt -n 16 --temp 0 \
  --explain out/explain.html 2>out/spec.log | tail -c 200; grep -E "specprefill:|TTFT" out/spec.log
full=$(grep -oE "TTFT [0-9.]+ s" out/full.log | grep -oE "[0-9.]+")
spec=$(grep -oE "TTFT [0-9.]+ s" out/spec.log | tail -1 | grep -oE "[0-9.]+")
awk -v f="$full" -v s="$spec" 'BEGIN { printf "== TTFT: full %.3f s, speculative %.3f s: %.2fx faster\n", f, s, f / s }'
echo "== which tokens were kept: out/explain.html"
