#!/usr/bin/env python3
"""Checks that the engine reads a trained model as train.py computes it: the last logits of a
document within the model's training context and of one past it (where the engine applies YaRN
by default and train.py applies it under --yarn), against `specprefill logits`.

    check_engine.py ../models/main.gguf            (run by recipe.sh after the conversion)

Needs Debian's python3-torch and a built specprefill. Both read the same F16 weights and keep
keys and values in F32 (`--kv-type f32`), so only the order of sums differs (measured ~1e-3 on
logits of ~60): exits 1 past --tolerance, or when train.py without --yarn agrees past the
context (the check would then not be looking at the scaling).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch

import generate
import train


def engine_logits(sp, model, ids, n_last):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"tokens": [ids], "positions": [list(range(len(ids)))], "logits_batch": 0}, f)
    try:
        out = subprocess.run([sp, "logits", "-m", model, "--case", f.name, "--kv-type", "f32"], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(f.name)
    return np.array(json.loads(out)["logits"])[-n_last:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a GGUF written by `specprefill convert` from train.py's weights")
    ap.add_argument("--specprefill", default=os.path.join(os.path.dirname(__file__), "..", "build", "specprefill"))
    ap.add_argument("--tolerance", type=float, default=5e-3, help="largest difference allowed on any logit")
    a = ap.parse_args()
    config = train.config_of_gguf(a.model)
    ctx = config["context_length"]
    doc = generate.make(random.Random(7), "needle", 2 * ctx)["prompt"]
    ids = json.loads(subprocess.run([a.specprefill, "tokenize", "-m", a.model], input=doc, capture_output=True, text=True,
                                    check=True).stdout)
    models = {}
    for yarn in (True, False):  # the same weights, read with and without train.py's YaRN
        models[yarn] = train.Model(dict(config, yarn=yarn))
        train.load(models[yarn], a.model)
        models[yarn].eval()
    bad = 0
    for n in (ctx // 2, ctx + ctx // 5):
        if len(ids) < n:
            raise SystemExit(f"the generated document has {len(ids)} tokens, fewer than {n}")
        want = engine_logits(a.specprefill, a.model, ids[:n], 3)
        for yarn, model in models.items():
            with torch.no_grad():
                got = model(torch.tensor([ids[:n]]))[0, -3:].numpy()
            dev = float(np.abs(got - want).max())
            # past the context only the YaRN reading should agree; within it both (no scaling)
            agree = yarn or n <= ctx
            ok = dev <= a.tolerance if agree else dev > 10 * a.tolerance
            bad += not ok
            print(f"{n} tokens (context {ctx}), train.py {'with' if yarn else 'without'} --yarn: max |difference| {dev:.2e} "
                  f"({'should agree' if agree else 'should differ'}) {'ok' if ok else 'FAIL'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
