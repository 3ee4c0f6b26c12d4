#!/usr/bin/env python3
"""Follow-up questions on long documents: the server's prompt cache on and off, in one run
(standard library only).

Each of the first N documents of a JSONL task file starts a conversation of T turns: turn 1 is
the document and its question; each later turn is the whole conversation so far (prompt, answer)
and the question again. Every conversation runs four ways against a running `specprefill serve`
(one request at a time, greedy): full prefill and SpecPrefill at keep K, each with the prompt
cache ("cache_prompt": true, the default, from turn 2 on: a conversation starts cold) and
without it. Prints, per mode, the median time to first token of turn 1 and of the follow-ups
(the server's ttft_ms), the share of follow-up prompt tokens served from the cache, how many
follow-up answers hold the document's answer, and how many are the cold run's. SpecPrefill's follow-ups run two ways: "reuse": "kept" (the default: the main
model keeps its kept tokens of the shared start) and "draft" (only the draft's cache; the main
model selects the whole prompt afresh, as a cold run does).

  python3 bench/serve_prefix_cache.py http://127.0.0.1:8080 eval/retrieval-8k.jsonl [N=8] [T=4] [K=0.1] [MAX_TOKENS=8]
"""
import json
import statistics
import sys
import time
import urllib.request

base, task = sys.argv[1].rstrip("/"), sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 8
T = int(sys.argv[4]) if len(sys.argv) > 4 else 4
K = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
MAX_TOKENS = int(sys.argv[6]) if len(sys.argv) > 6 else 8
records = [json.loads(line) for line in open(task)][:N]
docs = [r["prompt"] for r in records]
answers = [r["answer"] for r in records]


def idle():
    for _ in range(500):
        with urllib.request.urlopen(base + "/health", timeout=60) as r:
            if json.load(r)["slots_busy"] == 0:
                return
        time.sleep(0.01)


def complete(prompt, spec, cache):
    idle()  # the slot that answered the last turn is free again: the follow-up can go to it
    body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "cache_prompt": cache,
            "speculative_prefill": {"enabled": True, "keep_rate": K, "reuse": spec} if spec else False}
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.load(r)


def conversation(doc, spec, cache):
    question = doc[doc.rfind("Question:"):]  # "Question: ...\nAnswer:"
    prompt, turns = doc, []
    for t in range(T):
        r = complete(prompt, spec, cache and t > 0)  # a conversation starts cold, whatever ran before
        text = r["choices"][0]["text"]
        turns.append((r["specprefill"]["ttft_ms"], r["specprefill"]["cache"]["cached_tokens"], r["usage"]["prompt_tokens"], text))
        prompt = prompt + text + "\n" + question
    return turns


# SpecPrefill's follow-ups reuse "kept" (the main model's kept tokens and the draft's cache) or
# "draft" (the draft's cache only: the whole prompt selected afresh, as cold); cold runs are one
modes = [("full prefill", False), (f"SpecPrefill keep {K:g}", "kept"), (f"SpecPrefill keep {K:g}, reuse draft", "draft")]
cold_of = {modes[0][0]: modes[0][0], modes[1][0]: modes[1][0], modes[2][0]: modes[1][0]}
runs = {}
for doc in docs:  # the ways of one document next to each other: the machine's drift hits all alike
    for name, spec in modes:
        for cache in (False, True):
            if cache or cold_of[name] == name:
                runs.setdefault((name, cache), []).append(conversation(doc, spec, cache))

print(f"{len(docs)} conversations of {T} turns, {MAX_TOKENS} greedy tokens per answer\n")
print("| mode | prompt cache | TTFT turn 1 (ms) | TTFT follow-ups (ms) | follow-up tokens cached | follow-ups correct | follow-ups as cold |")
print("|---|---|---:|---:|---:|---:|---:|")
ratios = []
for name, _ in modes:
    cold = runs[(cold_of[name], False)]
    for cache in (False, True):
        if (name, cache) not in runs:
            continue
        convs = runs[(name, cache)]
        first = statistics.median(c[0][0] for c in convs)
        follow = statistics.median(t[0] for c in convs for t in c[1:])
        cached = sum(t[1] for c in convs for t in c[1:]) / sum(t[2] for c in convs for t in c[1:])
        same = sum(a[3] == b[3] for c, k in zip(convs, cold) for a, b in zip(c[1:], k[1:]))
        total = sum(len(c) - 1 for c in convs)
        correct = sum(a in t[3] for c, a in zip(convs, answers) for t in c[1:])
        print(f"| {name} | {'on' if cache else 'off'} | {first:.1f} | {follow:.1f} | {100 * cached:.1f} % | {correct}/{total} | {same}/{total} |")
    on, off = runs[(name, True)], cold
    ratio = statistics.median(t[0] for c in off for t in c[1:]) / statistics.median(t[0] for c in on for t in c[1:])
    ratios.append(f"{name}: follow-up TTFT {ratio:.1f}x lower with the prompt cache")
print("\n" + "\n".join(ratios))
