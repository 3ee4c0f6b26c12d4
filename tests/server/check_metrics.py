"""Lints a Prometheus text exposition as `promtool check metrics` does, on the rules it enforces:
every family has # HELP and # TYPE before its samples (once each), names are valid, counters end
in _total, histograms have _bucket (with le, ending at +Inf, cumulative), _sum and _count, every
value is a number. Usage: python check_metrics.py METRICS_FILE (prints problems, exit 1 if any)."""
import math
import re
import sys

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
problems, helped, typed, seen = [], {}, {}, set()
buckets = {}
for n, line in enumerate(open(sys.argv[1]).read().splitlines(), 1):
    if not line:
        continue
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        parts = line.split(" ", 3)
        if len(parts) < 4 or not NAME.match(parts[2]):
            problems.append(f"line {n}: malformed: {line}")
            continue
        table = helped if parts[1] == "HELP" else typed
        if parts[2] in table:
            problems.append(f"line {n}: second {parts[1]} for {parts[2]}")
        if parts[2] in seen:
            problems.append(f"line {n}: {parts[1]} for {parts[2]} after its samples")
        table[parts[2]] = parts[3]
        continue
    if line.startswith("#"):
        continue
    m = SAMPLE.match(line)
    if not m:
        problems.append(f"line {n}: not a sample: {line}")
        continue
    name, labels, value = m.groups()
    try:
        v = float(value)
    except ValueError:
        problems.append(f"line {n}: value is not a number: {line}")
        continue
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and typed.get(name[: -len(suffix)]) == "histogram":
            fam = name[: -len(suffix)]
    seen.add(fam)
    if fam not in helped or fam not in typed:
        problems.append(f"line {n}: {fam} has no {'HELP' if fam not in helped else 'TYPE'}")
    if typed.get(fam) == "counter" and not fam.endswith("_total"):
        problems.append(f"line {n}: counter {fam} should end in _total")
    if typed.get(fam) == "histogram" and name.endswith("_bucket"):
        le = re.search(r'le="([^"]*)"', labels or "")
        if not le:
            problems.append(f"line {n}: bucket without le")
        else:
            buckets.setdefault(fam, []).append((float(le.group(1)), v))
for fam, bs in buckets.items():
    if not bs or not math.isinf(bs[-1][0]):
        problems.append(f"{fam}: the last bucket is not le=\"+Inf\"")
    if any(b[1] > c[1] for b, c in zip(bs, bs[1:])):
        problems.append(f"{fam}: buckets are not cumulative")
for p in problems:
    print(p)
print(f"{len(typed)} families, {len(problems)} problems")
sys.exit(1 if problems else 0)
