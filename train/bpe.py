#!/usr/bin/env python3
"""Byte-level BPE tokenizer: training and encoding, written to match the engine's `gpt2` model
with the `llama-bpe` pre-tokenizer exactly (GPT-2 byte alphabet, Llama 3 split, merge ranks,
whole-word shortcut). Digits are never merged, so numbers are read one digit at a time.

  bpe.py train --vocab 2048 --out tokenizer.json   (trains on generated documents)
"""
import argparse
import collections
import json
import random
import re
import sys

import generate

SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
                 "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
                 "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
# The Llama 3 pre-tokenizer regex for ASCII text (the generator writes ASCII only).
SPLIT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_alphabet():
    """GPT-2's byte → printable character map, in GPT-2's order."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}, [chr(c) for c in cs]


BYTE2CH, BYTE_TOKENS = byte_alphabet()


def word_spans(text):
    """The pre-tokenizer's words, in the byte alphabet, each with its first character in text."""
    return [(m.start(), "".join(BYTE2CH[b] for b in m.group().encode())) for m in SPLIT.finditer(text)]


def words(text):
    return [w for _, w in word_spans(text)]


def train(vocab_size, n_docs=4000, seed=11):
    r = random.Random(seed)
    counts = collections.Counter()
    fams = list(generate.FAMILIES)
    for i in range(n_docs):
        d = generate.make(r, fams[i % 4], r.randint(50, 400))
        counts.update(words(d["prompt"] + " " + d["answer"]))
    corpus = {tuple(w): c for w, c in counts.items() if not any(ch.isdigit() for ch in w)}
    merges, vocab = [], list(BYTE_TOKENS)
    n_merges = vocab_size - 256 - len(SPECIAL)
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for w, c in corpus.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        new = {}
        for w, c in corpus.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        corpus = new
    tokens = vocab + SPECIAL
    types = [1] * len(vocab) + [3] * len(SPECIAL)
    return {"tokens": tokens, "types": types, "merges": merges, "pre": "llama-bpe",
            "bos": tokens.index("<|begin_of_text|>"), "eos": tokens.index("<|end_of_text|>"),
            "eot": tokens.index("<|eot_id|>"), "add_bos": True, "chat_template": CHAT_TEMPLATE}


class Tokenizer:
    def __init__(self, spec):
        self.spec = spec
        self.id = {t: i for i, t in enumerate(spec["tokens"])}
        self.rank = {tuple(m.split(" ", 1)): i for i, m in enumerate(spec["merges"])}
        self.cache = {}
        self.bos = spec["bos"]
        self.eos = spec["eos"]

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        if w in self.id:  # llama-bpe: a whole word in the vocabulary is one token
            out = [self.id[w]]
        else:
            sym = list(w)
            while len(sym) > 1:
                best = min(((self.rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(sym, sym[1:]))))
                if best[0] == 1 << 30:
                    break
                i = best[1]
                sym[i:i + 2] = [sym[i] + sym[i + 1]]
            out = [self.id[s] for s in sym]
        self.cache[w] = out
        return out

    def encode(self, text, bos=True):
        return self.encode_with_starts(text, bos)[0]

    def encode_with_starts(self, text, bos=True):
        """encode(text) and, for each token, the first character of its word in text (BOS: 0)."""
        ids, starts = ([self.bos], [0]) if bos else ([], [])
        for start, w in word_spans(text):
            t = self.word(w)
            ids += t
            starts += [start] * len(t)
        return ids, starts

    def decode(self, ids):
        inv = {c: b for b, c in BYTE2CH.items()}
        toks = [self.spec["tokens"][i] for i in ids if self.spec["types"][i] == 1]
        return bytes(inv[c] for t in toks for c in t).decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train"])
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--out", default="tokenizer.json")
    a = ap.parse_args()
    spec = train(a.vocab)
    with open(a.out, "w") as f:
        json.dump(spec, f)
    t = Tokenizer(spec)
    d = generate.make(random.Random(5), "needle", 500)
    ids = t.encode(d["prompt"])
    print(f"{len(spec['tokens'])} tokens, {len(spec['merges'])} merges; a 500-token document: {len(d['prompt'])} chars -> {len(ids)} tokens",
          file=sys.stderr)
    assert t.decode(ids) == d["prompt"]


if __name__ == "__main__":
    main()
