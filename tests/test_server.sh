#!/usr/bin/env bash
# Integration tests of `specprefill serve` on a loopback port: curl for the HTTP surface, the
# official openai Python client, a bounded load test, and graceful shutdown.
# Usage: test_server.sh SPECPREFILL_BINARY WORK_DIR VENV_DIR
set -u
SP=$1
W=$2
VENV=$3
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
$SP make-model -o "$W/main.gguf" --n-embd 384 --n-layer 4 --n-head 6 --n-head-kv 2 --n-ff 1024 --seed 1 --ctx 4096 --type Q8_0 2>/dev/null
$SP make-model -o "$W/draft.gguf" --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 2 2>/dev/null
PORT=$((20000 + RANDOM % 20000))
KEY=test-key
$SP serve -m "$W/main.gguf" --draft "$W/draft.gguf" --port $PORT --parallel 2 --queue 8 --api-key $KEY -c 2048 --max-body 65536 -t 2 \
  2>"$W/server.log" &
PID=$!
for i in $(seq 50); do curl -s "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
B="http://127.0.0.1:$PORT"
A="Authorization: Bearer $KEY"
req() { # method path body → "status body"
  curl -s -o "$W/body" -w "%{http_code}" -X "$1" -H "$A" -H "Content-Type: application/json" ${3:+--data-binary "$3"} "$B$2"
}
expect() { local want=$1 what=$2; shift 2; local got; got=$(req "$@"); if [ "$got" = "$want" ]; then ok; else bad "$what: got $got $(head -c 200 "$W/body")"; fi; }
expect 200 health GET /health
expect 200 models GET /v1/models
expect 200 completion POST /v1/completions '{"prompt":"Hello","max_tokens":4,"temperature":0}'
grep -q '"usage"' "$W/body" && grep -q '"kept_tokens"' "$W/body" && ok || bad "completion body has usage and specprefill"
expect 200 chat POST /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3}'
grep -q '"chat.completion"' "$W/body" && ok || bad "chat object"
expect 200 stream POST /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"stream":true}'
tail -c 20 "$W/body" | grep -q 'data: \[DONE\]' && ok || bad "stream ends with [DONE]"
expect 400 "bad JSON" POST /v1/completions '{"prompt":'
grep -q '"error"' "$W/body" && grep -q '"message"' "$W/body" && ok || bad "error shape"
expect 400 "wrong type" POST /v1/completions '{"prompt":"x","max_tokens":"many"}'
expect 400 "missing messages" POST /v1/chat/completions '{"prompt":"x"}'
expect 400 "n=2" POST /v1/completions '{"prompt":"x","n":2}'
expect 404 "unknown route" GET /v2/whatever
expect 405 "wrong method" GET /v1/completions
LONG=$(head -c 3000 /dev/zero | tr '\0' 'a')  # 3000 byte tokens > 2048
expect 400 "prompt too long" POST /v1/completions "{\"prompt\":\"$LONG\",\"max_tokens\":1}"
grep -q "longer than the context" "$W/body" && ok || bad "too-long message says so"
head -c 70000 /dev/zero | tr '\0' ' ' >"$W/big.json"
got=$(curl -s -o "$W/body" -w "%{http_code}" -H "$A" --data-binary @"$W/big.json" "$B/v1/completions"); [ "$got" = 413 ] && ok || bad "body over the limit: $got"
got=$(curl -s -o /dev/null -w "%{http_code}" "$B/v1/models"); [ "$got" = 401 ] && ok || bad "no key: $got"
got=$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer nope" "$B/v1/models"); [ "$got" = 401 ] && ok || bad "wrong key: $got"
expect 200 metrics GET /metrics
grep -q 'specprefill_requests_total{status="400"}' "$W/body" && grep -q "specprefill_ttft_seconds_bucket" "$W/body" && ok || bad "metrics content"
# a full queue answers 503 with Retry-After: fill 2 slots + 8 queued with long generations
fillers=()
for i in $(seq 10); do
  curl -s -o /dev/null -H "$A" --data-binary '{"prompt":"x","max_tokens":2000,"ignore_eos":true}' "$B/v1/completions" &
  fillers+=($!)
done
sleep 0.3
curl -s -D "$W/headers" -o /dev/null -H "$A" --data-binary '{"prompt":"x","max_tokens":1}' "$B/v1/completions"
grep -q "^HTTP/1.1 503" "$W/headers" && grep -qi "^Retry-After:" "$W/headers" && ok || bad "full queue: $(head -1 "$W/headers")"
# their clients go away: the running generations stop and the queued ones never start, so the
# slots are free again within seconds (instead of 10 × 2000 tokens later)
kill "${fillers[@]}" 2>/dev/null
for j in "${fillers[@]}"; do wait "$j" 2>/dev/null; done
freed=0
for i in $(seq 100); do
  curl -s -H "$A" "$B/metrics" >"$W/metrics"
  if grep -q "^specprefill_slots_busy 0" "$W/metrics" && grep -q "^specprefill_queue_depth 0" "$W/metrics"; then freed=1; break; fi
  sleep 0.1
done
[ $freed = 1 ] && ok || bad "slots still busy 10 s after their clients left: $(grep -E '^specprefill_(slots_busy|queue_depth) ' "$W/metrics" | tr '\n' ' ')"
# the official openai Python client and the load test (pinned, in a venv under the build folder)
if PY=$("$HERE/ref/venv.sh" "$VENV"); then
  if "$PY" "$HERE/server/client.py" "$B/v1" $KEY >"$W/client.log" 2>&1; then ok; else bad "openai client: $(tail -5 "$W/client.log")"; fi
  if timeout 300 "$PY" "$HERE/server/load.py" "$B/v1" $KEY $PID 200 8 >"$W/load.log" 2>&1; then ok; else bad "load test: $(tail -3 "$W/load.log")"; fi
  grep '^{' "$W/load.log"
else
  bad "the Python test clients could not be installed (tests/ref/venv.sh)"
fi
kill -0 $PID 2>/dev/null && ok || bad "server died"
# two slots under load generated side by side: some decode steps held both (batched)
curl -s -H "$A" "$B/metrics" >"$W/metrics"
batches=$(awk '/^specprefill_decode_batches_total /{print $2}' "$W/metrics")
rows=$(awk '/^specprefill_decode_batch_rows_total /{print $2}' "$W/metrics")
[ -n "$batches" ] && [ -n "$rows" ] && [ "$batches" -gt 0 ] && [ "$rows" -gt "$batches" ] && ok || bad "batched decode: $batches steps, $rows rows"
echo "decode steps: $batches, rows: $rows"
kill -TERM $PID
for i in $(seq 50); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $PID 2>/dev/null; then bad "no graceful shutdown"; kill -9 $PID; else wait $PID && ok || bad "exit status after SIGTERM"; fi
grep -q "shutting down" "$W/server.log" && ok || bad "shutdown logged"
# a real instruct model behind the server answers the openai client
REAL=${SP_REAL_MODEL:-$HERE/../models-big/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -f "$REAL" ] && [ -n "${PY:-}" ]; then
  PORT2=$((20000 + RANDOM % 20000))
  $SP serve -m "$REAL" --port $PORT2 -c 1024 -t 2 2>"$W/server-real.log" &
  PID2=$!
  for i in $(seq 100); do curl -s "http://127.0.0.1:$PORT2/health" >/dev/null && break; sleep 0.1; done
  if "$PY" "$HERE/server/real.py" "http://127.0.0.1:$PORT2/v1" >"$W/real.log" 2>&1; then ok; else bad "real model: $(tail -4 "$W/real.log")"; fi
  grep '^answer' "$W/real.log"
  kill -TERM $PID2; wait $PID2 2>/dev/null
else
  echo "skipped: the real model (run scripts/get-models.sh)"; skip=1
fi
echo "$pass passed, $fail failed, ${skip:-0} skipped"
[ $fail -eq 0 ]
