#!/usr/bin/env python3
"""Mutation testing: plants each fault of tests/mutants/mutants.py in a scratch copy of the tree
(build-mutants/tree: the working tree is never touched), rebuilds incrementally, runs the fast
suite, and prints the mutation score (faults caught / planted) and the survivors.

  tests/mutants/run.py                 every mutant (about 30 s each on 2 cores)
  tests/mutants/run.py --subset 4      a rotating subset (CI: a different 4 each day)
  tests/mutants/run.py --only a,b      these mutants
  tests/mutants/run.py --list          the mutants and the tests meant to kill them

The fast suite is every ctest program except the slow Python references and the shared-fixture
comparisons (the scratch tree has no ../shared: the suite CI runs). Exit 1 when the score is below
--min-score (default 0.95), when a mutant survives that is not marked known_survivor in mutants.py
(a drop: on a subset, one survivor fails the run), or a mutant is stale (its text no longer in the
code) or does not build.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from mutants import MUTANTS  # noqa: E402

FAST = ["test_gguf", "test_quant", "test_tokenizer", "test_chat", "test_model", "test_specprefill", "test_specdecode", "test_common",
        "test_request", "test_steps", "test_cli", "test_eval_gate", "test_ruler", "test_server"]


def sh(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


OPTIONAL_SET_FILES = ("src/kernels_avx512", "src/kernels_amx", "src/kernels_avxvnni")


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def sync_tree(tree):
    """Copies the tracked files into the scratch tree, leaving unchanged files (and their mtimes) alone."""
    files = sh(["git", "-C", ROOT, "ls-files", "-z"]).stdout.split("\0")
    for rel in filter(None, files):
        src, dst = os.path.join(ROOT, rel), os.path.join(tree, rel)
        if not os.path.isfile(src):
            continue
        with open(src, "rb") as f:
            data = f.read()
        if os.path.exists(dst):
            with open(dst, "rb") as f:
                if f.read() == data:
                    continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        shutil.copymode(src, dst)
    big = os.path.join(tree, "models-big")  # the fetched real model (scripts/get-models.sh), as CI has it
    if os.path.isdir(os.path.join(ROOT, "models-big")) and not os.path.exists(big):
        os.symlink(os.path.join(ROOT, "models-big"), big)


def run_suite(build, timeout):
    """The fast suite, stopping at the first failure. Returns (passed, name of the failing test)."""
    r = sh(["ctest", "--test-dir", build, "-R", "^(" + "|".join(FAST) + ")$", "--stop-on-failure", "--timeout", str(timeout)])
    failed = re.findall(r"Test +#\d+: (\S+) \.+\**(?:Failed|Timeout|Exception|\s*Not Run)", r.stdout)
    return r.returncode == 0, (failed[0] if failed else ("?" if r.returncode else None)), r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(ROOT, "build-mutants"))
    ap.add_argument("--only", help="comma-separated mutant names")
    ap.add_argument("--subset", type=int, help="a rotating subset of this many mutants (by the day)")
    ap.add_argument("--min-score", type=float, default=0.95)
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "venv"), help="the test references' venv (tests/ref/venv.sh)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per test program (a hang counts as caught)")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the suite unmutated first")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()

    names = [m["name"] for m in MUTANTS]
    if len(set(names)) != len(names):
        sys.exit("error: two mutants share a name")
    # a kernel file of an optional instruction set runs only on CPUs that have it: a mutant there
    # without the CPU flag that runs it survives everywhere else (three did on an AVX2-only Zen 3)
    unmarked = [m["name"] for m in MUTANTS if m["file"].startswith(OPTIONAL_SET_FILES) and not m.get("needs")]
    if unmarked:
        sys.exit(f"error: mutants in an optional instruction set's kernels without needs=: {', '.join(unmarked)}")
    if a.list:
        for m in MUTANTS:
            print(f"{m['name']:34} {m['file']:28} {m['why']}  [{m['guard']}]")
        return 0
    chosen = MUTANTS
    if a.only:
        want = a.only.split(",")
        unknown = [w for w in want if w not in names]
        if unknown:
            sys.exit(f"error: no mutant named {', '.join(unknown)}")
        chosen = [m for m in MUTANTS if m["name"] in want]
    elif a.subset:
        start = (int(time.time()) // 86400 * a.subset) % len(MUTANTS)
        chosen = [MUTANTS[(start + i) % len(MUTANTS)] for i in range(min(a.subset, len(MUTANTS)))]

    # a mutant in a kernel this CPU does not run (needs="amx_int8": a /proc/cpuinfo flag) cannot be caught here
    flags = cpu_flags()
    absent = [m for m in chosen if m.get("needs") and m["needs"] not in flags]
    for m in absent:
        print(f"  {m['name']:34} not planted: this CPU lacks {m['needs']}")
    chosen = [m for m in chosen if m not in absent]

    tree, build = os.path.join(a.work, "tree"), os.path.join(a.work, "build")
    os.makedirs(tree, exist_ok=True)
    sync_tree(tree)
    stale = []
    for m in MUTANTS:  # every mutant, not only the chosen: a stale one is found the day it goes stale
        with open(os.path.join(tree, m["file"])) as f:
            if f.read().count(m["find"]) != 1:
                stale.append(m["name"])
    if stale:
        print(f"error: stale mutants (their text is not in the code exactly once): {', '.join(stale)}")
        return 1
    cfg = ["cmake", "-S", tree, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DSP_WERROR=OFF", f"-DSP_VENV={a.venv}"]
    r = sh(cfg)
    if r.returncode:
        print(r.stdout[-3000:])
        return 1
    t0 = time.time()
    r = sh(["ninja", "-C", build])
    if r.returncode:
        print(r.stdout[-3000:])
        return 1
    print(f"== mutation testing: {len(chosen)} of {len(MUTANTS)} mutants; scratch build {time.time() - t0:.0f} s", flush=True)
    if not a.no_baseline:
        ok, failing, out = run_suite(build, a.timeout)
        if not ok:
            print(out[-4000:])
            print(f"error: the fast suite fails without any mutant ({failing})")
            return 1
    killed, survived, broken = [], [], []
    for m in chosen:
        path = os.path.join(tree, m["file"])
        with open(path) as f:
            original = f.read()
        t0 = time.time()
        try:
            with open(path, "w") as f:
                f.write(original.replace(m["find"], m["replace"], 1))
            r = sh(["ninja", "-C", build])
            if r.returncode:
                broken.append(m["name"])
                verdict = "DOES NOT BUILD"
                print(r.stdout[-1500:])
            else:
                ok, failing, _ = run_suite(build, a.timeout)
                if ok:
                    survived.append(m)
                    verdict = "survived (known: " + m["known_survivor"] + ")" if m.get("known_survivor") else f"SURVIVED (meant for {m['guard']})"
                else:
                    killed.append(m["name"])
                    verdict = f"caught by {failing}"
        finally:
            with open(path, "w") as f:
                f.write(original)
        print(f"  {m['name']:34} {verdict}  ({time.time() - t0:.0f} s)", flush=True)
    sh(["ninja", "-C", build])  # leave the scratch build unmutated
    planted = len(killed) + len(survived)
    score = len(killed) / planted if planted else 1.0
    print(f"mutation score: {len(killed)} of {planted} caught ({100 * score:.1f} %)")
    for m in survived:
        print(f"  survivor: {m['name']}: {m['why']}")
    for n in broken:
        print(f"  error: mutant {n} does not build (fix its text)")
    # a drop: a mutant the suite caught before survives now (known survivors are named in mutants.py)
    dropped = [m for m in survived if not m.get("known_survivor")]
    print(f"{len(killed)} passed, {len(dropped) + len(broken)} failed, {len(survived) - len(dropped) + len(absent)} skipped")
    return 0 if score >= a.min_score and not dropped and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
