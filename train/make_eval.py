#!/usr/bin/env python3
"""Writes the committed evaluation sets: documents from generate.py whose length in tokens of
the bundled tokenizer lies in a range, families in turn, held out from training by seed.
  make_eval.py --n 200 --tokens 2000-2400 --seed 100 > my-set.jsonl
  make_eval.py --bundled ../eval     # the committed sets (BUNDLED below), as recipe.sh writes them
--family multihop --hops: two-hop documents only, each also asked its two hops on their own
(families "hop1": "Who is the manager of A?", "hop2": "Which room is the office of B?"), to see
which hop a model misses (`specprefill eval` reports each family).
"""
import argparse
import json
import os
import random
import sys

import bpe
import generate

# The committed sets: file name -> (documents, token range, seed). Their seeds are nowhere else;
# tests/test_eval_sets.sh checks that the committed files are what these rows write.
BUNDLED = {
    "retrieval-2k.jsonl": (200, (2000, 2400), 100),
    "retrieval-2k-ci.jsonl": (40, (2000, 2200), 200),
    "retrieval-8k.jsonl": (40, (7800, 8200), 300),
    "retrieval-16k.jsonl": (20, (15600, 16400), 1600),
}


def write_set(out, tok, n, lo, hi, seed, family="all", hops=False):
    r = random.Random(seed)
    fams = list(generate.FAMILIES) if family == "all" else [family]
    for i in range(n):
        fam = fams[i % len(fams)]
        guess = (lo + hi) // 2
        while True:
            d = generate.make(r, fam, guess)
            n_tokens = len(tok.encode(d["prompt"]))
            if lo <= n_tokens <= hi:
                break
            guess = max(16, int(guess * (lo + hi) / 2 / n_tokens))  # rescale the generator's length estimate
        d["tokens"] = n_tokens
        print(json.dumps(d), file=out)
        if hops and fam == "multihop":
            doc = d["prompt"][:d["prompt"].rindex("\nQuestion: ")]
            for name, (q, answer) in zip(("hop1", "hop2"), generate.hop_questions(*generate.chain_of(d["prompt"]))):
                print(json.dumps({"family": name, "prompt": f"{doc}\nQuestion: {q}\nAnswer:", "answer": answer,
                                  "tokens": n_tokens}), file=out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--tokens", default="2000-2400")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--tokenizer", default="out/tokenizer.json")
    ap.add_argument("--family", default="all", choices=["all"] + list(generate.FAMILIES), help="one family, or all (in turn)")
    ap.add_argument("--hops", action="store_true", help="two-hop documents also get each hop as a question of its own")
    ap.add_argument("--bundled", metavar="DIR", help="write the committed sets (BUNDLED) into DIR instead")
    a = ap.parse_args()
    tok = bpe.Tokenizer(json.load(open(a.tokenizer)))
    if a.bundled:
        for name, (n, (lo, hi), seed) in BUNDLED.items():
            with open(os.path.join(a.bundled, name), "w") as out:
                write_set(out, tok, n, lo, hi, seed)
        return
    lo, hi = map(int, a.tokens.split("-"))
    write_set(sys.stdout, tok, a.n, lo, hi, a.seed, a.family, a.hops)


if __name__ == "__main__":
    main()
