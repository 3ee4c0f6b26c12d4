#!/usr/bin/env bash
# bench/side_by_side.py against a stand-in llama-bench whose speeds are known: the table's ratio
# is specprefill's best variant over the reference's best, per round and test; rounds alternate
# which engine runs first; the SVG is well-formed with a dot per round and test; a reference that
# fails, prints no JSON or rows without avg_ts stops the run with its reason, and bad -p, -n or
# --rounds are refused before anything runs.
set -euo pipefail
SP=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

"$SP" make-model -o "$T/tiny.gguf" --n-embd 128 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 256 >/dev/null 2>&1
# llama.cpp's JSON rows (counts, no test name); 100/10 t/s as it runs, 200/20 with -rtr 1
cat >"$T/llama-bench" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/calls"
p=512 n=32 rtr=0
while [ $# -gt 0 ]; do case $1 in -p) p=$2; shift;; -n) n=$2; shift;; -rtr) rtr=$2; shift;; esac; shift; done
k=$((rtr + 1)); sep=""
echo "["
for x in ${p//,/ }; do echo "$sep{\"build_commit\": \"abc123\", \"n_prompt\": $x, \"n_gen\": 0, \"avg_ts\": $((100 * k)).0}"; sep=","; done
[ "$n" = 0 ] || echo "$sep{\"build_commit\": \"abc123\", \"n_prompt\": 0, \"n_gen\": $n, \"avg_ts\": $((10 * k)).0}"
echo "]"
EOF
chmod +x "$T/llama-bench"

run() { python3 "$ROOT/bench/side_by_side.py" --sp "$SP" -m "$T/tiny.gguf" -p 16,32 -n 4 -t 1 -r 1 "$@"; }
if run --ref "$T/llama-bench" --ref-args= --ref-args="-rtr 1" --sp-args= --sp-args=--repack --rounds 2 --out "$T/sbs" >"$T/out" 2>"$T/err"; then
    ok "a run of two rounds"
else
    bad "a run of two rounds: $(tail -3 "$T/err")"
fi
python3 - "$T/out" "$T/sbs.json" <<'PYEOF' && ok "ratios: specprefill's best over the reference's best (200 t/s prefill, 20 decode), per round" || bad "ratios"
import json, sys
table = open(sys.argv[1]).read()
data = json.load(open(sys.argv[2]))
assert data["reference"] == "reference abc123", data["reference"]
n = 0
for rnd in (1, 2):
    for test, ref in (("pp16", 200.0), ("pp32", 200.0), ("tg4", 20.0)):
        sp = max(r["tokens_per_s"][test] for r in data["readings"] if r["round"] == rnd and r["engine"] == "sp")
        row = [l for l in table.splitlines() if l.startswith(f"| {rnd} | tiny.gguf | {test} |")]
        assert len(row) == 1, (rnd, test, row)
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        assert cells[3:5] == [f"{ref / 2:.1f}", f"{ref:.1f}"], cells
        assert cells[-1] == f"{sp / ref:.2f}", (cells, sp / ref)
        n += 1
assert n == 6
PYEOF
python3 - "$T/sbs.json" <<'PYEOF' && ok "round 1 runs the reference first, round 2 specprefill" || bad "the rounds' order"
import json, sys
order = [(r["round"], r["engine"], r["variant"]) for r in json.load(open(sys.argv[1]))["readings"]]
assert order == [(1, "ref", ""), (1, "ref", "-rtr 1"), (1, "sp", ""), (1, "sp", "--repack"),
                 (2, "sp", ""), (2, "sp", "--repack"), (2, "ref", ""), (2, "ref", "-rtr 1")], order
PYEOF
[ "$(grep -c -- '-rtr 1' "$T/calls")" = 2 ] && [ "$(wc -l <"$T/calls")" = 4 ] \
    && ok "the reference's variants passed as given" || bad "the reference's variants: $(cat "$T/calls")"
python3 -c "
import sys, xml.etree.ElementTree as E
root = E.parse(sys.argv[1]).getroot()
dots = root.findall('{http://www.w3.org/2000/svg}circle')
assert len(dots) == 6, len(dots)
" "$T/sbs.svg" && ok "the SVG: well-formed, a dot per round and test" || bad "the SVG"

printf '#!/bin/sh\necho "model file missing" >&2\nexit 3\n' >"$T/failing" && chmod +x "$T/failing"
if run --ref "$T/failing" >"$T/out" 2>"$T/err"; then bad "a failing reference: exit 0"
else grep -q "reference exited with 3" "$T/err" && grep -q "model file missing" "$T/err" && ok "a failing reference: its status and message" || bad "a failing reference: $(cat "$T/err")"; fi
printf '#!/bin/sh\necho "| model | test |"\n' >"$T/chatty" && chmod +x "$T/chatty"
if run --ref "$T/chatty" >"$T/out" 2>"$T/err"; then bad "a reference without JSON: exit 0"
else grep -q "printed no JSON" "$T/err" && ok "a reference without JSON: said so" || bad "a reference without JSON: $(cat "$T/err")"; fi
printf '#!/bin/sh\necho "[{\\"n_prompt\\": 16}]"\n' >"$T/rowless" && chmod +x "$T/rowless"
if run --ref "$T/rowless" >"$T/out" 2>"$T/err"; then bad "a reference row without avg_ts: exit 0"
else grep -q "without a test and its avg_ts" "$T/err" && ! grep -q Traceback "$T/err" && ok "a reference row without avg_ts: said so" || bad "a reference row without avg_ts: $(cat "$T/err")"; fi
if run --ref "$T/llama-bench" --rounds 0 >"$T/out" 2>"$T/err"; then bad "--rounds 0 accepted"
else grep -q "at least 1" "$T/err" && ok "--rounds 0 refused" || bad "--rounds 0: $(cat "$T/err")"; fi
calls=$(wc -l <"$T/calls")
if python3 "$ROOT/bench/side_by_side.py" --ref "$T/llama-bench" --sp "$SP" -m "$T/tiny.gguf" -p 16,x >"$T/out" 2>"$T/err"; then bad "-p 16,x accepted"
else grep -q "prompt lengths" "$T/err" && [ "$(wc -l <"$T/calls")" = "$calls" ] && ok "-p 16,x refused before any run" || bad "-p 16,x: $(cat "$T/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
