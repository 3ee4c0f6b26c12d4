#!/usr/bin/env python3
"""Averages the weights of models of the same shape (a "model soup").

Runs that continue one model with different seeds and learning rates end in different places of
the same basin; their mean is often better than each of them (Wortsman et al., 2022). The bundled
main is the mean of its sixth stage and two seventh-stage runs grown from it (models/README.md).

    average.py --out out/main out/main-g.safetensors out/s5/main-gA.safetensors ...

Writes OUT.safetensors (F32, GGUF tensor names, as train.py) and OUT.json: the model's shape and
training context (from the first input's JSON, what `specprefill convert --config` reads), with "average_of"
naming the inputs.
"""
import argparse
import json
import os
import sys

import train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("inputs", nargs="+", help=".safetensors written by train.py, all of one shape")
    a = ap.parse_args()
    models = [train.read_safetensors(p) for p in a.inputs]
    shapes = {k: v.shape for k, v in models[0].items()}
    for p, m in zip(a.inputs[1:], models[1:]):
        if {k: v.shape for k, v in m.items()} != shapes:
            raise SystemExit(f"{p}: tensors differ in names or shapes from {a.inputs[0]}")
    mean = {k: sum(m[k] for m in models) / len(models) for k in models[0]}
    train.write_safetensors(mean, a.out + ".safetensors")
    with open(os.path.splitext(a.inputs[0])[0] + ".json") as f:
        first = json.load(f)
    with open(a.out + ".json", "w") as f:
        model = {k: v for k, v in first["config"].items() if k in train.MODEL_KEYS}
        json.dump({"config": dict(model, average_of=[os.path.basename(p) for p in a.inputs]), "log": []}, f, indent=1)
    print(f"{a.out}.safetensors: mean of {len(models)} models", file=sys.stderr)


if __name__ == "__main__":
    main()
