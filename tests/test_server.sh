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
# Starts a server on a free port below Linux's ephemeral range (32768+, where clients' ports are
# drawn), trying another port when it cannot bind; sets PORT and PID. start_server LOG ARGS...
start_server() {
  local log=$1; shift
  for attempt in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 12000))
    $SP serve --port $PORT "$@" 2>"$log" &
    PID=$!
    for i in $(seq 600); do  # up to 60 s: a sanitizer build loads slowly
      curl -s "http://127.0.0.1:$PORT/health" >/dev/null && return 0
      kill -0 $PID 2>/dev/null || break  # it exited: the port was taken
      sleep 0.1
    done
    kill $PID 2>/dev/null; wait $PID 2>/dev/null
  done
  return 1
}
# waits up to 30 s for /metrics to show a gauge's value: wait_metric NAME VALUE
wait_metric() {
  for i in $(seq 300); do
    curl -s -H "$A" "$B/metrics" >"$W/metrics"
    grep -q "^$1 $2\$" "$W/metrics" && return 0
    sleep 0.1
  done
  return 1
}
KEY=test-key
A="Authorization: Bearer $KEY"
start_server "$W/server.log" -m "$W/main.gguf" --draft "$W/draft.gguf" --parallel 2 --queue 8 --api-key $KEY -c 2048 --max-body 65536 -t 2 \
  --read-timeout 3 --shutdown-timeout 3 --cache-ram 16 \
  || { echo "FAIL: the server did not start: $(tail -3 "$W/server.log")"; echo "0 passed, 1 failed"; exit 1; }
B="http://127.0.0.1:$PORT"
req() { # method path body → "status body"
  curl -s -o "$W/body" -w "%{http_code}" -X "$1" -H "$A" -H "Content-Type: application/json" ${3:+--data-binary "$3"} "$B$2"
}
expect() { local want=$1 what=$2; shift 2; local got; got=$(req "$@"); if [ "$got" = "$want" ]; then ok; else bad "$what: got $got $(head -c 200 "$W/body")"; fi; }
expect 200 health GET /health
python3 -c "import json,sys; h=json.load(open(sys.argv[1])); assert h == {'status': 'ok', 'replica': '127.0.0.1:$PORT', 'slots': 2, 'slots_busy': 0, 'queued': 0}, h" \
  "$W/body" && ok || bad "/health readiness: $(cat "$W/body")"
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
python3 "$HERE/server/check_metrics.py" "$W/body" >"$W/lint.log" && ok || bad "metrics lint (promtool's rules): $(head -5 "$W/lint.log")"
# a strict front door: a NUL (it would cut the prompt short), bytes after the JSON value, a raw
# control character in a string and a stop string past 256 bytes are 400s; /health takes GET
# only; the Bearer scheme matches in any case; error codes are OpenAI's (a string or null)
expect 400 "\\u0000 in a string" POST /v1/completions '{"prompt":"a\u0000b"}'
grep -q "NUL" "$W/body" && grep -q '"code":null' "$W/body" && ok || bad "NUL message and code: $(head -c 200 "$W/body")"
expect 400 "trailing bytes" POST /v1/completions '{"prompt":"a","max_tokens":1} {"prompt":"b"}'
expect 400 "raw control character" POST /v1/completions "$(printf '{"prompt":"a\tb","max_tokens":1}')"
expect 400 "long stop string" POST /v1/completions "{\"prompt\":\"a\",\"stop\":\"$(head -c 300 /dev/zero | tr '\0' s)\"}"
expect 405 "POST /health" POST /health
got=$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: bearer $KEY" "$B/v1/models"); [ "$got" = 200 ] && ok || bad "lowercase bearer: $got"
curl -sv -o /dev/null -H "$A" "$B/health" "$B/v1/models" 2>&1 | grep -q "Re-using existing connection" && ok || bad "keep-alive on GET"
got=$(curl -s -o "$W/body" -w "%{http_code}" "$B/v1/models"); [ "$got" = 401 ] && grep -q '"code":"invalid_api_key"' "$W/body" && ok || bad "401 code: $(head -c 200 "$W/body")"
# 140 half-sent requests from one address: past --conn-per-ip its connections are refused, so
# another address still gets /health at once; --read-timeout (3 s) closes the half-sent ones
python3 - "$PORT" 3 >"$W/halfsent.log" 2>&1 <<'PYEOF' && ok || bad "half-sent requests: $(tail -3 "$W/halfsent.log")"
import socket, subprocess, sys, time
port, read_timeout = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(140):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        held.append(s)
    except OSError:
        pass
t0 = time.monotonic()
health = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", "--interface", "127.0.0.2",
                         f"http://127.0.0.1:{port}/health"], capture_output=True, text=True).stdout
health_s = time.monotonic() - t0
closed = 0
deadline = time.monotonic() + read_timeout + 5
for s in held:
    s.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        closed += s.recv(1) == b""
    except ConnectionResetError:
        closed += 1
    except OSError:
        pass
print(f"{len(held)} half-sent connections; /health from another address: {health} in {health_s:.2f} s; closed by the server: {closed} within {time.monotonic() - t0:.1f} s")
sys.exit(0 if health == "200" and health_s < 2 and closed == len(held) else 1)
PYEOF
cat "$W/halfsent.log"
# speculative decoding (on by default with a draft of the same tokenizer): greedy text is plain
# decoding's; usage (OpenAI's prediction-token counts) and the specprefill object report the
# draft's proposals; two requests at once (batched steps while both generate, speculative steps
# for the one left alone) give the same text too; bad values are a 400. The prompt cache is off
# for these: with it, a request whose prompt the slot holds computes its last prompt token alone
# (decode form) where the first computed it with the rest (prefill form), in another summation
# order — on this random model's near ties that can change the text (an AVX2 Zen 3 did); the
# cache has its own test below
SDQ='"prompt":"The ship Aurora","temperature":0,"ignore_eos":true,"cache_prompt":false'
for sd in true false; do expect 200 "speculative decoding $sd" POST /v1/completions "{$SDQ,\"max_tokens\":24,\"speculative_decoding\":$sd}"; cp "$W/body" "$W/sd-$sd.json"; done
curl -s -o "$W/sd-a.json" -H "$A" --data-binary "{$SDQ,\"max_tokens\":24}" "$B/v1/completions" & sda=$!
curl -s -o "$W/sd-b.json" -H "$A" --data-binary "{$SDQ,\"max_tokens\":12}" "$B/v1/completions"; wait $sda
python3 -c "
import json
on, off, a, b = (json.load(open('$W/sd-%s.json' % k)) for k in ('true', 'false', 'a', 'b'))
text = off['choices'][0]['text']
assert on['choices'][0]['text'] == text and a['choices'][0]['text'] == text, (on, off, a)
assert text.startswith(b['choices'][0]['text']) and b['usage']['completion_tokens'] == 12, b
sd = on['specprefill']['speculative_decoding']
assert sd['enabled'] and sd['drafted_tokens'] > 0 and 0 <= sd['accepted_tokens'] <= sd['drafted_tokens'], sd
d = on['usage']['completion_tokens_details']
assert d['accepted_prediction_tokens'] == sd['accepted_tokens'] and d['rejected_prediction_tokens'] == sd['drafted_tokens'] - sd['accepted_tokens'], d
sd = off['specprefill']['speculative_decoding']
assert not sd['enabled'] and sd['drafted_tokens'] == 0 and sd['decode_steps'] == 23 and 'completion_tokens_details' not in off['usage'], off
" 2>"$W/sd.err" && ok || bad "speculative decoding in the server: $(tail -2 "$W/sd.err")"
expect 400 "speculative_decoding draft_max 4" POST /v1/completions '{"prompt":"x","speculative_decoding":{"draft_max":4}}'
grep -q "draft_max" "$W/body" && ok || bad "the 400 names draft_max: $(head -c 200 "$W/body")"
curl -s -H "$A" "$B/metrics" >"$W/metrics"
drafted=$(awk '/^specprefill_draft_tokens_total /{print $2}' "$W/metrics")
[ -n "$drafted" ] && [ "$drafted" -gt 0 ] && grep -q "^specprefill_draft_acceptance_ratio " "$W/metrics" && ok || bad "draft metrics: $drafted"
# a full queue answers 503 with Retry-After: fill 2 slots + 8 queued with long generations
fillers=()
for i in $(seq 10); do
  curl -s -o /dev/null -H "$A" --data-binary '{"prompt":"x","max_tokens":2000,"ignore_eos":true}' "$B/v1/completions" &
  fillers+=($!)
done
wait_metric specprefill_queue_depth 8 || bad "the fillers did not fill the queue: $(grep -E '^specprefill_(slots_busy|queue_depth) ' "$W/metrics" | tr '\n' ' ')"
curl -s -D "$W/headers" -o /dev/null -H "$A" --data-binary '{"prompt":"x","max_tokens":1}' "$B/v1/completions"
grep -q "^HTTP/1.1 503" "$W/headers" && grep -qi "^Retry-After:" "$W/headers" && ok || bad "full queue: $(head -1 "$W/headers")"
# their clients go away: the running generations stop and the queued ones never start, so the
# slots are free again within seconds (instead of 10 × 2000 tokens later)
kill "${fillers[@]}" 2>/dev/null
for j in "${fillers[@]}"; do wait "$j" 2>/dev/null; done
wait_metric specprefill_slots_busy 0 && wait_metric specprefill_queue_depth 0 && ok \
  || bad "slots still busy 30 s after their clients left: $(grep -E '^specprefill_(slots_busy|queue_depth) ' "$W/metrics" | tr '\n' ' ')"
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
# SIGTERM under load (drain): no new requests; the queued one is answered 503 with a JSON error;
# the running generations get --shutdown-timeout (3 s) to finish, then end as if max_tokens were
# reached (never a finish_reason OpenAI does not have); the server exits
for i in 1 2; do curl -s -o "$W/term$i.out" -H "$A" --data-binary '{"prompt":"x","max_tokens":1900,"ignore_eos":true,"stream":true}' "$B/v1/completions" & done
wait_metric specprefill_slots_busy 2 || bad "the two generations did not start"
curl -s -o "$W/term-queued.out" -w "%{http_code}" -H "$A" --data-binary '{"prompt":"x","max_tokens":5}' "$B/v1/completions" >"$W/term-queued.code" &
wait_metric specprefill_queue_depth 1 || bad "the third request did not queue"
# readiness turns false at once: /health on a connection already open answers 503 "draining"
python3 - "$PORT" "$PID" >"$W/drain-health.log" 2>&1 <<'PYEOF' && ok || bad "/health while draining: $(tail -2 "$W/drain-health.log")"
import http.client, json, os, signal, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/health"); r = c.getresponse(); before = (r.status, json.loads(r.read()))
os.kill(int(sys.argv[2]), signal.SIGTERM)
time.sleep(0.3)
c.request("GET", "/health"); r = c.getresponse(); after = (r.status, json.loads(r.read()))
print(before, after)
sys.exit(0 if before[0] == 200 and before[1]["slots_busy"] == 2 and after[0] == 503 and after[1]["status"] == "draining" else 1)
PYEOF
for i in $(seq 100); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $PID 2>/dev/null; then bad "no graceful shutdown within 10 s under load"; kill -9 $PID; else wait $PID && ok || bad "exit status after SIGTERM"; fi
wait
grep -q "shutting down" "$W/server.log" && ok || bad "shutdown logged"
for i in 1 2; do tail -c 20 "$W/term$i.out" | grep -q 'data: \[DONE\]' && grep -q '"finish_reason":"length"' "$W/term$i.out" && ! grep -q cancelled "$W/term$i.out" && ok \
  || bad "a generation running at SIGTERM ends its stream: $(tail -c 200 "$W/term$i.out")"; done
[ "$(cat "$W/term-queued.code")" = 503 ] && grep -q "shutting down" "$W/term-queued.out" && grep -q '"error"' "$W/term-queued.out" && ok \
  || bad "a request queued at SIGTERM: $(cat "$W/term-queued.code") $(head -c 200 "$W/term-queued.out")"
# SpecPrefill's generation continues at the full prompt's length, in both front ends: the server's
# greedy answer with speculative prefill at keep 10 % equals `generate`'s (the bundled pair on the
# demo document: its answer goes wrong when decoding continues at any other position)
ROOT=$(cd "$HERE/.." && pwd)
if start_server "$W/server-spec.log" -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" -c 4096 -t 2; then
  python3 -c "import json,sys; print(json.dumps({'prompt': open(sys.argv[1]).read(), 'max_tokens': 24, 'temperature': 0,
    'speculative_prefill': {'keep_rate': 0.1}}))" "$ROOT/eval/demo-prompt.txt" >"$W/spec.json"
  curl -s --data-binary @"$W/spec.json" "http://127.0.0.1:$PORT/v1/completions" >"$W/spec-server.json"
  # a stop string is cut from the answer (" 24818" stops where "81" begins), whole and streamed;
  # the stream never shows its first character before knowing it is not a stop string
  for stream in false true; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.update(stop=['81'], stream=$([ $stream = true ] && echo True || echo False)); print(json.dumps(d))" \
      "$W/spec.json" >"$W/stop.json"
    curl -s --data-binary @"$W/stop.json" "http://127.0.0.1:$PORT/v1/completions" >"$W/stop-$stream.out"
  done
  python3 -c "
import json, sys
whole = json.load(open('$W/stop-false.out'))
pieces = [json.loads(l[6:]) for l in open('$W/stop-true.out') if l.startswith('data: {')]
streamed = ''.join(c['choices'][0]['text'] for c in pieces if c['choices'])
assert whole['choices'][0]['text'] == ' 24' and whole['choices'][0]['finish_reason'] == 'stop', whole
assert streamed == ' 24', streamed
assert not any('8' in c['choices'][0]['text'] for c in pieces if c['choices']), 'a piece showed the stop string'
" 2>"$W/stop.err" && ok || bad "stop strings in the server: $(tail -2 "$W/stop.err")"
  # and with speculative decoding off (on by default): the same answer
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.update(speculative_decoding=False); print(json.dumps(d))" "$W/spec.json" >"$W/nosd.json"
  curl -s --data-binary @"$W/nosd.json" "http://127.0.0.1:$PORT/v1/completions" >"$W/nosd-server.json"
  kill -TERM $PID; wait $PID 2>/dev/null
  python3 -c "
import json
on, off = json.load(open('$W/spec-server.json')), json.load(open('$W/nosd-server.json'))
assert on['choices'][0]['text'] == off['choices'][0]['text'], (on, off)
sd = on['specprefill']['speculative_decoding']
assert sd['enabled'] and sd['accepted_tokens'] > 0, sd
print('bundled pair in the server: %d of %d drafted tokens accepted, %.2f tokens per step' % (sd['accepted_tokens'], sd['drafted_tokens'], sd['tokens_per_step']))
" 2>"$W/nosd.err" && ok || bad "speculative decoding after speculative prefill (bundled pair): $(tail -2 "$W/nosd.err")"
  $SP generate -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" --keep 0.1 -f "$ROOT/eval/demo-prompt.txt" -n 24 --temp 0 -t 2 \
    >"$W/spec-cli.txt" 2>"$W/spec-cli.err"
  if python3 -c "
import json, sys
got = json.load(open('$W/spec-server.json'))
text, kept = got['choices'][0]['text'], got['specprefill']['kept_tokens']
cli = open('$W/spec-cli.txt').read()[:-1]  # generate ends its output with a newline
assert kept < got['usage']['prompt_tokens'] / 5, 'speculative prefill kept too much'
sys.exit(0 if text == cli and text.strip() else 1)"; then ok
  else bad "server and generate disagree after speculative prefill: $(head -c 400 "$W/spec-server.json") vs '$(head -c 200 "$W/spec-cli.txt")'"; fi
else
  bad "the second server did not start: $(tail -3 "$W/server-spec.log")"
fi
# the prompt cache on the bundled pair: follow-ups read only what is new (SpecPrefill-aware),
# requests go to the slot holding their conversation, a conversation set aside comes back from
# memory, a warm full prefill answers what a cold one answers, /metrics counts it
if start_server "$W/server-cache.log" -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" -c 4096 -t 2 --parallel 2 --cache-ram 64; then
  python3 "$HERE/server/prefix_cache.py" "http://127.0.0.1:$PORT" "$ROOT/eval/retrieval-2k-ci.jsonl" >"$W/cache.log" 2>&1 && ok \
    || bad "prompt cache: $(grep -v '^prompt cache' "$W/cache.log" | tail -6)"
  grep '^prompt cache' "$W/cache.log"
  kill -TERM $PID; wait $PID 2>/dev/null
else
  bad "the prompt cache's server did not start: $(tail -3 "$W/server-cache.log")"
fi
# every template family in tests/templates answers a chat request through the server (a tiny
# random model behind each); a template's own error is a 400 that names it
$SP make-model -o "$W/tiny.gguf" --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 2>/dev/null
CONV='{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"Bye"}],"max_tokens":2}'
served=0
for t in "$HERE"/templates/*.jinja; do
  if start_server "$W/server-tmpl.log" -m "$W/tiny.gguf" --chat-template-file "$t" -c 2048 -t 1; then
    got=$(curl -s -o "$W/tmpl.json" -w "%{http_code}" --data-binary "$CONV" "http://127.0.0.1:$PORT/v1/chat/completions")
    if [ "$got" = 200 ] && grep -q '"chat.completion"' "$W/tmpl.json"; then served=$((served + 1)); else bad "$(basename "$t"): $got $(head -c 200 "$W/tmpl.json")"; fi
    if [ $served -eq 1 ]; then # no draft: asking for speculative decoding is a 400 that says why
      got=$(curl -s -o "$W/tmpl.json" -w "%{http_code}" --data-binary '{"prompt":"x","speculative_decoding":true}' "http://127.0.0.1:$PORT/v1/completions")
      [ "$got" = 400 ] && grep -q "speculative decoding needs the server to run with --draft" "$W/tmpl.json" && ok || bad "speculative decoding without a draft: $got $(head -c 200 "$W/tmpl.json")"
    fi
    if [ "$(basename "$t")" = google-gemma-2-2b-it.jinja ]; then
      got=$(curl -s -o "$W/tmpl.json" -w "%{http_code}" --data-binary '{"messages":[{"role":"system","content":"S"},{"role":"user","content":"Hi"}]}' \
        "http://127.0.0.1:$PORT/v1/chat/completions")
      [ "$got" = 400 ] && grep -q "line 1: raise_exception: System role not supported" "$W/tmpl.json" && ok || bad "a template's refusal: $got $(head -c 300 "$W/tmpl.json")"
    fi
    kill -TERM $PID; wait $PID 2>/dev/null
  else
    bad "server with $(basename "$t") did not start: $(tail -2 "$W/server-tmpl.log")"
  fi
done
[ $served -eq "$(ls "$HERE"/templates/*.jinja | wc -l)" ] && ok || bad "only $served templates answered"
echo "chat templates served: $served"
# a real instruct model behind the server answers the openai client
REAL=${SP_REAL_MODEL:-$HERE/../models-big/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -f "$REAL" ] && [ -n "${PY:-}" ]; then
  if start_server "$W/server-real.log" -m "$REAL" -c 1024 -t 2; then
    if "$PY" "$HERE/server/real.py" "http://127.0.0.1:$PORT/v1" >"$W/real.log" 2>&1; then ok; else bad "real model: $(tail -4 "$W/real.log")"; fi
    grep '^answer' "$W/real.log"
    kill -TERM $PID; wait $PID 2>/dev/null
  else
    bad "the real model's server did not start: $(tail -3 "$W/server-real.log")"
  fi
else
  echo "skipped: the real model (run scripts/get-models.sh)"; skip=1
fi
echo "$pass passed, $fail failed, ${skip:-0} skipped"
[ $fail -eq 0 ]
