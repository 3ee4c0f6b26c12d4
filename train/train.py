#!/usr/bin/env python3
"""Trains a small Llama-architecture model on the generator's retrieval documents (CPU, torch).

Recipe (after ../shared/notes/training-small-retrieval-models.md): start at very short
documents so the retrieval (copy) circuit forms, then grow the length in phases that mix short
and long documents; loss on every token with the answer digits weighted x10. The RoPE is the
GGUF `llama` layout (adjacent pairs), so the weights export without permutation.

  train.py --name main --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 768 --minutes 70 --out out/
Writes OUT/NAME.safetensors (GGUF tensor names) and OUT/NAME.json (hyper-parameters, log).
"""
import argparse
import bisect
import json
import math
import os
import random
import re
import struct
import sys
import time

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

import bpe
import generate


# The config keys that describe the model itself: its tensors and the context it was trained on
# (what `specprefill convert --config` reads); the others in a config record how it was trained.
MODEL_KEYS = ("dim", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "rope_base", "context_length")


def head_dim(c):
    return c.get("head_dim") or c["dim"] // c["heads"]


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d, hd = c["dim"], head_dim(c)
        self.emb = torch.nn.Embedding(c["vocab"], d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            L = torch.nn.Module()
            L.attn_norm = torch.nn.Parameter(torch.ones(d))
            L.wq = torch.nn.Linear(d, c["heads"] * hd, bias=False)
            L.wk = torch.nn.Linear(d, c["kv_heads"] * hd, bias=False)
            L.wv = torch.nn.Linear(d, c["kv_heads"] * hd, bias=False)
            L.wo = torch.nn.Linear(c["heads"] * hd, d, bias=False)
            L.ffn_norm = torch.nn.Parameter(torch.ones(d))
            L.gate = torch.nn.Linear(d, c["ffn"], bias=False)
            L.up = torch.nn.Linear(d, c["ffn"], bias=False)
            L.down = torch.nn.Linear(c["ffn"], d, bias=False)
            self.layers.append(L)
        self.norm = torch.nn.Parameter(torch.ones(d))
        self.out = torch.nn.Linear(d, c["vocab"], bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        inv = c["rope_base"] ** (-torch.arange(0, hd, 2).float() / hd)
        self.register_buffer("inv_freq", inv, persistent=False)

    @staticmethod
    def rms(x, w, eps=1e-5):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    @staticmethod
    def rope(x, cos, sin):  # x [B, H, T, hd], cos and sin [T, hd/2]; rotate adjacent pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def forward(self, ids, pos=None):
        """pos: the positions of the tokens, [T] for every row alike (default 0 .. T-1) or [B, T]."""
        B, T = ids.shape
        c = self.c
        H, KV, hd = c["heads"], c["kv_heads"], head_dim(c)
        if pos is None:
            pos = torch.arange(T, device=ids.device)
        inv, mscale, orig = self.inv_freq, 1.0, c.get("context_length", 0)
        if c.get("yarn") and (n := int(pos.max()) + 1) > orig:  # the batch's length read only under --yarn
            # As the engine reads a sequence longer than the model's context by default (YaRN by
            # its length over the context, the paper's ramp between 1 and 32 turns, temperature
            # 1 + 0.1 ln s on cos and sin): training under it teaches the positions it makes.
            s = n / orig
            mix = ((orig * inv / (2 * math.pi) - 1) / 31).clamp(0, 1)
            inv, mscale = inv * (mix + (1 - mix) / s), 1 + 0.1 * math.log(s)
        ang = pos[..., None].float() * inv  # once for every layer's q and k
        cos, sin = ang.cos() * mscale, ang.sin() * mscale
        if ang.dim() == 3:  # positions per row: broadcast over the heads
            cos, sin = cos[:, None], sin[:, None]
        mask = torch.full((T, T), float("-inf"), device=ids.device).triu(1)
        x = self.emb(ids)
        for L in self.layers:
            h = self.rms(x, L.attn_norm)
            q = self.rope(L.wq(h).view(B, T, H, hd).transpose(1, 2), cos, sin)
            k = self.rope(L.wk(h).view(B, T, KV, hd).transpose(1, 2), cos, sin)
            v = L.wv(h).view(B, T, KV, hd).transpose(1, 2)
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            a = attend(q.reshape(B * H, T, hd), k.reshape(B * H, T, hd), v.reshape(B * H, T, hd), mask)
            a = a.view(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)
            x = x + L.wo(a)
            h = self.rms(x, L.ffn_norm)
            x = x + L.down(F.silu(L.gate(h)) * L.up(h))
        return self.out(self.rms(x, self.norm))


def attention(q, k, v, mask):  # q [N, Tq, hd], k and v [N, Tk, hd], mask [Tq, Tk]
    s = torch.baddbmm(mask.expand(q.shape[0], *mask.shape), q, k.transpose(1, 2), alpha=1 / math.sqrt(q.shape[-1]))
    return torch.bmm(s.softmax(-1), v)


def attend(q, k, v, mask, block=1024):
    """Causal attention of [N, T, hd] rows. Long rows go by blocks of queries, each against the
    keys up to its end, recomputed in the backward pass (checkpointing): the scores of an 8k-token
    document would otherwise hold gigabytes per layer until the backward pass."""
    T = q.shape[1]
    if T <= block:
        return attention(q, k, v, mask)
    return torch.cat([torch.utils.checkpoint.checkpoint(attention, q[:, i:i + block], k[:, :i + block], v[:, :i + block],
                                                        mask[i:i + block, :i + block], use_reentrant=False)
                      for i in range(0, T, block)], 1)


def batch(tok, r, n_tokens, lo, hi, pick_family, max_questions, hops, chain, offices=False):
    """About n_tokens of documents of one length bucket (0.8 L .. L, L drawn from lo..hi, so
    little is padding), padded with EOS; weights mark the answer tokens. A document carries 1 to
    max_questions questions, each followed by its answer: more answers per token read. Also
    returns the family of each document."""
    L, n_q = r.randint(lo, hi), r.randint(1, max_questions)  # one length bucket and question count per batch
    seqs, weights, fams = [], [], []
    while sum(len(s) for s in seqs) < n_tokens:
        fams.append(pick_family())
        doc, qas = generate.make_multi(r, fams[-1], r.randint(max(lo, int(0.8 * L)), L), n_q, hops, chain, offices)
        ids = tok.encode(doc)
        tail, tail_w = questions_and_answers(tok, qas)
        seqs.append(ids + tail)
        weights.append([1.0] * len(ids) + tail_w)
    ids, w, _ = pad(tok, seqs, weights)
    return ids, w, fams


def questions_and_answers(tok, qas):
    """What follows a document: each question and its answer, then EOS; with their loss weights
    (the answers and EOS x10)."""
    ids, w = [], []
    for q, a in qas:
        p = tok.encode(f"\nQuestion: {q}\nAnswer:", bos=False)
        t = tok.encode(" " + a, bos=False)
        ids += p + t
        w += [1.0] * len(p) + [10.0] * len(t)
    return ids + [tok.eos], w + [10.0]


def pad(tok, seqs, weights, positions=None):
    """Rows of token ids and weights as tensors, padded with EOS at weight 0; positions (per row,
    optional) padded with the row's last, so the padding comes after every real token."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), tok.eos, dtype=torch.long)
    w = torch.zeros(len(seqs), T)
    pos = torch.zeros(len(seqs), T, dtype=torch.long) if positions else None
    for i, (s, ww) in enumerate(zip(seqs, weights)):
        ids[i, :len(s)] = torch.tensor(s)
        w[i, :len(s)] = torch.tensor(ww)
        if positions:
            pos[i, :len(s)] = torch.tensor(positions[i])
            pos[i, len(s):] = positions[i][-1]
    return ids, w, pos


# SpecPrefill shows the main a sparse prompt: the chunks the draft kept, each token at its original
# position, gaps between them, which a main trained on whole documents never saw (stage 10's main at
# 16k: the oracle's own 10 % answered 55 % where full prefill answered 65 % on one fresh set, though
# as well as full on another). A sparse batch is what it will be shown: chunks of 32 tokens kept as
# a good selection keeps them (those holding the evidence of every question, most of the look-alike
# facts, random others to the keep rate), the questions and answers whole after them.
CHUNK = 32


def sentence_around(doc, i, j):
    """The sentence or table row holding doc[i:j]."""
    start = max(doc.rfind(". ", 0, i) + 2, doc.rfind("\n", 0, i) + 1)
    ends = [e for e in (doc.find(". ", j), doc.find("\n", j)) if e >= 0]
    return start, (min(ends) + 1 if ends else len(doc))


def sparse_rows(tok, r, doc, qas, keep, fact_share=0.7):
    """One document read sparsely: (ids, weights, positions)."""
    ids, starts = tok.encode_with_starts(doc)
    spans = []
    for q, a in qas:  # the evidence: sentences holding an answer or a name the question asks about
        for key in [a] + generate.NAME.findall(q):
            for m in re.finditer(r"(?<![\w])" + re.escape(key) + r"(?![\w])", doc):
                spans.append(sentence_around(doc, m.start(), m.end()))
    spans += [m.span() for m in generate.FACT.finditer(doc) if r.random() < fact_share]
    n_chunks = (len(ids) + CHUNK - 1) // CHUNK
    kept = {n_chunks - 1}
    for s, e in spans:
        first = max(0, bisect.bisect_right(starts, s) - 1)
        last = max(first, bisect.bisect_left(starts, e) - 1)
        kept.update(range(first // CHUNK, last // CHUNK + 1))
    others = [c for c in range(n_chunks) if c not in kept]
    r.shuffle(others)
    kept.update(others[:max(0, math.ceil(keep * n_chunks) - len(kept))])
    pos = [0] + [p for c in sorted(kept) for p in range(c * CHUNK, min(len(ids), (c + 1) * CHUNK)) if p > 0]
    out = [ids[p] for p in pos]
    w = [0.0] + [1.0 if p - 1 == q else 0.0 for q, p in zip(pos, pos[1:])]  # no loss across a gap
    tail, tail_w = questions_and_answers(tok, qas)
    return out + tail, w + tail_w, pos + list(range(len(ids), len(ids) + len(tail)))


def sparse_batch(tok, r, n_tokens, lo, hi, keep_lo, keep_hi, pick_family, max_questions, hops, chain, offices=False):
    """About n_tokens of kept tokens of documents of one length bucket (as batch()), each row with
    its own positions."""
    L, n_q, keep = r.randint(lo, hi), r.randint(1, max_questions), r.uniform(keep_lo, keep_hi)
    rows, fams = [], []
    while sum(len(x[0]) for x in rows) < n_tokens:
        fams.append(pick_family())
        doc, qas = generate.make_multi(r, fams[-1], r.randint(max(lo, int(0.8 * L)), L), n_q, hops, chain, offices)
        rows.append(sparse_rows(tok, r, doc, qas, keep))
    ids, w, pos = pad(tok, *zip(*rows))
    return ids, w, fams, pos


@torch.no_grad()
def accuracy(model, tok, r, n, lo, hi, fams, chain):
    ok, device = 0, next(model.parameters()).device
    for _ in range(n):
        d = generate.make(r, r.choice(fams), r.randint(lo, hi), chain)
        ids = tok.encode(d["prompt"])
        out = []
        for _ in range(len(d["answer"]) + 1):
            nxt = int(model(torch.tensor([ids + out], device=device))[0, -1].argmax())
            if nxt == tok.eos:
                break
            out.append(nxt)
        ok += tok.decode(out).strip() == d["answer"]
    return ok / n


GGUF_NAMES = [("attn_norm", "attn_norm.weight"), ("wq.weight", "attn_q.weight"), ("wk.weight", "attn_k.weight"),
              ("wv.weight", "attn_v.weight"), ("wo.weight", "attn_output.weight"), ("ffn_norm", "ffn_norm.weight"),
              ("gate.weight", "ffn_gate.weight"), ("up.weight", "ffn_up.weight"), ("down.weight", "ffn_down.weight")]


def tensor_names(c):
    names = {"emb.weight": "token_embd.weight", "norm": "output_norm.weight", "out.weight": "output.weight"}
    for i in range(c["layers"]):
        for a, b in GGUF_NAMES:
            names[f"layers.{i}.{a}"] = f"blk.{i}.{b}"
    return names


GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path):
    """The F32/F16 tensors of a GGUF file (what `specprefill convert` writes for these models), as
    {name: float32 tensor} with the torch shape (GGUF lists dimensions innermost first)."""
    return read_gguf_whole(path)[1]


def config_of_gguf(path):
    """The model config (as train.py writes it) of a GGUF that `specprefill convert` wrote."""
    meta = read_gguf_whole(path)[0]
    a = meta["general.architecture"]
    return {"dim": meta[f"{a}.embedding_length"], "layers": meta[f"{a}.block_count"], "heads": meta[f"{a}.attention.head_count"],
            "kv_heads": meta[f"{a}.attention.head_count_kv"], "head_dim": meta[f"{a}.rope.dimension_count"],
            "ffn": meta[f"{a}.feed_forward_length"], "vocab": len(meta["tokenizer.ggml.tokens"]),
            "rope_base": meta[f"{a}.rope.freq_base"], "context_length": meta[f"{a}.context_length"]}


def read_gguf_whole(path):
    """(metadata, tensors) of a GGUF file; see read_gguf."""
    with open(path, "rb") as f:
        data = f.read()
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("<Q")
        off += n
        return data[off - n:off].decode()

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(GGUF_SCALARS[t])

    if data[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    off = 4
    take("<I")
    n_tensors, n_kv = take("<Q"), take("<Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        infos.append((name, dims, take("<I"), take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (off + align - 1) // align * align
    out = {}
    for name, dims, t, o in infos:
        if t not in (0, 1):
            raise SystemExit(f"{path}: tensor {name} is not F32 or F16 (convert with --type F16)")
        n = math.prod(dims)
        dtype = torch.float32 if t == 0 else torch.float16
        raw = bytearray(data[base + o:base + o + n * (4 if t == 0 else 2)])
        out[name] = torch.frombuffer(raw, dtype=dtype).float().view(list(reversed(dims)))
    return meta, out


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).view(h["shape"])
    return out


def load(model, path):
    """Starts from a saved model (.safetensors from this script, or a GGUF of F16/F32 tensors).
    The saved model may be smaller: fewer layers, heads, KV heads or FFN units. Each saved tensor
    fills the leading block of the new one, and the output projections of everything new (new
    layers, heads and FFN units) start at zero, so the grown model computes exactly what the saved
    one did, then learns. The saved model's first query head lands on the first KV head (the
    grouped-query mapping keeps that pairing). A model with fewer heads takes the leading ones."""
    saved = read_gguf(path) if path.endswith(".gguf") else read_safetensors(path)
    state = model.state_dict()
    have = 0
    for k, gguf in tensor_names(model.c).items():
        if k.endswith("wo.weight") or k.endswith("down.weight"):
            state[k].zero_()
        if gguf in saved:
            t = saved[gguf]
            block = tuple(slice(0, min(a, b)) for a, b in zip(state[k].shape, t.shape))
            state[k][block] = t[block]
            have += 1
    print(f"loaded {have} tensors from {path}", file=sys.stderr)


def write_safetensors(tensors, path):
    """tensors: GGUF name -> tensor, written as F32 (atomically: a crash leaves the old file)."""
    header, blobs, off = {}, [], 0
    for name, v in tensors.items():
        b = v.detach().float().cpu().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def save(state, c, path, log):
    """state (a model's state_dict) as safetensors with GGUF tensor names (F32), plus the
    hyper-parameters as JSON."""
    names = tensor_names(c)
    write_safetensors({names[k]: v for k, v in state.items() if k in names}, path + ".safetensors")
    with open(path + ".json", "w") as f:
        json.dump({"config": c, "log": log}, f, indent=1)


def family_weights(text):
    """--family-weights FAMILY=W,... as {family: W}; argparse turns the errors into usage errors."""
    weights = {}
    for item in filter(None, text.split(",")):
        f, _, wt = item.partition("=")
        if f not in generate.FAMILIES:
            raise argparse.ArgumentTypeError(f"no family {f!r} ({', '.join(generate.FAMILIES)})")
        try:
            weights[f] = float(wt)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not FAMILY=W") from None
        if not weights[f] >= 0:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight must be a number >= 0")
    return weights


def reference_blas():
    """Whether this process loaded Debian's reference BLAS: python3-torch depends on any libblas.so.3, and
    without OpenBLAS installed the slow reference one answers (measured 6x slower per step)."""
    try:
        with open("/proc/self/maps") as f:
            return any("/blas/libblas.so" in line for line in f)
    except OSError:  # not Linux: nothing to tell
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--tokenizer", default="out/tokenizer.json")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=0, help="default dim / heads")
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--rope-base", type=float, default=10000)
    ap.add_argument("--context-length", type=int, default=2400,
                    help="the training context the GGUF states: past it the engine reads with YaRN by default (the curriculum's longest documents are ~2 300 tokens)")
    ap.add_argument("--yarn", action="store_true",
                    help="read a batch longer than --context-length as the engine does by default (YaRN by its length)")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps")
    ap.add_argument("--batch-tokens", type=int, default=1536, help="tokens per batch (at least one document)")
    ap.add_argument("--questions", type=int, default=4, help="at most this many questions per training document")
    ap.add_argument("--longest", type=int, default=2800,
                    help="longest documents of the last phase, in the generator's units (about 15%% more than the "
                         "bundled tokenizer's tokens: 2800 reaches the 2 400-token evaluation documents)")
    ap.add_argument("--init", help="start from this .safetensors or .gguf (a smaller model grows: more layers, heads, FFN)")
    ap.add_argument("--shortest", type=int, default=200,
                    help="shortest documents of the last phase, in the generator's units (a stage on long documents only)")
    ap.add_argument("--start-phase", type=int, default=0, help="skip the curriculum's first phases (with --init)")
    ap.add_argument("--focus", help="before the curriculum, train this family alone on tiny documents (see --focus-tokens)")
    ap.add_argument("--focus-share", type=float, default=0.15, help="share of the time the --focus phase gets")
    ap.add_argument("--focus-tokens", default="4-40",
                    help="document lengths of the --focus phase, LO-HI in the generator's units")
    ap.add_argument("--hop-questions", action="store_true",
                    help="two-hop documents with several questions also ask each hop on its own (after the two-hop one)")
    ap.add_argument("--office-questions", action="store_true",
                    help="as --hop-questions, and every office of a two-hop document is asked too (the second hop's skill)")
    ap.add_argument("--hop-answer", choices=["room", "chain"], default="room",
                    help="two-hop answers: the room alone (as the evaluation sets), or the chain \"A's manager is B. "
                         "B's office is room 4821\" (two of the main's stages)")
    ap.add_argument("--stop-after", help="end after this phase (a number, or focus); the learning-rate schedule still "
                                         "spans --minutes, so the result is that run's checkpoint at that point")
    ap.add_argument("--advance-at", type=float, default=0.9,
                    help="leave a phase early once every family's answer accuracy reaches this")
    ap.add_argument("--average-last", type=float, default=0,
                    help="also write NAME-avg: the running mean of the weights over this last share of the time "
                         "(0: off)")
    ap.add_argument("--pose", type=int, default=0,
                    help="positional skip-wise training (PoSE): in --pose-share of the batches the positions after a "
                         "random cut jump by a random skip, so that they span up to this many (0: off)")
    ap.add_argument("--pose-share", type=float, default=0.75, help="share of the batches with skipped positions")
    ap.add_argument("--sparse", type=float, default=0,
                    help="share of the batches read sparsely, as SpecPrefill shows the main a prompt: chunks of 32 "
                         "tokens at their original positions, those with the evidence kept (0: off)")
    ap.add_argument("--sparse-tokens", default="4000-18000",
                    help="document lengths of the sparse batches, LO-HI in the generator's units")
    ap.add_argument("--sparse-keep", default="0.05-0.3", help="share of a sparse batch's chunks kept, LO-HI")
    ap.add_argument("--family-weights", type=family_weights, default={},
                    help="FAMILY=W,...: draw these families W times as often as their error alone would "
                         "(e.g. table=3; default: by error alone)")
    ap.add_argument("--doc-weight", type=float, default=1.0,
                    help="loss weight of the document and question tokens (the answers stay x10): below 1, a long "
                         "document's unpredictable text (random names and digits) weighs less against its answers")
    ap.add_argument("--eval-docs", type=int, default=20, help="documents generated at the end of each phase (0: none)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when PyTorch sees a GPU")
    ap.add_argument("--bf16", action="store_true",
                    help="matrix products in bfloat16 (autocast; weights, gradients and optimizer stay float32): measured 1.45x "
                         "faster per step on 8k-token documents on an AVX-512 BF16 CPU")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="out")
    a = ap.parse_args()
    device = a.device if a.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: PyTorch sees no GPU here (Debian's python3-torch is built for the CPU only)")
    if device == "cpu" and reference_blas():
        print("train.py: warning: PyTorch's matrix products run on the reference BLAS (Debian's libblas3), about 6x "
              "slower than OpenBLAS here: apt install libopenblas0-openmp", file=sys.stderr)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    spec = json.load(open(a.tokenizer))
    tok = bpe.Tokenizer(spec)
    c = {"dim": a.dim, "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "ffn": a.ffn, "vocab": len(spec["tokens"]),
         "rope_base": a.rope_base, "seed": a.seed, "minutes": a.minutes, "context_length": a.context_length}
    if a.head_dim:
        c["head_dim"] = a.head_dim
    if a.init:
        c["init"], c["start_phase"] = os.path.basename(a.init), a.start_phase
    c.update(lr=a.lr, questions=a.questions, longest=a.longest, shortest=a.shortest)  # the training options, for models/*.train.json
    if a.focus:
        c.update(focus=a.focus, focus_share=a.focus_share, focus_tokens=a.focus_tokens)
    if a.hop_questions:
        c["hop_questions"] = True
    if a.office_questions:
        c["office_questions"] = True
    if a.hop_answer != "room":
        c["hop_answer"] = a.hop_answer
    if a.stop_after is not None:
        c["stop_after"] = a.stop_after
    if a.average_last:
        c["average_last"] = a.average_last
    if a.pose:
        c.update(pose=a.pose, pose_share=a.pose_share)
    if a.sparse:
        c.update(sparse=a.sparse, sparse_tokens=a.sparse_tokens, sparse_keep=a.sparse_keep)
    family_weight = {f: a.family_weights.get(f, 1.0) for f in generate.FAMILIES}
    if a.family_weights:
        c["family_weights"] = a.family_weights
    if a.doc_weight != 1.0:
        c["doc_weight"] = a.doc_weight
    if a.yarn:
        c["yarn"] = True
    if a.bf16:
        c["bf16"] = True
    chain = a.hop_answer == "chain"
    model = Model(c)
    if a.init:
        load(model, a.init)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    # curriculum: (share of the time, min tokens, max tokens, families).
    # The copy circuit forms on tiny single-needle documents first; harder families come later.
    # A phase ends when its share of the time is spent or, earlier, when every family is answered
    # (its time then goes to the next phases).
    ALL = list(generate.FAMILIES)
    # One question per document until the copy circuit exists: with several needles to choose
    # from, the "copy the only number" shortcut that bootstraps it is gone (measured: no progress
    # in 1 000 steps, against 200 with one question).
    Q = a.questions
    phases = [(0.10, 4, 24, ["needle"], 1), (0.08, 4, 48, ["needle", "table"], 1), (0.10, 10, 120, ALL, Q),
              (0.14, 30, 320, ALL, Q), (0.18, 60, 700, ALL, Q), (0.20, 100, 1400, ALL, Q), (0.20, a.shortest, a.longest, ALL, Q)]
    labels = list(range(len(phases)))[a.start_phase:]
    phases = phases[a.start_phase:]
    if a.focus:
        # A family that the mixed phases do not teach (two hops: at 30-320 units, 5 000 steps left
        # it at the guessing rate) gets its own phase of tiny documents first: dozens of answers per
        # batch, and little else to attend to.
        share = a.focus_share * sum(p[0] for p in phases) / (1 - a.focus_share)
        focus_lo, focus_hi = (int(x) for x in a.focus_tokens.split("-"))
        phases.insert(0, (share, focus_lo, focus_hi, [a.focus], Q))
        labels.insert(0, "focus")
    total_share = sum(p[0] for p in phases)
    # Running answer accuracy per family (teacher-forced: every answer token predicted). Families
    # are drawn in proportion to their error, so training time goes where answers are still wrong.
    solved = {f: 0.0 for f in ALL}
    r = random.Random(a.seed)

    def pick_from(fams):
        wts = [max(0.15, 1.0 - solved[f]) * family_weight[f] for f in fams]
        return lambda: r.choices(fams, wts)[0]

    # The weights at the end of a run are one noisy sample (batches of ~1 500 tokens hold only a
    # few answers): the mean of the weights over the run's last stretch (stochastic weight
    # averaging) is a better model than any one of them, as the mean of separate runs was.
    sparse_lo, sparse_hi = (int(x) for x in a.sparse_tokens.split("-"))
    keep_lo, keep_hi = (float(x) for x in a.sparse_keep.split("-"))
    average, n_average = None, 0
    t0, step, log = time.time(), 0, []
    budget = a.minutes * 60
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, a.name)
    for pi, (share, lo, hi, fams, n_q) in enumerate(phases):
        end = t0 + budget * sum(p[0] for p in phases[:pi + 1]) / total_share
        phase_steps = 0
        for f in fams:
            solved[f] = min(solved[f], 0.5)  # longer documents: unproven until seen
        while time.time() < end:
            if phase_steps >= 200 and min(solved[f] for f in fams) >= a.advance_at and pi + 1 < len(phases):
                break
            frac = (time.time() - t0) / budget
            lr = a.lr * min(1, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))
            for g in opt.param_groups:
                g["lr"] = lr
            pos = None  # positions per row: sparse batches only
            if a.sparse and r.random() < a.sparse:
                ids, w, doc_fams, pos = sparse_batch(tok, r, a.batch_tokens, sparse_lo, sparse_hi, keep_lo, keep_hi,
                                                     pick_from(fams), n_q, a.hop_questions, chain, a.office_questions)
            elif pi > 0 and r.random() < 0.25:  # mix: a quarter of the batches from the earlier, shorter phases
                _, lo2, hi2, f2, q2 = phases[r.randrange(pi)]
                ids, w, doc_fams = batch(tok, r, a.batch_tokens, lo2, hi2, pick_from(f2), q2, a.hop_questions, chain, a.office_questions)
            else:
                ids, w, doc_fams = batch(tok, r, a.batch_tokens, lo, hi, pick_from(fams), n_q, a.hop_questions, chain, a.office_questions)
            if a.doc_weight != 1.0:  # weight 1 marks the document and question text (answers 10, padding 0)
                w = torch.where(w == 1.0, a.doc_weight, w)
            ids, w = ids.to(device), w.to(device)
            T = ids.shape[1] - 1
            if pos is not None:
                pos = pos[:, :-1].to(device)
            elif a.pose > T and r.random() < a.pose_share:
                # The relative distances of a long document, on a short one: the question and
                # answer sit after the cut (the end), the facts anywhere before it.
                cut, skip = r.randrange(1, T), r.randint(0, a.pose - T)
                pos = torch.arange(T)
                pos[cut:] += skip
                pos = pos.to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=a.bf16):
                logits = model(ids[:, :-1], pos)
            logits = logits.float()
            per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
            wt = w[:, 1:].reshape(-1)
            loss = (per_token * wt).sum() / wt.sum()
            answer_loss = (per_token * (wt > 1)).sum() / (wt > 1).sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if a.average_last and time.time() - t0 >= budget * (1 - a.average_last):
                n_average += 1
                with torch.no_grad():
                    if average is None:
                        average = {k: p.detach().clone() for k, p in model.named_parameters()}
                    for k, p in model.named_parameters():
                        average[k].add_((p - average[k]) / n_average)
            with torch.no_grad():
                wrong = (logits.argmax(-1) != ids[:, 1:]) & (w[:, 1:] > 1)
                for f, bad in zip(doc_fams, wrong.any(-1).tolist()):
                    solved[f] = 0.98 * solved[f] + 0.02 * (0.0 if bad else 1.0)
            step += 1
            phase_steps += 1
            if step % 25 == 0:
                acc = " ".join(f"{f}={solved[f]:.2f}" for f in ALL)
                print(f"{a.name} step {step} phase {labels[pi]} len {lo}-{hi} loss {loss.item():.3f} "
                      f"answer {answer_loss.item():.3f} lr {lr:.2e} [{acc}] {(time.time() - t0) / 60:.1f} min",
                      file=sys.stderr, flush=True)
        acc = accuracy(model, tok, random.Random(1000 + pi), a.eval_docs, lo, hi, fams, chain) if a.eval_docs else None
        log.append({"phase": labels[pi], "tokens": [lo, hi], "step": step, "minutes": round((time.time() - t0) / 60, 1),
                    "exact_match": acc, "answer_accuracy": {f: round(solved[f], 3) for f in fams}})
        print(f"{a.name}: phase {labels[pi]} done at step {step}: exact match "
              f"{'-' if acc is None else f'{acc:.2f}'} on {lo}-{hi} tokens",
              file=sys.stderr, flush=True)
        save(model.state_dict(), c, path, log)
        if average is not None:  # its log is the run's: the accuracies measured on the last weights
            save(average, dict(c, averaged_steps=n_average), path + "-avg", log)
        if a.stop_after is not None and str(labels[pi]) == a.stop_after:
            break


if __name__ == "__main__":
    main()
