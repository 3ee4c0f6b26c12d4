#!/usr/bin/env python3
"""A long prefill beside a stream: what each --step-tokens setting gives both (standard library only).

For each server binary and each --step-tokens value, one after another in one run: start
`BIN serve ARGS --parallel 2 --step-tokens N`, start a greedy stream ("The ship", ignore_eos),
and once it flows send one long prompt (the first of a JSONL task file; full prefill, 1 token).
Reports the long request's prefill time (the server's prefill_ms), how many stream tokens
arrived while it ran, the longest gap between them, and the stream's mean interval alone and
during the prefill; then the same prefill with no stream beside it, as the reference.

  python3 bench/serve_steps.py --bin build/specprefill [--bin OTHER=path ...] \\
      --serve "-m models-big/main1b-q8.gguf -c 4096 -t 2" --task eval/retrieval-2k.jsonl --steps 64,128,256,512
"""
import argparse
import json
import shlex
import socket
import subprocess
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--bin", action="append", required=True, help="LABEL=PATH or PATH (repeatable)")
ap.add_argument("--serve", required=True, help="the server's arguments besides --parallel, --port and --step-tokens")
ap.add_argument("--task", required=True)
ap.add_argument("--steps", default="64,128,256,512")
ap.add_argument("--stream-tokens", type=int, default=4000)
args = ap.parse_args()
prompt = json.loads(open(args.task).readline())["prompt"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, body, timeout=1800):
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def long_request(base):
    t0 = time.time()
    with post(base, {"prompt": prompt, "max_tokens": 1, "temperature": 0, "speculative_prefill": False, "cache_prompt": False}) as r:
        out = json.load(r)
    return t0, time.time(), out["specprefill"]["prefill_ms"] / 1e3, out["usage"]["prompt_tokens"]


def run(binary, steps):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [binary, "serve", *shlex.split(args.serve), "--parallel", "2", "--port", str(port), "--step-tokens", str(steps)]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        alone = long_request(base)  # the prefill with nothing beside it (also warms the model)
        times, stop = [], threading.Event()

        def stream():
            body = {"prompt": "The ship", "max_tokens": args.stream_tokens, "temperature": 0, "ignore_eos": True, "stream": True}
            with post(base, body) as r:
                for line in r:
                    if line.startswith(b"data: {"):
                        times.append(time.time())
                    if stop.is_set():
                        return

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        while len(times) < 20:
            time.sleep(0.01)
        before = list(times)
        t0, t1, prefill_s, n_prompt = long_request(base)
        stop.set()
        during = [x for x in times if t0 <= x <= t1]
        gaps = [b - a for a, b in zip([t0] + during, during + [t1])]
        interval_alone = (before[-1] - before[0]) / (len(before) - 1)
        t.join(timeout=60)
        return {"alone": alone[2], "prefill": prefill_s, "tokens": len(during), "gap": max(gaps),
                "interval_alone": interval_alone, "interval": (t1 - t0) / max(len(during), 1), "n_prompt": n_prompt}
    finally:
        srv.terminate()
        srv.wait(timeout=60)


bins = [(b.split("=", 1) if "=" in b else (b, b)) for b in args.bin]
print(f"prompt: {args.task} #1; server: {args.serve} --parallel 2\n")
print("| server | `--step-tokens` | prompt | prefill alone | prefill beside the stream | stream tokens during it | mean interval (alone) | longest gap |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for steps in [int(s) for s in args.steps.split(",")]:
    for label, path in bins:  # the binaries of one setting next to each other: the machine's drift hits both
        r = run(path, steps)
        print(f"| {label} | {steps} | {r['n_prompt']} | {r['alone']:.2f} s | {r['prefill']:.2f} s | {r['tokens']} | "
              f"{r['interval'] * 1e3:.0f} ms ({r['interval_alone'] * 1e3:.0f} ms) | {r['gap']:.2f} s |", flush=True)
