"""Load test, loopback only, bounded in count and time: N requests from C concurrent clients, a mix
of plain, streamed, abandoned and malformed requests. Every request must get the right answer (a
503 is not an answer: C stays within the server's slots + queue; a plain answer reports its
speculative decoding), the server must stay up, and its memory must return near the idle level. N is a
bound: the run stops at a deadline (240 s). Usage: python load.py BASE_URL API_KEY SERVER_PID [N=200] [C=8]"""
import asyncio
import json
import os
import re
import sys
import time

import httpx

base, key, pid = sys.argv[1], sys.argv[2], sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 200
C = int(sys.argv[5]) if len(sys.argv) > 5 else 8
headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
deadline = time.monotonic() + 240
counts = dict(ok=0, stream_ok=0, aborted=0, rejected=0, busy=0, wrong=0)
drafts = dict(drafted=0, accepted=0)  # speculative decoding, as the plain answers report it
latencies = []


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


async def one(http, i):
    kind = "plain" if i % 10 < 6 else "stream" if i % 10 < 8 else "abort" if i % 10 < 9 else "bad"
    t0 = time.monotonic()
    prompt = f"Request {i}: " + "a long sentence about rivers and mills. " * (1 + (i % 7) * 4)
    try:
        if kind == "bad":
            r = await http.post(f"{base}/completions", content='{"prompt": ' + ("[1,2" if i % 2 else "42}"))
            counts["rejected" if r.status_code == 400 and "error" in r.json() else "wrong"] += 1
            return
        body = json.dumps({"prompt": prompt, "max_tokens": 5000 if kind == "abort" else 8,
                           "stream": kind != "plain", "temperature": 0.7, "seed": i})
        async with http.stream("POST", f"{base}/completions", content=body) as r:
            if r.status_code == 503:
                counts["busy"] += 1
                await r.aread()
                return
            if r.status_code != 200:
                counts["wrong"] += 1
                print("status", r.status_code, (await r.aread())[:200])
                return
            if kind == "plain":
                j = json.loads(await r.aread())
                sd = j.get("specprefill", {}).get("speculative_decoding", {})
                good = j.get("choices") and j.get("usage") and 0 <= sd.get("accepted_tokens", -1) <= sd.get("drafted_tokens", -1)
                counts["ok" if good else "wrong"] += 1
                drafts["drafted"] += sd.get("drafted_tokens", 0)
                drafts["accepted"] += sd.get("accepted_tokens", 0)
            elif kind == "stream":
                text = (await r.aread()).decode()
                counts["stream_ok" if text.rstrip().endswith("data: [DONE]") else "wrong"] += 1
            else:  # read the first bytes, then walk away
                async for _ in r.aiter_bytes():
                    break
                counts["aborted"] += 1
    except Exception as e:
        if kind == "abort":
            counts["aborted"] += 1
        else:
            counts["wrong"] += 1
            print(kind, type(e).__name__, e)
    finally:
        latencies.append((time.monotonic() - t0) * 1000)


async def main():
    async with httpx.AsyncClient(headers=headers, timeout=120, limits=httpx.Limits(max_connections=C + 2)) as http:
        await http.post(f"{base}/completions", content=json.dumps({"prompt": "warm up", "max_tokens": 4}))
        idle = rss_mb()
        nxt = 0

        async def worker():
            nonlocal nxt
            while nxt < N and time.monotonic() < deadline:
                i = nxt
                nxt += 1
                await one(http, i)

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(C)))
        secs = time.monotonic() - t0
        await asyncio.sleep(1.5)
        try:
            health = (await http.get(base.rsplit("/v1", 1)[0] + "/health")).status_code
        except Exception:
            health = 0
        after = rss_mb()
    latencies.sort()
    p = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))])
    print(json.dumps(dict(requests=nxt, concurrency=C, seconds=round(secs, 2), **counts, p50_ms=p(0.5), p95_ms=p(0.95), **drafts,
                          rss_idle_mb=round(idle, 1), rss_after_mb=round(after, 1), health=health)))
    answered = counts["ok"] + counts["stream_ok"] + counts["aborted"] + counts["rejected"]
    # growth allowed over the load (MB): 64, or RSS_SLACK_MB (the sanitizer build: ASan's
    # quarantine keeps up to 256 MB of freed memory resident)
    slack = float(os.environ.get("RSS_SLACK_MB", 64))
    # all N, or as many as the deadline allowed: a slow build (the sanitizers, when built at -O0,
    # served 88 of 200 on a Zen 3 VM) must still serve five rounds of C; every one started answered
    enough = nxt == N or nxt >= 5 * C
    ok = counts["wrong"] == 0 and counts["busy"] == 0 and answered == nxt and enough and health == 200 and after < idle + slack
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    return 0 if ok else 1


sys.exit(asyncio.run(main()))
