#!/usr/bin/env python3
"""Writes the committed evaluation sets: documents from generate.py whose length in tokens of
the bundled tokenizer lies in a range, families in turn, held out from training by seed.
  make_eval.py --n 200 --tokens 2000-2400 --seed 100 > eval/retrieval-2k.jsonl
--family multihop --hops: two-hop documents only, each also asked its two hops on their own
(families "hop1": "Who is the manager of A?", "hop2": "Which room is the office of B?"), to see
which hop a model misses (`specprefill eval` reports each family).
"""
import argparse
import json
import random

import bpe
import generate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--tokens", default="2000-2400")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--tokenizer", default="out/tokenizer.json")
    ap.add_argument("--family", default="all", choices=["all"] + list(generate.FAMILIES), help="one family, or all (in turn)")
    ap.add_argument("--hops", action="store_true", help="two-hop documents also get each hop as a question of its own")
    a = ap.parse_args()
    lo, hi = map(int, a.tokens.split("-"))
    tok = bpe.Tokenizer(json.load(open(a.tokenizer)))
    r = random.Random(a.seed)
    fams = list(generate.FAMILIES) if a.family == "all" else [a.family]
    for i in range(a.n):
        fam = fams[i % len(fams)]
        guess = (lo + hi) // 2
        while True:
            d = generate.make(r, fam, guess)
            n = len(tok.encode(d["prompt"]))
            if lo <= n <= hi:
                break
            guess = max(16, int(guess * (lo + hi) / 2 / n))  # rescale the generator's length estimate
        d["tokens"] = n
        print(json.dumps(d))
        if a.hops and fam == "multihop":
            doc = d["prompt"][:d["prompt"].rindex("\nQuestion: ")]
            for family, (q, answer) in zip(("hop1", "hop2"), generate.hop_questions(*generate.chain_of(d["prompt"]))):
                print(json.dumps({"family": family, "prompt": f"{doc}\nQuestion: {q}\nAnswer:", "answer": answer, "tokens": n}))


if __name__ == "__main__":
    main()
