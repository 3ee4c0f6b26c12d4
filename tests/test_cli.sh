#!/usr/bin/env bash
# The command-line tool as a user meets it: each subcommand's happy path and its errors.
set -u
SP=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
expect_ok()   { local what=$1; shift; if "$@" >"$T/out" 2>"$T/err" && ! grep -qE "runtime error:|Sanitizer" "$T/err"; then ok; else bad "$what (exit $?): $(head -c 300 "$T/err")"; fi; }
expect_fail() { local what=$1 msg=$2; shift 2; "$@" >"$T/out" 2>"$T/err"; local rc=$?
  # an error path must be clean too: a sanitizer report there fails the test even with the right exit code
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q -- "$msg" "$T/err" && ! grep -qE "runtime error:|Sanitizer" "$T/err"; then ok
  else bad "$what: exit $rc, stderr: $(head -c 300 "$T/err")"; fi; }

expect_ok "help" "$SP" --help
# models the test writes: random weights, the bundled models' vocabulary (byte-level BPE, 1115 tokens)
for t in Q4_K_M Q8_0; do
  "$SP" make-model -o "$T/llama-$t.gguf" --type $t --vocab-from "$ROOT/models/main.gguf" --seed 5 2>/dev/null || bad "make-model $t"
done
expect_ok "make-model" "$SP" make-model -o "$T/tiny.gguf" --n-embd 128 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 256
expect_ok "info" "$SP" info "$T/tiny.gguf"
grep -q "architecture  llama" "$T/out" && ok || bad "info output"
expect_ok "generate" "$SP" generate -m "$T/tiny.gguf" -p "Hello there" -n 8 --temp 0
grep -q "TTFT" "$T/err" && ok || bad "generate prints timings"
expect_ok "generate --chat" "$SP" generate -m "$T/tiny.gguf" -p "Hi" --chat --system "Be brief" -n 4 --seed 3
for arch in qwen2 qwen3; do
  expect_ok "make-model $arch" "$SP" make-model --arch $arch --type Q8_0 -o "$T/$arch.gguf"
  expect_ok "generate $arch" "$SP" generate -m "$T/$arch.gguf" -p "abc" -n 3
done
expect_ok "greedy is deterministic" "$SP" generate -m "$T/llama-Q4_K_M.gguf" -p "The quick brown fox" -n 12 --temp 0
cp "$T/out" "$T/first"
"$SP" generate -m "$T/llama-Q4_K_M.gguf" -p "The quick brown fox" -n 12 --temp 0 -t 1 >"$T/second" 2>/dev/null
cmp -s "$T/first" "$T/second" && ok || bad "same greedy output with 1 thread and all threads"

# --stop: the bundled main answers the demo document " 24818"; the output ends where "81" begins
"$SP" generate -m "$ROOT/models/main.gguf" -f "$ROOT/eval/demo-prompt.txt" -n 12 --temp 0 --stop 81 >"$T/out" 2>"$T/err"
[ "$(cat "$T/out")" = " 24" ] && grep -q "stopped at a stop string" "$T/err" && ok || bad "--stop cuts the output: '$(cat "$T/out")'"

# generate with speculative prefill: the bundled pair answers the demo document at keep 10 %; the
# switches each do what they say
DEMO=(-m "$ROOT/models/main.gguf" -f "$ROOT/eval/demo-prompt.txt" -n 8 --temp 0)
"$SP" make-model -o "$T/draft-other.gguf" --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 9 2>/dev/null  # byte-level vocabulary
expect_ok "generate --draft" "$SP" generate "${DEMO[@]}" --draft "$ROOT/models/draft.gguf" --keep 0.1 --explain "$T/explain.html"
[ "$(cat "$T/out")" = " 24818" ] && grep -qE "specprefill: kept [0-9]+ of 2182 prompt tokens \((9|10|11)\.[0-9]%\)" "$T/err" && ok || bad "generate --draft --keep 0.1: '$(cat "$T/out")' $(head -c 200 "$T/err")"
grep -q "<h1>Speculative prefill</h1>" "$T/explain.html" && [ "$(grep -o 'class="k"' "$T/explain.html" | wc -l)" -gt 100 ] && [ "$(grep -o 'class="d"' "$T/explain.html" | wc -l)" -gt 1500 ] && ok || bad "--explain writes the kept and dropped tokens"
expect_ok "generate --no-spec" "$SP" generate "${DEMO[@]}" --draft "$ROOT/models/draft.gguf" --no-spec
[ "$(cat "$T/out")" = " 24818" ] && ! grep -q "specprefill: kept" "$T/err" && ok || bad "--no-spec runs a full prefill"
expect_ok "generate --keep-mass" "$SP" generate "${DEMO[@]}" --draft "$ROOT/models/draft.gguf" --keep-mass 0.9
grep -q "specprefill: kept" "$T/err" && ! grep -q "kept 2182 of 2182" "$T/err" && ok || bad "--keep-mass keeps a part: $(head -c 200 "$T/err")"
expect_ok "generate --self-spec" "$SP" generate "${DEMO[@]}" --self-spec --keep 0.5
grep -qE "specprefill: kept [0-9]+ of 2182" "$T/err" && ok || bad "--self-spec runs speculative prefill"
expect_fail "a draft of another vocabulary" "tokenizer differs" "$SP" generate "${DEMO[@]}" --draft "$T/draft-other.gguf"
expect_ok "generate --draft-any-vocab" "$SP" generate "${DEMO[@]}" --draft "$T/draft-other.gguf" --draft-any-vocab --keep 0.3
grep -qE "specprefill: kept [0-9]+ of 2182" "$T/err" && ok || bad "--draft-any-vocab scores through bytes"
# speculative decoding (greedy, with the draft): the same text as one token at a time — after a
# speculative prefill (where decoding continues at the prompt's full length) and after a full one
for prefill in "--keep 0.1" "--no-spec"; do
"$SP" generate -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" $prefill -f "$ROOT/eval/demo-prompt.txt" -n 32 --temp 0 \
  --repeat-penalty 1.2 >"$T/sd.out" 2>"$T/sd.err"
"$SP" generate -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" $prefill -f "$ROOT/eval/demo-prompt.txt" -n 32 --temp 0 \
  --repeat-penalty 1.2 --no-spec-decode >"$T/plain.out" 2>"$T/plain.err"
cmp -s "$T/sd.out" "$T/plain.out" && grep -q "speculative decoding: [0-9]* of [0-9]* drafted tokens accepted" "$T/sd.err" \
  && ! grep -q "speculative decoding" "$T/plain.err" && ok || bad "speculative decoding ($prefill) changes the text or says nothing: $(head -c 200 "$T/sd.out") vs $(head -c 200 "$T/plain.out")"
done
# sampling (temperature 0.8, the default): plain decoding (a seed fixes the text), unless asked
expect_ok "generate --draft sampling" "$SP" generate -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" -f "$ROOT/eval/demo-prompt.txt" -n 24 --seed 7
! grep -q "speculative decoding:" "$T/err" && ok || bad "sampling decodes plainly by default"
expect_ok "generate --draft --spec-decode sampling" "$SP" generate -m "$ROOT/models/main.gguf" --draft "$ROOT/models/draft.gguf" -f "$ROOT/eval/demo-prompt.txt" -n 24 --seed 7 --spec-decode
grep -q "speculative decoding: [0-9]* of [0-9]* drafted tokens accepted" "$T/err" && ok || bad "speculative decoding runs when sampling: $(tail -c 300 "$T/err")"
expect_fail "--spec-draft-min above max" "exceeds --spec-draft-max" "$SP" generate "${DEMO[@]}" --draft "$ROOT/models/draft.gguf" --spec-draft-min 3 --spec-draft-max 2
expect_fail "--explain without speculative prefill" "needs speculative prefill" "$SP" generate "${DEMO[@]}" --explain "$T/x.html"

# quantize: every matrix to the type asked for, named in info; a type it cannot write is refused
expect_ok "quantize" "$SP" quantize "$T/llama-Q8_0.gguf" "$T/q4.gguf" Q4_0
"$SP" info "$T/q4.gguf" | grep -E "^tensor types" | grep -q "Q4_0×" && ok || bad "quantize writes Q4_0 matrices"
expect_ok "generate on the quantized model" "$SP" generate -m "$T/q4.gguf" -p "abc" -n 2
# --repack: the Q4_0 matrices rewritten at load where the kernels have the interleaved form (info
# says how many), and the same text greedily
expect_ok "info --repack" "$SP" info "$T/q4.gguf" --repack
grep -qE "^repacked +(14 matrices|0 matrices .* for the (scalar|neon))" "$T/out" && ok || bad "info --repack: $(grep repacked "$T/out")"
expect_ok "generate (the file's layout)" "$SP" generate -m "$T/q4.gguf" -p "abc" -n 8 --temp 0
cp "$T/out" "$T/gen-file-layout"
expect_ok "generate --repack" "$SP" generate -m "$T/q4.gguf" -p "abc" -n 8 --temp 0 --repack --no-mmap
cmp -s "$T/out" "$T/gen-file-layout" && ok || bad "generate --repack: '$(cat "$T/out")' against the file's layout's '$(cat "$T/gen-file-layout")'"
expect_fail "quantize to an unknown type" "cannot quantize to 'Q3_X'" "$SP" quantize "$T/llama-Q8_0.gguf" "$T/q.gguf" Q3_X

# template: a conversation rendered by the model's template, a built-in, or a file; errors name the line
echo '[{"role":"system","content":"S"},{"role":"user","content":"Hi"}]' >"$T/msgs.json"
expect_ok "template -m" "$SP" template -m "$ROOT/models/main.gguf" --messages "$T/msgs.json" --add-generation-prompt
[ "$(cat "$T/out")" = "$(printf '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n')" ] \
  && ok || bad "template renders the model's own: $(cat "$T/out")"
expect_ok "template --chat-template" "$SP" template --chat-template chatml --messages "$T/msgs.json"
[ "$(cat "$T/out")" = "$(printf '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>')" ] && ok || bad "built-in chatml: $(cat "$T/out")"
printf '{%% for m in messages %%}{{ m.role | upper }}:{{ m.content }}|{%% endfor %%}{{ x }}' >"$T/t.jinja"
expect_ok "template --file --var" "$SP" template --file "$T/t.jinja" --messages "$T/msgs.json" --var 'x=[1, "a"]'
[ "$(cat "$T/out")" = "SYSTEM:S|USER:Hi|[1, 'a']" ] && ok || bad "template --file: $(cat "$T/out")"
printf 'one\n{{ raise_exception("no") }}' >"$T/bad.jinja"
expect_fail "template raise_exception" "line 2: raise_exception: no" "$SP" template --file "$T/bad.jinja" --messages "$T/msgs.json"
expect_fail "template bad messages" "JSON" "$SP" template --file "$T/t.jinja" --messages "$T/t.jinja"
expect_fail "generate --chat-template unknown" "no built-in chat template 'nope'" "$SP" generate -m "$T/tiny.gguf" -p x --chat-template nope
expect_ok "generate --chat-template-file" "$SP" generate -m "$T/tiny.gguf" -p "Hi" --chat-template-file "$T/t.jinja" -n 2

# tokenize / detokenize round trip
printf 'Hello wörld 👋 <|eot_id|>' >"$T/text"
expect_ok "tokenize" "$SP" tokenize -m "$ROOT/models/main.gguf" --parse-special <"$T/text"
grep -q "1112" "$T/out" && ok || bad "parse-special gives <|eot_id|>"
"$SP" detokenize -m "$ROOT/models/main.gguf" --render-special <"$T/out" >"$T/back" 2>&1
cmp -s "$T/text" "$T/back" && ok || bad "detokenize gives the text back"

# logits command: two batches into one sequence, the logits of the second
python3 -c "import json; print(json.dumps({'tokens': [list(range(40, 72)), list(range(72, 88))], 'positions': [list(range(32)), list(range(32, 48))], 'logits_batch': 1}))" >"$T/two.json"
expect_ok "logits" "$SP" logits -m "$T/llama-Q8_0.gguf" --case "$T/two.json"
python3 -c "import json,sys; d=json.load(open('$T/out')); assert len(d['logits'])==16 and len(d['logits'][0])==1115" && ok || bad "logits JSON shape"
cp "$T/out" "$T/logits-mapped"
expect_ok "logits --no-mmap" "$SP" logits -m "$T/llama-Q8_0.gguf" --case "$T/two.json" --no-mmap
cmp -s "$T/out" "$T/logits-mapped" && ok || bad "the model read into memory (--no-mmap) gives the mapped file's logits"
# and speculative prefill with both files read: the demo's answer
expect_ok "generate --draft --no-mmap" "$SP" generate "${DEMO[@]}" --draft "$ROOT/models/draft.gguf" --keep 0.1 --no-mmap
[ "$(cat "$T/out")" = " 24818" ] && ok || bad "generate --draft --no-mmap: '$(cat "$T/out")'"

# eval on two random models: every method runs and reports
printf '{"prompt": "The code of Ann is 123. The sky is blue. Question: What is the code of Ann?\\nAnswer:", "answer": "123"}\n%.0s' 1 2 3 >"$T/task.jsonl"
"$SP" make-model -o "$T/draft.gguf" --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --seed 9 2>/dev/null
expect_ok "eval" "$SP" eval -m "$T/tiny.gguf" --draft "$T/draft.gguf" --task "$T/task.jsonl" --chunk 4 --keep 0.2,0.5 -o "$T/ev"
for m in "full prefill" "SpecPrefill (draft)" "self-speculation" "oracle (main's attention)" "adaptive" "random chunks" "recency" "uniform stride" "first + last"; do
  grep -q "| $m" "$T/out" || bad "eval reports $m"
done
[ -s "$T/ev.json" ] && [ -s "$T/ev-accuracy.svg" ] && [ -s "$T/ev-ttft.svg" ] && ok || bad "eval writes JSON and SVG"
# --merge reads JSON from outside: damaged copies of a run's JSON (cut short, keys gone, values of
# the wrong kind or out of range) get an error or a report, never a crash (this runs under ASan+UBSan)
expect_ok "eval --merge" "$SP" eval --merge "$T/ev.json"
grep -q "| adaptive (keep-mass) | mass 0.90 |" "$T/out" && ok || bad "eval --merge reports every method"
python3 - "$T/ev.json" "$T/damaged" <<'PYEOF'
import json, os, random, sys
text = open(sys.argv[1]).read()
js = json.loads(text)
os.makedirs(sys.argv[2], exist_ok=True)
out = [text[:n] for n in range(0, len(text), max(1, len(text) // 40))]
r = random.Random(5)
def walk(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items(): yield from walk(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from walk(v, path + (i,))
for path in list(walk(js))[1:]:
    for bad in ("drop", "x", None, -1, 1e300, [], {}, 2**40):
        if r.random() > 0.25: continue
        d = json.loads(text)
        parent = d
        for p in path[:-1]: parent = parent[p]
        if bad == "drop": parent.pop(path[-1]) if isinstance(parent, dict) else parent.pop(path[-1])
        else: parent[path[-1]] = bad
        out.append(json.dumps(d))
for i, t in enumerate(out): open(f"{sys.argv[2]}/{i}.json", "w").write(t)
js["skip"] = 1000  # another part of the same evaluation: the damaged copy merged after it
open(f"{sys.argv[2]}/../ev-part2.json", "w").write(json.dumps(js))
PYEOF
crashed=0 n_damaged=0
for f in "$T"/damaged/*.json; do
  n_damaged=$((n_damaged + 1))
  for first in "" "$T/ev-part2.json"; do
    "$SP" eval ${first:+--merge "$first"} --merge "$f" >/dev/null 2>"$T/err"; rc=$?
    if [ $rc -gt 1 ] || grep -q "runtime error\|Sanitizer" "$T/err"; then crashed=$((crashed + 1)); echo "  --merge $first $f: exit $rc"; head -3 "$T/err"; fi
  done
done
[ $crashed -eq 0 ] && [ $n_damaged -gt 100 ] && ok || bad "eval --merge on $n_damaged damaged files: $crashed crashed"
# documents with a "family": one row per family, counted right
printf '{"family": "a", "prompt": "x y z. Answer:", "answer": "1"}
{"family": "b", "prompt": "x y. Answer:", "answer": "2"}
{"family": "a", "prompt": "z. Answer:", "answer": "3"}
' >"$T/fam.jsonl"
expect_ok "eval by family" "$SP" eval -m "$T/tiny.gguf" --draft "$T/draft.gguf" --task "$T/fam.jsonl" --methods full,spec --keep 0.5
grep -q "^| a | 2 |" "$T/out" && grep -q "^| b | 1 |" "$T/out" && ok || bad "eval groups by family"
# eval's checks: a failing one exits 1; one whose method does not run is an error, not a pass
expect_fail "eval: a check fails" "check failed: full prefill" "$SP" eval -m "$T/tiny.gguf" --task "$T/task.jsonl" --methods full --min-accuracy 0.9
[ "$("$SP" eval -m "$T/tiny.gguf" --task "$T/task.jsonl" --methods full --min-accuracy 0.9 >/dev/null 2>&1; echo $?)" = 1 ] && ok || bad "eval exits 1 when a check fails"
expect_fail "eval: spec check without a draft" "need --draft" "$SP" eval -m "$T/tiny.gguf" --task "$T/task.jsonl" --min-spec-ratio 5
expect_fail "eval: spec accuracies per keep rate" "one value per --keep" "$SP" eval -m "$T/tiny.gguf" --draft "$T/draft.gguf" --task "$T/task.jsonl" --keep 0.2,0.5 --min-spec-accuracy 0.5
expect_fail "eval: --check-keep not a keep rate" "not one of the --keep rates" "$SP" eval -m "$T/tiny.gguf" --draft "$T/draft.gguf" --task "$T/task.jsonl" --keep 0.2,0.5 --min-spec-ratio 0.5
echo '{"prompt": 1}' >"$T/badtask.jsonl"
expect_fail "bad task file" "needs string" "$SP" eval -m "$T/tiny.gguf" --task "$T/badtask.jsonl"
expect_fail "eval: --skip past the last document" "hold no documents after the --skip" "$SP" eval -m "$T/tiny.gguf" --task "$T/task.jsonl" --skip 3

# bench: llama-bench-like rows, and several sequences decoded together (--parallel)
expect_ok "bench" "$SP" bench -m "$T/tiny.gguf" -p 16 -n 4 -r 1 --parallel 1,3 -o json
for t in pp16 tg4 tg4x1 tg4x3; do grep -q "\"test\": \"$t\"" "$T/out" && ok || bad "bench row $t"; done
expect_ok "bench --ttft" "$SP" bench -m "$T/tiny.gguf" --draft "$T/draft.gguf" --ttft 64,128 --keep 0.5 -p 0 -n 0 -r 1
[ "$(grep -cE '^\| full prefill \| (64|128) \| 1.0 \| (64|128) \|' "$T/out")" = 2 ] && [ "$(grep -cE '^\| specprefill \(draft\) \| (64|128) \| 0.50 \| (33|65) \|' "$T/out")" = 2 ] \
  && ok || bad "bench --ttft rows: $(cat "$T/out")"
expect_ok "bench --ttft json" "$SP" bench -m "$T/tiny.gguf" --draft "$T/draft.gguf" --ttft 64,128 --keep 0.5 -p 0 -n 0 -r 1 -o json
python3 -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["results"] if r["test"] == "ttft"]
spec = [r for r in rows if r["method"] != "full"]
assert len(rows) == 4 and len(spec) == 2, rows
assert all(r["peak_rss_mib"] > 0 for r in rows), rows  # each measurement its own peak (Linux)
assert all(0 < r["draft_share"] <= 1 and r["ideal"] > 0 for r in spec), spec
' "$T/out" && ok || bad "bench --ttft json: draft share, ideal, peak RSS: $(cat "$T/out")"
expect_fail "bench --parallel 0" "bad value" "$SP" bench -m "$T/tiny.gguf" --parallel 0
# --contend: busy processes during the measurement, gone afterwards (none of the bench's children is left)
"$SP" bench -m "$T/tiny.gguf" -p 16 -n 4 -r 1 --contend 2 >"$T/out" 2>"$T/err" & bpid=$!
wait $bpid && grep -q "| pp16 |" "$T/out" && [ -z "$(pgrep -P $bpid)" ] && ! pgrep -f "bench -m $T/tiny.gguf -p 16 -n 4 -r 1 --contend" >/dev/null \
  && ok || bad "bench --contend: $(cat "$T/err")"
# bench-serve: a server it starts itself (the bundled pair), Poisson arrivals at two rates, full
# prefill and SpecPrefill; every request answered, the rate within the target found, the plot written
for try in 1 2 3; do
  port=$((20000 + RANDOM % 12000))
  "$SP" bench-serve --serve "-m $ROOT/models/main.gguf --draft $ROOT/models/draft.gguf -c 4096 -t 2 --queue 32" --port $port \
    --prompts "$ROOT/eval/retrieval-2k-ci.jsonl" -n 4 --rates 2,8 --max-tokens 3 --slo-ttft 60 -o json --svg "$T/bs.svg" >"$T/out" 2>"$T/err" && break
done
python3 -c "
import json, sys
r = json.load(open('$T/out'))
assert [m['mode'] for m in r['modes']] == ['full', 'specprefill'], r
for m in r['modes']:
    assert [x['rate'] for x in m['rates']] == [2, 8] and all(x['done'] == 4 and x['failed'] == 0 for x in m['rates']), m
    assert m['max_rate_within_slo'] == 8 and all(x['ttft_s'][0] <= x['ttft_s'][1] <= x['ttft_s'][2] for x in m['rates']), m
" 2>"$T/bs.err" && grep -q "<polyline" "$T/bs.svg" && ok || bad "bench-serve: $(tail -2 "$T/bs.err") $(head -c 300 "$T/err")"
expect_fail "bench-serve without prompts" "prompts FILE.jsonl is required" "$SP" bench-serve
expect_fail "bench-serve, nobody listening" "no request succeeded" "$SP" bench-serve --url http://127.0.0.1:1 --prompts "$ROOT/eval/retrieval-2k-ci.jsonl" -n 1 --rates 1
expect_fail "bench-serve, a URL it cannot use" "must be http://HOST:PORT" "$SP" bench-serve --url localhost:80 --prompts "$ROOT/eval/retrieval-2k-ci.jsonl"
# bench --gemm: one row per token count (-p)
expect_ok "bench --gemm" "$SP" bench --gemm F16 -t 1 -r 1 -p 5,70
[ "$(grep -c '^| F16 | 2048 | 8192 | \(5\|70\) |' "$T/out")" = 2 ] && ok || bad "bench --gemm rows: $(cat "$T/out")"
expect_fail "bench --gemm -p 0" "token count" "$SP" bench --gemm F16 -p 0
expect_fail "bench --gemm bad type" "cannot make" "$SP" bench --gemm NOPE
# bench --attention: one row per depth and token count, F16 and F32 caches; shapes it cannot take refused
expect_ok "bench --attention" "$SP" bench --attention 6/2/32 -d 0,100 -p 9,40 -t 1 -r 1
[ "$(grep -c '^| 6 | 2 | 32 | \(0\|100\) | \(9\|40\) | [a-z0-9-]* | 1 | [0-9.]* ± [0-9.]* |$' "$T/out")" = 4 ] && ok || bad "bench --attention rows: $(cat "$T/out")"
expect_ok "bench --attention, f32 cache" "$SP" bench --attention 4/4 -p 20 --kv-type f32 -r 1
[ "$(grep -c '^| 4 | 4 | 64 | 0 | 20 |' "$T/out")" = 1 ] && ok || bad "bench --attention f32: $(cat "$T/out")"
expect_fail "bench --attention 32/7" "multiple of the KV heads" "$SP" bench --attention 32/7 -p 8
expect_fail "bench --attention 8/2/x" "HEADS/KV_HEADS" "$SP" bench --attention 8/2/x -p 8
expect_fail "bench --attention -p 0" "token count" "$SP" bench --attention 8/2 -p 0

# errors: clear message, non-zero exit, no crash
expect_fail "missing model" "cannot open" "$SP" info "$T/nope.gguf"
head -c 5000 "$T/llama-Q8_0.gguf" >"$T/trunc.gguf"
expect_fail "truncated model" "more than the file holds" "$SP" info "$T/trunc.gguf"
printf 'not a gguf file at all, just text' >"$T/text.gguf"
expect_fail "not gguf" "not a GGUF" "$SP" info "$T/text.gguf"
printf 'bad \xff utf8' >"$T/bad.txt"
expect_fail "invalid UTF-8 prompt" "invalid UTF-8" "$SP" generate -m "$T/tiny.gguf" -f "$T/bad.txt" -n 2
expect_fail "unknown option" "unknown option" "$SP" generate -m "$T/tiny.gguf" -p x --frobnicate
expect_fail "bad number" "bad value" "$SP" generate -m "$T/tiny.gguf" -p x -n many
expect_fail "unknown command" "unknown command" "$SP" frobnicate
expect_fail "unknown kernel set" "not available here" env SPECPREFILL_ISA=avx9 "$SP" info "$ROOT/models/main.gguf"
expect_fail "bad SPECPREFILL_F16" "bf16' or 'exact" env SPECPREFILL_F16=yes "$SP" info "$ROOT/models/main.gguf"
SPECPREFILL_ISA=scalar "$SP" info "$ROOT/models/main.gguf" | grep -q "kernels scalar" && ok || bad "SPECPREFILL_ISA=scalar selects the scalar set"
expect_fail "unknown template" "llama3" "$SP" generate -m "$T/tiny.gguf" -p x --chat-template nope
expect_fail "prompt too long" "exceed the context" "$SP" generate -m "$T/tiny.gguf" -p "a b c d e f g h" -c 4 -n 1
echo '{"tokens": [[1, 2]], "positions": [[0]]}' >"$T/case.json"
expect_fail "inconsistent case" "equally many" "$SP" logits -m "$T/llama-Q8_0.gguf" --case "$T/case.json"
echo '[1, 99999]' | { "$SP" detokenize -m "$T/llama-Q8_0.gguf" >"$T/out" 2>"$T/err"; rc=$?; [ $rc -eq 1 ] && grep -q "not a token id" "$T/err" && ok || bad "detokenize bad id"; }


# the option parser (tools/options.c): every command's --help, its forms and its errors
for c in generate serve eval bench info template tokenize detokenize logits quantize convert make-model; do
  expect_ok "$c --help" "$SP" $c --help
  grep -q "^usage: specprefill $c" "$T/out" && ok || bad "$c --help prints its usage"
done
"$SP" generate --keep 0.5 --help | grep -q -- "--keep R .*(default 0.3)" && ok || bad "--help shows the defaults, not values given before it"
expect_ok "--name=value form" "$SP" generate -m "$T/tiny.gguf" --prompt=abc --n-predict=2 --temp=0
expect_fail "value out of range" "bad value for --keep: '1.5'" "$SP" generate -m "$T/tiny.gguf" -p x --keep 1.5
expect_fail "missing value" "--temp needs a value" "$SP" generate -m "$T/tiny.gguf" -p x --temp
expect_fail "bad choice" "one of f16|f32" "$SP" generate -m "$T/tiny.gguf" -p x --kv-type q4
expect_fail "bad list item" "bad value for --keep: '0.1,x'" "$SP" bench -m "$T/tiny.gguf" --keep 0.1,x
stops=(); for i in $(seq 17); do stops+=(--stop "s$i"); done
expect_fail "too many --stop" "given too many times (at most 16)" "$SP" generate -m "$T/tiny.gguf" -p x "${stops[@]}"
expect_fail "info: two models" "unexpected argument" "$SP" info "$T/tiny.gguf" "$T/tiny.gguf"
expect_fail "quantize: missing TYPE" "need IN.gguf OUT.gguf TYPE" "$SP" quantize "$T/tiny.gguf" "$T/q.gguf"
expect_ok "make-model --preset" "$SP" make-model -o "$T/p.gguf" --n-layer 1 --preset draft
"$SP" info "$T/p.gguf" >"$T/out" 2>&1
grep -q "^embedding     512$" "$T/out" && grep -q "^layers        1$" "$T/out" && grep -q "tied" "$T/out" && ok || bad "--preset draft with --n-layer 1: $(cat "$T/out")"
expect_fail "make-model: unknown preset" "one of tiny|1b|draft" "$SP" make-model -o "$T/p.gguf" --preset 7b
# README's option reference is the binary's own --help (scripts/cli-reference.sh --update rewrites it)
if diff <(sed -n '/<!-- cli-reference: begin/,/<!-- cli-reference: end -->/p' "$ROOT/README.md") \
        <("$ROOT/scripts/cli-reference.sh" "$SP") >"$T/diff"; then ok
else bad "README's option reference differs from --help (run scripts/cli-reference.sh --update): $(head -c 400 "$T/diff")"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
