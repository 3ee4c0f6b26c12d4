"""The server's prompt cache on the bundled pair: a follow-up on the same document reads only what
is new (SpecPrefill-aware: the draft's cache and the main model's kept tokens are reused), a
request goes to the slot holding its conversation, a conversation whose slot was needed comes
back from memory, a full prefill that reuses a cache answers what a cold one answers, and
/metrics counts it all. Standard library only.

Usage: prefix_cache.py BASE_URL EVAL_JSONL   (a server with --parallel 2 --cache-ram 64)
"""
import json
import sys
import time
import urllib.request

base, eval_file = sys.argv[1], sys.argv[2]
docs = [json.loads(line)["prompt"] for line in open(eval_file)][:4]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def get(path):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return r.read().decode()


def idle():
    """Waits until no slot is busy: a slot is free a moment after its answer is sent."""
    for _ in range(300):
        if json.loads(get("/health"))["slots_busy"] == 0:
            return
        time.sleep(0.02)


def complete(prompt, **extra):
    idle()
    body = dict(prompt=prompt, max_tokens=8, temperature=0)
    body.update(extra)
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def cache(r):
    return r["specprefill"]["cache"]


def metric(name):
    for line in get("/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


spec = {"speculative_prefill": {"keep_rate": 0.1}}
follow = "\nQuestion: Who wrote a long letter?\nAnswer:"

# two conversations on two slots: each follow-up lands on its own slot and reads only what is new
a1 = complete(docs[0], **spec)
b1 = complete(docs[1], **spec)
check(cache(a1)["cached_tokens"] == 0 and cache(a1)["source"] == "none", f"first request reads everything: {cache(a1)}")
a2_prompt = docs[0] + a1["choices"][0]["text"] + follow
a2 = complete(a2_prompt, **spec)
b2 = complete(docs[1] + b1["choices"][0]["text"] + follow, **spec)
for name, first, second in (("A", a1, a2), ("B", b1, b2)):
    c, n1 = cache(second), first["usage"]["prompt_tokens"]
    check(c["source"] == "slot" and c["cached_tokens"] >= n1 - 2, f"{name}'s follow-up reuses its slot's cache: {c} after {n1} tokens")
    # SpecPrefill-aware: the main model's cache holds the first turn's kept tokens only; the
    # draft's holds every token
    check(c["cached_kept_tokens"] < c["cached_tokens"] / 3 and c["draft_cached_tokens"] >= n1 - 2,
          f"{name}: the kept tokens and the draft's whole cache are reused: {c}")
    check(second["usage"]["prompt_tokens_details"]["cached_tokens"] == c["cached_tokens"], f"{name}: usage.prompt_tokens_details")
    check(second["specprefill"]["kept_tokens"] < second["usage"]["prompt_tokens"] / 3, f"{name}: still sparse: {second['specprefill']}")
check(metric("specprefill_prompt_cache_restores_total") == 0, "no conversation came back from memory yet")

# a third conversation takes the least recently used slot (A's): A is set aside in memory; A's
# next turn comes back from there
c1 = complete(docs[2], **spec)
check(metric("specprefill_prompt_cache_saves_total") >= 1, "A was set aside")
a3 = complete(a2_prompt + a2["choices"][0]["text"] + follow, **spec)
c = cache(a3)
check(c["source"] == "memory" and c["cached_tokens"] >= a2["usage"]["prompt_tokens"] - 2, f"A's third turn comes back from memory: {c}")
check(metric("specprefill_prompt_cache_restores_total") == 1, "one restore counted")

# cache_prompt false: nothing reused
cold = complete(a2_prompt, cache_prompt=False, **spec)
check(cache(cold)["cached_tokens"] == 0 and cache(cold)["draft_cached_tokens"] == 0, f"cache_prompt false: {cache(cold)}")

# "reuse": "draft": only the draft's cache is kept; the main model selects the whole prompt
# afresh — the cold run's selection and answer, without the draft's prefill
dr = complete(a2_prompt, speculative_prefill={"keep_rate": 0.1, "reuse": "draft"})
c = cache(dr)
check(c["cached_tokens"] == 0 and c["draft_cached_tokens"] >= a2["usage"]["prompt_tokens"] - 2, f"reuse draft: {c}")
check(dr["specprefill"]["kept_tokens"] == cold["specprefill"]["kept_tokens"] and dr["choices"][0]["text"] == cold["choices"][0]["text"],
      f"reuse draft answers as cold: {dr['specprefill']['kept_tokens']} {dr['choices'][0]['text']!r} vs "
      f"{cold['specprefill']['kept_tokens']} {cold['choices'][0]['text']!r}")

# a full prefill that reuses a full prefill's cache answers token for token what a cold one answers
full = {"speculative_prefill": False, "ignore_eos": True, "max_tokens": 16}
d = docs[3]
complete(d, **full)
warm = complete(d + " Nobody remembered why.", **full)
coldf = complete(d + " Nobody remembered why.", cache_prompt=False, **full)
check(cache(warm)["cached_tokens"] > 0.9 * warm["usage"]["prompt_tokens"], f"full prefill reuses: {cache(warm)}")
check(cache(warm)["cached_kept_tokens"] == cache(warm)["cached_tokens"], f"a full prefill's cache is dense: {cache(warm)}")
check(warm["choices"][0]["text"] == coldf["choices"][0]["text"], f"warm {warm['choices'][0]['text']!r} vs cold {coldf['choices'][0]['text']!r}")

hits, misses = metric("specprefill_prompt_cache_hits_total"), metric("specprefill_prompt_cache_misses_total")
check(hits == 4 and misses == 7, f"/metrics: 4 hits (the follow-ups), 7 misses: {hits}, {misses}")
check(metric("specprefill_prompt_cached_tokens_total") > 4 * 1500, "cached tokens counted")
check(0 < metric("specprefill_prompt_cache_bytes") <= 64 << 20, "memory within --cache-ram")
print(f"prompt cache: A's follow-up {cache(a2)['cached_tokens']} of {a2['usage']['prompt_tokens']} tokens cached "
      f"(main {cache(a2)['cached_kept_tokens']}, draft {cache(a2)['draft_cached_tokens']}); "
      f"prefill {a1['specprefill']['prefill_ms']} ms cold vs {a2['specprefill']['prefill_ms']} ms warm")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
