"""Hugging Face `tokenizers` built from the vocabulary stored in a GGUF file: the independent
reference for the engine's tokenizer. Written from the formats' definitions (GGUF's tokenizer.*
keys, Hugging Face's tokenizer.json components), not from the engine's code.

    tok = from_gguf("model.gguf")      # a tokenizers.Tokenizer
    tok.encode(text, add_special_tokens=False).ids
"""
import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

# token types of tokenizer.ggml.token_type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The pre-tokenizer regexes as the models' tokenizer.json files state them.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")


# llama.cpp's loader (and so every GGUF consumer that must agree with it) treats a token with one
# of these end-of-generation texts as a control token whatever type the file gives it; Hugging
# Face does not know the rule (Qwen2's vocabulary has a plain "</s>" that llama.cpp retypes).
EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
             "<|end_of_text|>", "</s>"}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_vocab(path):
    """(model, pre, tokens, types, merges, scores) from a GGUF file's tokenizer keys."""
    r = gguf.GGUFReader(path)
    tokens = _field(r, "tokenizer.ggml.tokens")
    types = list(_field(r, "tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    types = [CONTROL if t in EOG_TEXTS else ty for t, ty in zip(tokens, types)]
    return (_field(r, "tokenizer.ggml.model"), _field(r, "tokenizer.ggml.pre", "default"), tokens, types,
            _field(r, "tokenizer.ggml.merges", []), _field(r, "tokenizer.ggml.scores"))


def _pre_tokenizer(pre):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), "isolated"), byte_level])
    if pre == "qwen2":
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2), "isolated"), byte_level])
    if pre in ("smollm", "starcoder", "refact", "codeshell"):  # SmolLM2's tokenizer.json
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre == "gpt-2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raise ValueError(f"no reference for pre-tokenizer {pre!r}")


def _spm_merges(tokens, scores):
    """SentencePiece BPE as Hugging Face converts it: every way to spell a piece as two pieces,
    ranked by the piece's score (higher first), then by the halves' ids."""
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                merges.append((-scores[pid], pid, vocab[a], vocab[b], a, b))
    merges.sort()
    return [(a, b) for *_, a, b in merges]


def from_gguf(path):
    model, pre, tokens, types, merges, scores = read_vocab(path)
    vocab = {t: i for i, t in enumerate(tokens)}
    if model == "gpt2":
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        tok = Tokenizer(models.BPE(vocab, pairs, ignore_merges=pre in ("llama-bpe", "llama3", "smaug-bpe")))
        tok.pre_tokenizer = _pre_tokenizer(pre)
        tok.decoder = decoders.ByteLevel()
    elif model == "llama":
        tok = Tokenizer(models.BPE(vocab, _spm_merges(tokens, scores), byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        raise ValueError(f"no reference for tokenizer model {model!r}")
    # control and user-defined tokens are matched in the text before the model sees it
    tok.add_tokens([AddedToken(t, special=types[i] == CONTROL, normalized=False)
                    for i, t in enumerate(tokens) if types[i] in (CONTROL, USER_DEFINED)])
    return tok


def special_texts(path):
    """The texts of the control tokens (matched only with parse_special in the engine)."""
    _, _, tokens, types, _, _ = read_vocab(path)
    return [t for t, ty in zip(tokens, types) if ty == CONTROL]
