#!/usr/bin/env bash
# The committed evaluation sets are what train/make_eval.py writes for their seeds (so a
# change to the generator that would silently change them, or mix them with training data, fails
# here), and --hops asks hops that the document really states. Needs only Python 3 (no torch).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/train"
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
check() {  # name, command...
    local name=$1; shift
    if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
gen() { $PY make_eval.py --tokenizer "$root/models/tokenizer.json" "$@"; }

gen --bundled "$work"
for set in retrieval-2k retrieval-2k-ci retrieval-8k retrieval-16k; do
    check "eval/$set.jsonl reproduces" cmp -s "$work/$set.jsonl" "$root/eval/$set.jsonl"
done

check "eval/demo-8k-prompt.txt and its answer are the second document of eval/retrieval-8k.jsonl" $PY -c "
import json, sys
row = [json.loads(l) for l in open('$root/eval/retrieval-8k.jsonl')][1]
sys.exit(not (open('$root/eval/demo-8k-prompt.txt').read() == row['prompt'] and open('$root/eval/demo-8k-answer.txt').read().strip() == row['answer']))"

gen --n 20 --tokens 300-400 --seed 9 --family multihop --hops >"$work/hops.jsonl"
check "--hops: each two-hop document with its two hops, stated in the document" $PY - "$work/hops.jsonl" <<'PYEOF'
import json, re, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert [r["family"] for r in rows] == ["multihop", "hop1", "hop2"] * 20, "families out of order"
for two, hop1, hop2 in zip(rows[0::3], rows[1::3], rows[2::3]):
    doc = two["prompt"][:two["prompt"].rindex("\nQuestion: ")]
    assert hop1["prompt"].startswith(doc + "\nQuestion: ") and hop2["prompt"].startswith(doc + "\nQuestion: ")
    who = re.search(r"office of (.*)'s manager in\?", two["prompt"]).group(1)
    assert f"{who}'s manager is {hop1['answer']}." in doc, "hop 1's answer is not A's manager"
    assert f"{hop1['answer']}'s office is room {hop2['answer']}." in doc, "hop 2's answer is not B's office"
    assert hop2["answer"] == two["answer"]
PYEOF
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
