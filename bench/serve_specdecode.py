#!/usr/bin/env python3
"""Speculative decoding in the server, on and off, in one run (standard library only).

Sends the first N documents of a JSONL task file to a running `specprefill serve` (greedy,
max_tokens tokens each, end-of-text ignored so that every request decodes the same length), from C
clients at once, first with "speculative_decoding": false, then true. Prints per mode the
decode time (the server's decode_ms), decode tokens/s per request, the draft's proposals and
acceptances, the main model's tokens per decode step, and whether both modes gave the same texts.

  python3 bench/serve_specdecode.py http://127.0.0.1:8080 eval/retrieval-2k.jsonl [N=20] [C=1] [MAX_TOKENS=32]
"""
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, task = sys.argv[1].rstrip("/"), sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20
C = int(sys.argv[4]) if len(sys.argv) > 4 else 1
MAX_TOKENS = int(sys.argv[5]) if len(sys.argv) > 5 else 32
prompts = [json.loads(line)["prompt"] for line in open(task)][:N]


def run(mode):
    def one(prompt):
        body = json.dumps({"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True,
                           "speculative_decoding": mode}).encode()
        req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)

    with ThreadPoolExecutor(max_workers=C) as pool:
        return list(pool.map(one, prompts))


def summary(name, res):
    sd = [r["specprefill"]["speculative_decoding"] for r in res]
    decode_s = sum(r["specprefill"]["decode_ms"] for r in res) / 1000
    tokens = sum(r["usage"]["completion_tokens"] for r in res)
    drafted, accepted = sum(x["drafted_tokens"] for x in sd), sum(x["accepted_tokens"] for x in sd)
    steps = sum(x["decode_steps"] for x in sd)
    per_req = sorted(r["usage"]["completion_tokens"] / max(r["specprefill"]["decode_ms"], 1e-3) * 1000 for r in res)
    print(f"{name:>4}: {len(res)} requests, {tokens} tokens, decode {decode_s:.3f} s ({tokens / decode_s:.0f} tokens/s; "
          f"per request median {per_req[len(per_req) // 2]:.0f}), drafted {drafted}, accepted {accepted} "
          f"({100 * accepted / drafted if drafted else 0:.0f} %), {tokens / steps if steps else 0:.2f} tokens per step")
    return tokens / decode_s


off = run(False)
on = run(True)
r_off, r_on = summary("off", off), summary("on", on)
same = all(a["choices"][0]["text"] == b["choices"][0]["text"] for a, b in zip(off, on))
print(f"decode tokens/s on / off: {r_on / r_off:.2f}; texts {'identical' if same else 'DIFFER'} "
      f"({len(prompts)} documents, {C} at once, {MAX_TOKENS} tokens each)")
sys.exit(0 if same else 1)
