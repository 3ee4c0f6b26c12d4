#!/usr/bin/env bash
# RULER-style task files (eval/ruler.py): every task on every haystack states what it asks (the
# needles, the variable chain, the most common and most frequent words are what the answers say,
# counted here independently), lies within its token window (recounted with the CLI's tokenizer),
# and reproduces from its seed; and `eval --score contains` scores them as RULER does (the share
# of the answers found in the model's text), checked on a document whose answer the bundled model
# is known to give. Needs Python 3 only; the prose haystack needs Debian's documentation
# (scripts/install-deps.sh installs it) and is skipped without it.
# Usage: test_ruler.sh SPECPREFILL
set -u
SP=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
MODEL=$ROOT/models/main.gguf
gen() { python3 "$ROOT/eval/ruler.py" --model "$MODEL" --specprefill "$SP" "$@"; }

haystacks="filler noise"
if [ -f /usr/share/doc/debian-policy/policy.txt.gz ] && [ -f /usr/share/info/standards.info.gz ]; then haystacks="prose $haystacks"
else skip=$((skip + 1)); echo "skipped: the prose haystack (Debian's documentation is not installed: scripts/install-deps.sh)"; fi
for h in $haystacks; do
  if gen --tokens 1024 --n 18 --seed 3 --haystack "$h" >"$T/$h.jsonl" 2>"$T/err"; then ok; else bad "ruler.py --haystack $h: $(cat "$T/err")"; continue; fi
  python3 - "$T/$h.jsonl" "$SP" "$MODEL" <<'PYEOF' && ok || bad "ruler.py --haystack $h: the tasks state what they ask"
import collections, json, re, subprocess, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
tasks = ["niah_single", "niah_single_uuid", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa"]
assert [r["task"] for r in rows] == tasks * 2, [r["task"] for r in rows]
texts = b"".join(b"%d\n%s" % (len(r["prompt"].encode()), r["prompt"].encode()) for r in rows)
out = subprocess.run([sys.argv[2], "tokenize", "-m", sys.argv[3], "--batch"], input=texts, capture_output=True, check=True).stdout
for r, line in zip(rows, out.decode().splitlines()):
    n = len(json.loads(line))
    assert n == r["tokens"] and 1024 - 64 - 60 <= n <= 1024 - 64, (r["task"], n, r["tokens"])
    p, ans, t = r["prompt"], r["answers"], r["task"]
    assert r["answer"] == ans[0] and r["max_tokens"] > 0
    if t.startswith("niah"):
        key_of = {}
        for k, v in re.findall(r"One of the special magic (?:numbers|uuids) for (\S+) is: (\S+)\.", p):
            key_of.setdefault(k, []).append(v)
        asked = re.search(r"What are all the special magic \w+ for (.*) mentioned in the provided text\?$", p).group(1)
        asked = [k for k in re.split(r", and |, ", asked)]
        assert sorted(ans) == sorted(v for k in asked for v in key_of[k]), (t, asked, key_of, ans)
        want = {"niah_single": (1, 1, 1), "niah_single_uuid": (1, 1, 1), "niah_multikey": (4, 1, 1),
                "niah_multivalue": (1, 4, 1), "niah_multiquery": (4, 1, 4)}[t]
        assert (len(key_of), max(map(len, key_of.values())), len(asked)) == want, (t, key_of, asked)
    elif t == "vt":
        value = re.search(r"assigned the value (\d+) in the text above", p).group(1)
        holds, assigns = set(), re.findall(r"VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+)\.", p)
        for name, rhs in assigns:  # in the text's order, as a reader tracks them
            if rhs == value or rhs[4:] in holds:
                holds.add(name)
        assert sorted(holds) == sorted(ans) and len(ans) == 5, (holds, ans)
    elif t == "cwe":
        words = re.findall(r"\d+\. (\S+)", p.split("\n")[1])
        c = collections.Counter(words).most_common()
        assert sorted(w for w, _ in c[:10]) == sorted(ans) and c[9][1] > c[10][1], c[:12]
    elif t == "fwe":
        words = [w for w in p.split("coded words. ")[1].split("\nQuestion:")[0].split() if w != "...."]
        c = collections.Counter(words).most_common()
        assert sorted(w for w, _ in c[:3]) == sorted(ans) and c[2][1] > c[3][1], (c[:5], ans)
    else:  # qa: the answer stated once, for the subject asked
        question = p.rsplit("Question: ", 1)[1]
        subject = [w for w in re.findall(r"[A-Z]\w+", question) if w not in ("To", "Who", "What")][0]
        assert p.count(ans[0]) == 1 and re.search(rf"{subject}[^.]*{ans[0]}|{ans[0]}[^.]*{subject}", p), (subject, ans)
PYEOF
done
# the same seed writes the same file; another seed another
gen --tokens 1024 --n 9 --seed 3 --haystack filler >"$T/a.jsonl" && gen --tokens 1024 --n 9 --seed 3 --haystack filler >"$T/b.jsonl" \
  && gen --tokens 1024 --n 9 --seed 4 --haystack filler >"$T/c.jsonl" && cmp -s "$T/a.jsonl" "$T/b.jsonl" && ! cmp -s "$T/a.jsonl" "$T/c.jsonl" \
  && ok || bad "ruler.py reproduces from its seed"
gen --tokens 1024 --n 2 --tasks nosuch >/dev/null 2>"$T/err"; [ $? -ne 0 ] && grep -q "unknown task" "$T/err" && ok || bad "ruler.py: an unknown task is an error"

# eval --score contains: RULER's string_match_all on a document the bundled main answers (the
# first of the CI set: full prefill gives its answer), with references it does and does not give
python3 - "$ROOT/eval/retrieval-2k-ci.jsonl" "$T/contains.jsonl" <<'PYEOF'
import json, sys
d = json.loads(open(sys.argv[1]).readline())
with open(sys.argv[2], "w") as f:
    for answers in ([d["answer"]], [d["answer"], "@@absent@@"], ["@@absent@@"], [d["answer"][:1], d["answer"][-1:]]):
        f.write(json.dumps({"task": "t%d" % len(answers), "prompt": d["prompt"], "answer": d["answer"], "answers": answers, "max_tokens": 12}) + "\n")
PYEOF
"$SP" eval -m "$MODEL" --task "$T/contains.jsonl" --methods full --score contains -o "$T/ev" >"$T/out" 2>"$T/err" || bad "eval --score contains: $(cat "$T/err")"
python3 - "$T/ev.json" <<'PYEOF' && ok || bad "eval --score contains: the share of the answers found ($(cat "$T/out"))"
import json, sys
j = json.load(open(sys.argv[1]))
full = [r for r in j["results"] if r["method"] == "full"][0]
# per document: 1, 1/2, 0, 1 -> 62.5 %; exact match: the answer is the first line every time -> 100 %
assert j["accuracy"] == "contains" and abs(full["accuracy"] - 0.625) < 1e-9 and full["exact_match"] == 1.0, full
# the prompt states the answer (not the absent reference): the same shares are in the kept (all) tokens
assert abs(full["answers_kept"] - 0.625) < 1e-9, full
PYEOF
"$SP" eval -m "$MODEL" --task "$T/contains.jsonl" --methods full --min-accuracy 0.7 --score contains >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "full prefill contains 0.625 < 0.700" "$T/err" && ok || bad "eval --score contains: the checks use it ($(cat "$T/err"))"
printf '{"prompt": "a", "answer": "b", "answers": "b"}\n' >"$T/bad.jsonl"
"$SP" eval -m "$MODEL" --task "$T/bad.jsonl" >/dev/null 2>"$T/err"; [ $? -ne 0 ] && grep -q '"answers" must be an array' "$T/err" && ok || bad "eval: answers not an array"
printf '{"prompt": "a", "answer": "b", "max_tokens": 0}\n' >"$T/bad.jsonl"
"$SP" eval -m "$MODEL" --task "$T/bad.jsonl" >/dev/null 2>"$T/err"; [ $? -ne 0 ] && grep -q '"max_tokens" must be' "$T/err" && ok || bad "eval: max_tokens 0"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
