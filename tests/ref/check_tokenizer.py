"""The engine's tokenizer against Hugging Face's `tokenizers` (built from the same GGUF's vocabulary
and merges by gguf_tokenizer.py) on the texts of texts.py, with and without parse_special: the ids
must be identical, and detokenizing them must give the text back.

Usage: check_tokenizer.py SPECPREFILL [--shared DIR] VOCAB.gguf ...
Vocabularies under --shared (llama.cpp's fixtures) are a second opinion: skipped when absent.
Prints one line per vocabulary and a closing 'N passed, N failed, N skipped' (a case = one
vocabulary's ids or its round trip)."""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_tokenizer  # noqa: E402
from texts import texts  # noqa: E402


def records(items):
    out = bytearray()
    for t in items:
        b = t.encode()
        out += b"%d\n" % len(b) + b
    return bytes(out)


def engine_ids(sp, vocab, items, parse_special):
    args = [sp, "tokenize", "-m", vocab, "--batch"] + (["--parse-special"] if parse_special else [])
    r = subprocess.run(args, input=records(items), capture_output=True, check=True)
    rows = [eval(line) for line in r.stdout.decode().splitlines()]  # lines of "[1, 2, 3]"
    assert len(rows) == len(items), f"{len(rows)} rows for {len(items)} texts"
    return rows


def engine_texts(sp, vocab, id_rows):
    r = subprocess.run([sp, "detokenize", "-m", vocab, "--batch"], input="\n".join(map(str, id_rows)).encode() + b"\n",
                       capture_output=True, check=True)
    data, pos, out = r.stdout, 0, []
    while pos < len(data):
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl])
        out.append(data[nl + 1:nl + 1 + n].decode("utf-8", "replace"))
        pos = nl + 1 + n
    return out


def check_vocab(sp, vocab):
    tok = gguf_tokenizer.from_gguf(vocab)
    model = gguf_tokenizer.read_vocab(vocab)[0]
    specials = gguf_tokenizer.special_texts(vocab)
    all_texts = texts()
    has_special = [any(s in t for s in specials) for t in all_texts]
    compared, bad = 0, []
    for parse_special in (True, False):
        # Hugging Face always matches added tokens, the engine matches control tokens only with
        # parse_special: texts with control-token markup are compared with parse_special only.
        # SentencePiece: Hugging Face prepends its space to every piece between added tokens,
        # llama.cpp (and the engine) only at the start, so markup is left out there.
        items = [t for t, s in zip(all_texts, has_special) if not s or (parse_special and model != "llama")]
        ours = engine_ids(sp, vocab, items, parse_special)
        for t, ids in zip(items, ours):
            want = tok.encode(t, add_special_tokens=False).ids
            compared += 1
            if ids != want:
                k = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), min(len(ids), len(want)))
                bad.append(f"parse_special={parse_special} {t[:60]!r}: from token {k}, engine {ids[k:k + 8]} "
                           f"tokenizers {want[k:k + 8]}")
    # round trip: the plain texts' ids detokenize to the text (SentencePiece: after its one leading space)
    plain = [t for t, s in zip(all_texts, has_special) if not s]
    back = engine_texts(sp, vocab, engine_ids(sp, vocab, plain, False))
    trip_bad = []
    for t, b in zip(plain, back):
        want = (" " + t if t else t) if model == "llama" else t
        if b != want:
            trip_bad.append(f"{t[:50]!r} came back as {b[:50]!r}")
    return compared, bad, len(plain), trip_bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sp")
    ap.add_argument("--shared", default="")
    ap.add_argument("vocabs", nargs="+")
    a = ap.parse_args()
    passed = failed = skipped = 0
    for v in a.vocabs:
        if not os.path.exists(v):
            where = "../shared absent" if a.shared and v.startswith(a.shared) else "file absent"
            print(f"skipped: {os.path.basename(v)} ({where})")
            skipped += 2
            continue
        compared, bad, n_trip, trip_bad = check_vocab(a.sp, v)
        print(f"{os.path.basename(v)}: ids identical on {compared - len(bad)} of {compared} (text, parse_special) cases; "
              f"round trip on {n_trip - len(trip_bad)} of {n_trip} texts")
        for line in (bad + trip_bad)[:15]:
            print("  FAIL:", line)
        passed += (not bad) + (not trip_bad)
        failed += bool(bad) + bool(trip_bad)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
