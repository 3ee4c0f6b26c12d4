#!/usr/bin/env python3
"""specprefill beside another engine's llama-bench, in one run (standard library only).

For each round and each model, one after another: the reference's `llama-bench` (each --ref-args
variant, e.g. ik_llama.cpp as it runs and with `-rtr 1`), then `specprefill bench` (each
--sp-args variant, e.g. the file's layout and `--repack`), the same -p/-n/-t/-r; the next round
runs them in the other order, so that a host drifting over the hour does not favour one engine.
Each engine's figure is its best variant; the ratio is specprefill's best over the reference's
best, per round. Prints a Markdown table per round and a summary (the ratios' range over the
rounds), and with --out PREFIX writes PREFIX.json (every reading) and PREFIX.svg (a dot per
round and test). The machines this runs on are noisy: compare ratios of one run, not figures
of different runs.

The reference engine is yours to build (any llama-bench that takes -m -p -n -t -r -o json:
llama.cpp's or ik_llama.cpp's); this script only runs it.

  python3 bench/side_by_side.py --ref /path/to/ik_llama.cpp/build/bin/llama-bench \\
      --ref-args= --ref-args="-rtr 1" --sp-args= --sp-args=--repack \\
      -m models-big/1b-q8_0.gguf -m models-big/1b-q4_k_m.gguf -p 512,2048 -n 32 --rounds 2 --out side
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from xml.sax.saxutils import escape

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--ref", required=True, help="the reference's llama-bench binary")
ap.add_argument("--ref-name", default=None, help="the reference's name in tables (default: \"reference\" and its build commit, else the binary's folder)")
ap.add_argument("--ref-args", action="append", help='extra llama-bench arguments of one variant, written --ref-args="-rtr 1" (repeatable; default one variant, none)')
ap.add_argument("--sp", default="build/specprefill", help="the specprefill binary (default build/specprefill)")
ap.add_argument("--sp-args", action="append", help="extra specprefill bench arguments of one variant, written --sp-args=--repack (repeatable; default one variant, none)")
ap.add_argument("-m", "--model", action="append", required=True, help="a GGUF model (repeatable)")
ap.add_argument("-p", "--n-prompt", default="512", help="prompt lengths (default 512)")
ap.add_argument("-n", "--n-gen", default="32", help="tokens generated (default 32; 0 = none)")
ap.add_argument("-t", "--threads", type=int, default=os.cpu_count(), help="threads, both engines (default all cores)")
ap.add_argument("-r", "--repetitions", type=int, default=2, help="repetitions per reading (default 2)")
ap.add_argument("--rounds", type=int, default=1, help="rounds, alternating which engine runs first (default 1)")
ap.add_argument("--out", help="also write OUT.json and OUT.svg")
args = ap.parse_args()
ref_variants = args.ref_args or [""]
sp_variants = args.sp_args or [""]
if args.rounds < 1 or args.repetitions < 1 or args.threads < 1:
    sys.exit("error: --rounds, -r and -t must be at least 1")
try:
    prompts, n_gen = [int(p) for p in args.n_prompt.split(",")], int(args.n_gen)
except ValueError:
    sys.exit(f"error: -p takes prompt lengths (512,2048) and -n one count, not {args.n_prompt!r} and {args.n_gen!r}")
tests = [f"pp{p}" for p in prompts if p > 0] + ([f"tg{n_gen}"] if n_gen > 0 else [])
if not tests:
    sys.exit("error: nothing to time: -p and -n are all 0")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line and line.split(":", 1)[0].strip() in ("model name", "cpu family", "model"))
        info = {k.strip(): v.strip() for k, v in info.items()}
        return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    except OSError:
        return platform.processor() or platform.machine()


def run(cmd, what):
    print(f"  {what}: {' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr, flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"error: {what}: cannot run {cmd[0]}: {e}")
    if p.returncode != 0:
        sys.exit(f"error: {what} exited with {p.returncode}:\n{p.stderr[-2000:]}")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError as e:
        sys.exit(f"error: {what} printed no JSON ({e}): {p.stdout[:300]!r}")


def test_name(row):
    """llama-bench rows: ik_llama.cpp names the test, llama.cpp gives the counts"""
    if "test" in row:
        return row["test"]
    p, n = row.get("n_prompt", 0), row.get("n_gen", 0)
    return f"pp{p}" if n == 0 else f"tg{n}" if p == 0 else f"pp{p}+tg{n}"


def bench_args(model, extra):
    """what both engines are given: the same model, lengths, threads and repetitions, JSON out"""
    return ["-m", model, "-p", args.n_prompt, "-n", args.n_gen, "-t", str(args.threads), "-r", str(args.repetitions), "-o", "json"] + shlex.split(extra)


def reference(model, extra):
    rows = run([args.ref] + bench_args(model, extra), "reference")
    if not isinstance(rows, list):
        sys.exit("error: the reference's JSON is not a list of rows (not a llama-bench?)")
    commits.add(str(rows[0].get("build_commit", "?")) if rows and isinstance(rows[0], dict) else "?")
    try:
        return {test_name(r): float(r["avg_ts"]) for r in rows}
    except (KeyError, TypeError, ValueError) as e:
        sys.exit(f"error: a reference row without a test and its avg_ts ({e!r}): not a llama-bench?")


def specprefill(model, extra):
    out = run([args.sp, "bench"] + bench_args(model, extra), "specprefill")
    try:
        isas.add(out.get("isa", "?"))
        return {r["test"]: float(r["tokens_per_s"]) for r in out["results"]}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        sys.exit(f"error: specprefill bench's JSON without its results ({e!r})")


def label(extra, plain):
    return extra if extra.strip() else plain


commits, isas = set(), set()
runs = [("ref", i, v) for i, v in enumerate(ref_variants)] + [("sp", i, v) for i, v in enumerate(sp_variants)]
readings = {}  # (round, model path, engine, variant index) -> {test: t/s}, in the order they ran
total, done = args.rounds * len(args.model) * len(runs), 0
for rnd in range(1, args.rounds + 1):
    order = runs if rnd % 2 else runs[len(ref_variants):] + runs[: len(ref_variants)]
    for model in args.model:
        for engine, i, extra in order:
            done += 1
            print(f"[{done}/{total}] round {rnd}, {os.path.basename(model)}", file=sys.stderr, flush=True)
            readings[(rnd, model, engine, i)] = reference(model, extra) if engine == "ref" else specprefill(model, extra)

ref_name = args.ref_name or (f"reference {'/'.join(sorted(commits))}" if commits - {"?"} else os.path.basename(os.path.dirname(os.path.abspath(args.ref))))
cpu = cpu_name()


def best(rnd, model, engine, test):
    vals = [readings[(rnd, model, e, i)].get(test) for e, i, _ in runs if e == engine]
    vals = [v for v in vals if v is not None]
    if not vals:
        sys.exit(f"error: no {test} row from the {'reference' if engine == 'ref' else 'specprefill'} for {model}")
    return max(vals)


# keyed by the model's path (two files of one name in two folders stay apart), shown by its name
ratios = {(m, t): [best(r, m, "sp", t) / best(r, m, "ref", t) for r in range(1, args.rounds + 1)] for m in args.model for t in tests}

print(f"CPU: {cpu}; {args.threads} threads; specprefill kernels {'/'.join(sorted(isas))}; {ref_name}\n")
head = [f"{ref_name} {label(v, 'as it runs')}" for v in ref_variants] + [f"specprefill {label(v, 'as it runs')}" for v in sp_variants]
print("| round | model | test | " + " | ".join(head) + " | best / best |")
print("|---:|---|---|" + "---:|" * len(head) + "---:|")
for rnd in range(1, args.rounds + 1):
    for m in args.model:
        for t in tests:
            cells = [readings[(rnd, m, engine, i)].get(t) for engine, i, _ in runs]
            cells = [f"{v:.1f}" if v is not None else "—" for v in cells]
            print(f"| {rnd} | {os.path.basename(m)} | {t} | " + " | ".join(cells) + f" | {ratios[(m, t)][rnd - 1]:.2f} |")
print("\n| model | test | specprefill / reference (best of each), over the rounds |")
print("|---|---|---:|")
for (m, t), rs in ratios.items():
    span = f"{min(rs):.2f}–{max(rs):.2f} (median {statistics.median(rs):.2f})" if len(rs) > 1 else f"{rs[0]:.2f}"
    print(f"| {os.path.basename(m)} | {t} | {span} |")


def svg():
    """one row per model and test, a dot per round at its ratio, a line at 1"""
    rows = list(ratios.items())
    lo = min(0.5, min(min(rs) for _, rs in rows) * 0.9)
    hi = max(2.0, max(max(rs) for _, rs in rows) * 1.1)
    left, width, top, step = 230, 520, 50, 22
    height = top + step * len(rows) + 50
    x = lambda v: left + (v - lo) / (hi - lo) * width
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 30}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="18" font-size="14">specprefill / {escape(ref_name)}: tokens/s, best variant of each</text>',
           f'<text x="{left}" y="36" fill="#555">{escape(cpu)}, {args.threads} threads, {args.rounds} round(s)</text>']
    tick = 0.25 if hi - lo <= 2.5 else 0.5
    v = round(lo / tick + 0.4999) * tick
    while v <= hi:
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{height - 40}" stroke="{"#000" if abs(v - 1) < 1e-9 else "#ddd"}"/>')
        out.append(f'<text x="{x(v):.1f}" y="{height - 24}" text-anchor="middle">{v:g}×</text>')
        v += tick
    for i, ((m, t), rs) in enumerate(rows):
        y = top + step * i + step / 2
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(os.path.basename(m))} {escape(t)}</text>')
        if len(rs) > 1:
            out.append(f'<line x1="{x(min(rs)):.1f}" y1="{y:.1f}" x2="{x(max(rs)):.1f}" y2="{y:.1f}" stroke="#4a7ab5" stroke-width="2"/>')
        for r in rs:
            out.append(f'<circle cx="{x(r):.1f}" cy="{y:.1f}" r="4" fill="#4a7ab5"><title>{r:.2f}</title></circle>')
    out.append(f'<text x="{left + width / 2}" y="{height - 6}" text-anchor="middle" fill="#555">ratio (right of the black line: specprefill faster)</text>')
    return "\n".join(out + ["</svg>", ""])


if args.out:
    with open(args.out + ".json", "w") as f:
        variants = {"ref": ref_variants, "sp": sp_variants}
        json.dump({"cpu": cpu, "threads": args.threads, "reference": ref_name, "specprefill_isa": sorted(isas),
                   "readings": [{"round": rnd, "model": os.path.basename(m), "engine": e, "variant": variants[e][i], "tokens_per_s": ts}
                                for (rnd, m, e, i), ts in readings.items()],
                   "ratios": [{"model": os.path.basename(m), "test": t, "ratios": rs} for (m, t), rs in ratios.items()]}, f, indent=1)
    with open(args.out + ".svg", "w") as f:
        f.write(svg())
