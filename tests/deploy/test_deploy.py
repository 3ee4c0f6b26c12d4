"""Three `specprefill serve` replicas behind nginx (deploy/nginx.conf), on loopback, with faults.

Phases: a load spread without sessions (every replica serves); sessions (each session's requests
land on one replica); SIGKILL of a replica while streams flow from it (only those streams fail,
later requests go elsewhere, nothing hangs; restarted, it serves again); SIGTERM of a replica
under load (its running requests complete, none is dropped). Standard library only.
Usage: python3 test_deploy.py SPECPREFILL_BINARY ROOT WORK_DIR
Prints the figures as JSON, then "N passed, N failed"."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import http.client
from concurrent.futures import ThreadPoolExecutor

SP, ROOT, W = sys.argv[1], sys.argv[2], sys.argv[3]
passed = failed = 0
figures = {}


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)


def free_base():
    return random.randint(20000, 31000)


def get(port, path, timeout=2):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def metric(port, name):
    for line in get(port, "/metrics")[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_ready(port, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if get(port, "/health")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Replica:
    def __init__(self, i, port):
        self.name, self.port, self.proc = f"r{i}", port, None

    def start(self):
        log = open(os.path.join(W, f"{self.name}.log"), "a")
        self.proc = subprocess.Popen([SP, "serve", "-m", f"{ROOT}/models/main.gguf", "--draft", f"{ROOT}/models/draft.gguf", "-c", "3072",
                                      "-t", "1", "--parallel", "2", "--queue", "32", "--port", str(self.port), "--replica", self.name,
                                      "--shutdown-timeout", "20"], stderr=log, stdout=log)
        return wait_ready(self.port)


def request(port, body, session=None, stream=False, on_first=None, timeout=60):
    """One completion through nginx: (status, upstream, answer text, finished, latency s)."""
    t0 = time.time()
    headers = {"Content-Type": "application/json"}
    if session:
        headers["X-Session-Id"] = session
    b = dict(body, stream=stream)
    upstream = ""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/completions", json.dumps(b), headers)
        r = c.getresponse()
        upstream = r.getheader("X-Upstream", "")
        if not stream:
            data = r.read()
            ok = r.status == 200
            text = json.loads(data)["choices"][0]["text"] if ok else data.decode(errors="replace")
            return r.status, upstream, text, ok, time.time() - t0
        text, done, first = "", False, True
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1024)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if ev == b"data: [DONE]":
                    done = True
                elif ev.startswith(b"data: {"):
                    o = json.loads(ev[6:])
                    if o.get("choices"):
                        text += o["choices"][0].get("text", "")
                        if first and on_first:
                            on_first(upstream)
                        first = False
        return r.status, upstream, text, r.status == 200 and done, time.time() - t0
    except (OSError, http.client.HTTPException, ValueError) as e:
        return 0, upstream, str(e), False, time.time() - t0


def run_all(jobs, concurrency):
    """jobs: callables; runs them on `concurrency` threads; returns their results in order."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda job: job(), jobs))


class Streams:
    """n long streamed requests in flight at once; `flowing` is set once one of them streams from
    the replica named `watch` (addr maps an upstream address to a replica's name)."""

    def __init__(self, port, n, max_tokens, label, watch, addr):
        self.results, self.flowing, lock = [], threading.Event(), threading.Lock()
        body = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}

        def first(up):
            if addr.get(up) == watch:
                self.flowing.set()

        def job(i):
            r = request(port, dict(body, prompt=f"{label} {i}."), stream=True, on_first=first)
            with lock:
                self.results.append(r)
        self.threads = [threading.Thread(target=job, args=(i,)) for i in range(n)]
        for t in self.threads:
            t.start()

    def join(self, secs):
        for t in self.threads:
            t.join(secs)
        return sum(t.is_alive() for t in self.threads)  # still open


def main():
    base = free_base()
    lport = base
    replicas = [Replica(i, base + i) for i in (1, 2, 3)]
    for r in replicas:
        check(r.start(), f"replica {r.name} starts")
    servers = " ".join(f"server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s;" for r in replicas)
    conf = open(f"{ROOT}/deploy/nginx.conf").read().replace("@SERVERS@", servers).replace("@LISTEN@", f"127.0.0.1:{lport}")
    prefix = os.path.join(W, "nginx")
    for d in ("logs", "tmp"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    open(os.path.join(prefix, "nginx.conf"), "w").write(conf)
    nginx = subprocess.Popen(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"), "-g", "daemon off;"],
                             stderr=open(os.path.join(W, "nginx.log"), "w"))
    check(wait_ready(lport), "nginx answers /health through a replica")
    addr = {f"127.0.0.1:{r.port}": r.name for r in replicas}
    latencies, sent, served, failures = [], 0, 0, 0

    def tally(results):
        nonlocal sent, served, failures
        for status, up, text, ok, lat in results:
            sent += 1
            served += ok
            failures += not ok
            latencies.append(lat)

    short = {"max_tokens": 8, "temperature": 0, "ignore_eos": True}
    try:
        # 1. a spread load, no sessions: every replica serves, every request answered
        res = run_all([lambda i=i: request(lport, dict(short, prompt=f"Record {i}: the ship docked at pier {i % 9}."), stream=i % 3 == 0)
                       for i in range(48)], 6)
        tally(res)
        per = {n: sum(1 for x in res if addr.get(x[1]) == n) for n in addr.values()}
        figures["spread"] = per
        check(all(x[3] for x in res), f"spread: all answered ({sum(x[3] for x in res)} of {len(res)})")
        check(all(v > 0 for v in per.values()), f"spread: every replica served: {per}")

        # 2. sessions: each session asks four questions about its own document; its requests land
        # on one replica, whose prompt cache then serves the document to each follow-up
        def hits():
            return sum(metric(r.port, "specprefill_prompt_cache_hits_total") for r in replicas)

        def session_jobs(s):
            doc = " ".join(f"Parcel {s}-{i} weighs {(s * 7 + i) % 90} kilos and sits in room {i}." for i in range(12))
            return [request(lport, dict(short, prompt=f"{doc}\nQuestion {k}: what does parcel {s}-{k} weigh?\nAnswer:"), session=f"doc-{s}")
                    for k in range(4)]
        hits_before = hits()
        res = run_all([lambda s=s: session_jobs(s) for s in range(12)], 6)
        homes = {s: {addr.get(x[1]) for x in rs} for s, rs in enumerate(res)}
        figures["sessions"] = {f"doc-{s}": sorted(h) for s, h in homes.items()}
        tally([x for rs in res for x in rs])
        check(all(len(h) == 1 and None not in h for h in homes.values()), f"sessions stick to one replica: {homes}")
        check(len({next(iter(h)) for h in homes.values()}) > 1, f"sessions spread over replicas: {homes}")
        figures["session_cache_hits"] = hits() - hits_before
        check(figures["session_cache_hits"] >= 30, f"the follow-ups (36) found their document in the replica's prompt cache: {figures['session_cache_hits']}")

        # 3. SIGKILL of a replica while streams flow from it
        victim = replicas[1]
        streams = Streams(lport, 6, 2500, "Long", victim.name, addr)
        check(streams.flowing.wait(20), "a stream is flowing from the replica to be killed")
        time.sleep(0.2)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        # they queue behind the survivors' long streams: on a slow build (the sanitizers at -O0 on a
        # Zen 3 VM) that took more than a minute, so they wait as long as the streams may take
        after = run_all([lambda i=i: request(lport, dict(short, prompt=f"After the kill {i}."), timeout=180) for i in range(12)], 4)
        hung = streams.join(90)
        check(hung == 0, f"no stream hangs after the kill ({hung} still open)")
        results_k = streams.results
        cut = [x for x in results_k if not x[3]]
        figures["kill"] = {"streams": len(results_k), "cut": len(cut), "cut_on_victim": sum(addr.get(x[1]) == victim.name for x in cut),
                           "requests_after": len(after), "answered_after": sum(x[3] for x in after),
                           "after_on_victim": sum(addr.get(x[1]) == victim.name for x in after)}
        tally(results_k + after)
        check(len(cut) >= 1 and all(addr.get(x[1]) == victim.name for x in cut), f"only the victim's streams are cut: {figures['kill']}")
        check(all(x[3] for x in after), f"requests after the kill are answered by the others: {figures['kill']}")
        # restarted, it serves again (after nginx's fail_timeout)
        check(victim.start(), "the killed replica restarts")
        # nginx tries it again once its fail_timeout (2 s) has passed since the last failure it saw:
        # poll through nginx (bounded) rather than guess how long that is on a loaded machine
        deadline, seen_back = time.time() + 20, 0
        while time.time() < deadline and not seen_back:
            seen_back = addr.get(request(lport, dict(short, prompt="Are you back?"))[1]) == victim.name
            time.sleep(0.2)
        figures["restart_seen_within_20s"] = bool(seen_back)
        res = run_all([lambda i=i: request(lport, dict(short, prompt=f"Back {i}.")) for i in range(18)], 6)
        tally(res)
        back = sum(addr.get(x[1]) == victim.name for x in res)
        figures["restart"] = {"requests": len(res), "on_restarted": back, "answered": sum(x[3] for x in res)}
        check(all(x[3] for x in res) and back > 0, f"the restarted replica serves again: {figures['restart']}")

        # 4. SIGTERM of a replica under load: its running requests complete, none is dropped
        drained = replicas[0]
        streams = Streams(lport, 6, 1500, "Drain", drained.name, addr)
        check(streams.flowing.wait(20), "a stream is flowing from the replica to be drained")
        drained.proc.send_signal(signal.SIGTERM)
        during = run_all([lambda i=i: request(lport, dict(short, prompt=f"During the drain {i}.")) for i in range(8)], 4)
        check(streams.join(90) == 0, "no stream hangs during the drain")
        results_d = streams.results
        rc = drained.proc.wait(30)
        figures["drain"] = {"streams": len(results_d), "completed": sum(x[3] for x in results_d),
                            "on_drained": sum(addr.get(x[1]) == drained.name for x in results_d),
                            "requests_during": len(during), "answered_during": sum(x[3] for x in during), "exit": rc}
        tally(results_d + during)
        check(all(x[3] for x in results_d) and figures["drain"]["on_drained"] > 0, f"the drained replica's streams complete: {figures['drain']}")
        check(all(x[3] for x in during), f"requests during the drain are answered: {figures['drain']}")
        check(rc == 0, f"the drained replica exits 0: {rc}")
    finally:
        nginx.send_signal(signal.SIGTERM)
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in replicas:
            if r.proc:
                try:
                    r.proc.wait(30)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
        nginx.wait(10)
    latencies.sort()
    pct = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else 0
    figures.update(sent=sent, served=served, failed=failures, p50_ms=pct(0.5), p99_ms=pct(0.99))
    print(json.dumps(figures))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
