"""A float64 NumPy forward pass of the llama / qwen2 / qwen3 architectures, written from their
definitions (not from the engine's code). PyPI's `gguf` package reads the file and dequantizes
every tensor type: its dequantization is the reference for the weights.

    x = token_embd[token]
    per layer:  h = rmsnorm(x) * attn_norm
                q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)            (qwen2: biases)
                q, k = rmsnorm per head * q_norm / k_norm                 (qwen3)
                q, k = rope(q, pos), rope(k, pos)     llama: pairs (2i, 2i+1); qwen2/3: (i, i + n_rot/2)
                per head: softmax(q.k / sqrt(head_dim) over keys with position <= pos) . v
                x += Wo . heads;   h = rmsnorm(x) * ffn_norm;   x += Wdown (silu(Wgate h) * Wup h)
    logits = Wout (rmsnorm(x) * output_norm)                            (Wout = token_embd if tied)

Emulation (emulate=True) rounds what the engine rounds by design, and nothing else: matrix-product
inputs to the weights' dot-product format (8-bit blocks of 32 for quantized weights, bf16 for BF16
weights, f32 otherwise) and K/V to f16 in the cache. How far that moves the logits from the exact
pass is the tolerance's yardstick (see check_forward.py)."""
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

QUANTIZED = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K}


def _q8_blocks(x):
    """Rounds each row to 8-bit blocks of 32 values (scale = max|x| / 127, nearest, ties to even)."""
    shape = x.shape
    b = x.reshape(-1, 32).astype(np.float32).astype(np.float64)
    d = (np.abs(b).max(axis=1, keepdims=True) / 127).astype(np.float32).astype(np.float64)
    q = np.where(d > 0, np.round(b / np.where(d > 0, d, 1)), 0)
    return (q * d).reshape(shape)


def _bf16(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        f = lambda k, d=None: r.fields[k].contents() if k in r.fields else d
        self.arch = f("general.architecture")
        a = self.arch
        self.n_layer = f(f"{a}.block_count")
        self.n_embd = f(f"{a}.embedding_length")
        self.n_head = f(f"{a}.attention.head_count")
        self.n_head_kv = f(f"{a}.attention.head_count_kv", self.n_head)
        self.head_dim = f(f"{a}.attention.key_length", self.n_embd // self.n_head)
        self.n_rot = f(f"{a}.rope.dimension_count", self.head_dim)
        self.rope_base = f(f"{a}.rope.freq_base", 10000.0)
        self.eps = f(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
        self.neox = a in ("qwen2", "qwen3")
        self.tensors = {t.name: t for t in r.tensors}
        self._cache = {}
        self.tied = "output.weight" not in self.tensors
        self.n_vocab = int(self.tensors["token_embd.weight"].shape[1])
        self.rope_freqs = self.w("rope_freqs.weight") if "rope_freqs.weight" in self.tensors else None
        self.n_ctx_train = f(f"{a}.context_length", 0)
        # position scaling: None, or (factor, original context, by_turns) for YaRN
        self.yarn = None
        if f(f"{a}.rope.scaling.type") == "yarn":
            self.yarn = (f(f"{a}.rope.scaling.factor"), f(f"{a}.rope.scaling.original_context_length", self.n_ctx_train), False)

    def fit_sequence(self, n):
        """The engine's default for a model with no scaling of its own: YaRN (the paper's ramp, in
        turns) by n / the training context for a sequence longer than it."""
        if self.yarn is None and self.rope_freqs is None and 0 < self.n_ctx_train < n:
            self.yarn = (n / self.n_ctx_train, self.n_ctx_train, True)

    def type(self, name):
        return self.tensors[name].tensor_type

    def w(self, name):
        """The tensor as float64: [rows][columns] for a matrix (GGUF ne = [columns, rows])."""
        if name not in self._cache:
            t = self.tensors[name]
            x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            ne = [int(n) for n in t.shape]
            self._cache[name] = x.reshape(ne[::-1]) if len(ne) > 1 else x.reshape(ne[0])
        return self._cache[name]

    def has(self, name):
        return name in self.tensors


def _rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


class Cache:
    """The per-layer keys and values of one sequence, with each entry's position."""

    def __init__(self, m):
        self.pos = np.zeros(0, dtype=np.int64)
        self.k = [np.zeros((0, m.n_head_kv, m.head_dim)) for _ in range(m.n_layer)]
        self.v = [np.zeros((0, m.n_head_kv, m.head_dim)) for _ in range(m.n_layer)]


def _rope(m, x, pos):
    """x: [n, heads, head_dim]; rotates the first n_rot values of each head."""
    half = m.n_rot // 2
    inv = m.rope_base ** (-2.0 * np.arange(half) / m.n_rot)
    if m.rope_freqs is not None:
        inv = inv / m.rope_freqs[:half]
    mscale = 1.0
    if m.yarn is not None:
        # YaRN (Peng et al. 2023): a pair that turns r times within the original context keeps its
        # frequency where r >= 32, is interpolated by the factor where r <= 1, and mixes the two
        # between — linearly in r (the paper), or linearly in the pair's index between the pairs
        # where r = 32 and r = 1, rounded outward (llama.cpp's reading of a file's YaRN)
        factor, orig, by_turns = m.yarn
        turns = orig * inv / (2 * np.pi)
        if by_turns:
            keep = np.clip((turns - 1) / 31, 0, 1)
        else:
            pair_at = lambda r: m.n_rot * np.log(orig / (2 * np.pi * r)) / (2 * np.log(m.rope_base))
            lo, hi = max(0.0, np.floor(pair_at(32))), min(m.n_rot - 1.0, np.ceil(pair_at(1)))
            keep = 1 - np.clip((np.arange(half) - lo) / max(1e-3, hi - lo), 0, 1)
        inv = inv * keep + inv / factor * (1 - keep)
        mscale = 1 + 0.1 * np.log(factor)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    cos, sin = mscale * np.cos(ang)[:, None, :], mscale * np.sin(ang)[:, None, :]
    out = x.copy()
    if m.neox:
        a, b = x[..., :half], x[..., half:2 * half]
        out[..., :half], out[..., half:2 * half] = a * cos - b * sin, a * sin + b * cos
    else:
        a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
        out[..., 0:2 * half:2], out[..., 1:2 * half:2] = a * cos - b * sin, a * sin + b * cos
    return out


def forward(m, cache, tokens, positions, emulate=False):
    """Decodes tokens at positions into cache; returns the logits of every token, [n][n_vocab]."""
    tokens, pos = np.asarray(tokens), np.asarray(positions, dtype=np.int64)
    n, H, KVH, D = len(tokens), m.n_head, m.n_head_kv, m.head_dim

    def mm(x, name):  # x @ W^T with the engine's input rounding when emulating
        if emulate:
            t = m.type(name)
            x = _q8_blocks(x) if t in QUANTIZED else _bf16(x) if t == T.BF16 else x.astype(np.float32).astype(np.float64)
        return x @ m.w(name).T

    x = m.w("token_embd.weight")[tokens]
    cache.pos = np.concatenate([cache.pos, pos])
    for l in range(m.n_layer):
        p = f"blk.{l}."
        h = _rmsnorm(x, m.w(p + "attn_norm.weight"), m.eps)
        q, k, v = mm(h, p + "attn_q.weight"), mm(h, p + "attn_k.weight"), mm(h, p + "attn_v.weight")
        if m.has(p + "attn_q.bias"):
            q, k, v = q + m.w(p + "attn_q.bias"), k + m.w(p + "attn_k.bias"), v + m.w(p + "attn_v.bias")
        q, k, v = q.reshape(n, H, D), k.reshape(n, KVH, D), v.reshape(n, KVH, D)
        if m.has(p + "attn_q_norm.weight"):
            q = _rmsnorm(q, m.w(p + "attn_q_norm.weight"), m.eps)
            k = _rmsnorm(k, m.w(p + "attn_k_norm.weight"), m.eps)
        q, k = _rope(m, q, pos), _rope(m, k, pos)
        if emulate:  # an f16 KV cache
            k, v = k.astype(np.float16).astype(np.float64), v.astype(np.float16).astype(np.float64)
        cache.k[l] = np.concatenate([cache.k[l], k])
        cache.v[l] = np.concatenate([cache.v[l], v])
        K, V = cache.k[l], cache.v[l]
        visible = cache.pos[None, :] <= pos[:, None]                       # [n, n_cached]
        kv_of = np.arange(H) // (H // KVH)
        s = np.einsum("nhd,mhd->hnm", q, K[:, kv_of, :]) / np.sqrt(D)      # [H, n, n_cached]
        s = np.where(visible[None], s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = np.einsum("hnm,mhd->nhd", s, V[:, kv_of, :]).reshape(n, H * D)
        x = x + mm(o, p + "attn_output.weight")
        h = _rmsnorm(x, m.w(p + "ffn_norm.weight"), m.eps)
        g, u = mm(h, p + "ffn_gate.weight"), mm(h, p + "ffn_up.weight")
        x = x + mm(g / (1 + np.exp(-g)) * u, p + "ffn_down.weight")
    h = _rmsnorm(x, m.w("output_norm.weight"), m.eps)
    return mm(h, "token_embd.weight" if m.tied else "output.weight")


def run_case(m, case, emulate=False):
    """A case as `specprefill logits` takes it: batches decoded in order into one sequence; the
    logits of batch logits_batch."""
    saved = m.yarn
    m.fit_sequence(sum(len(t) for t in case["tokens"]))
    cache, out = Cache(m), None
    for b, (toks, poss) in enumerate(zip(case["tokens"], case["positions"])):
        logits = forward(m, cache, toks, poss, emulate)
        if b == case.get("logits_batch", len(case["tokens"]) - 1):
            out = logits
    m.yarn = saved
    return out


def greedy(m, prompt, n, eog=(), emulate=False):
    """Greedy continuation of prompt (ids at positions 0..): (tokens, top-1 minus top-2 gaps)."""
    cache = Cache(m)
    logits = forward(m, cache, prompt, range(len(prompt)), emulate)[-1]
    out, gaps = [], []
    for i in range(n):
        top = np.argsort(logits)[::-1][:2]
        out.append(int(top[0]))
        gaps.append(float(logits[top[0]] - logits[top[1]]))
        if int(top[0]) in eog:
            break
        logits = forward(m, cache, [top[0]], [len(prompt) + i], emulate)[-1]
    return out, gaps
