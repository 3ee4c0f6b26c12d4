#!/usr/bin/env python3
"""RULER-style long-context tasks (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?"), written as `specprefill eval` task files: one JSON line per
prompt with "task", "prompt", "answer", "answers" (every one must appear in the model's answer:
score with `eval --score contains`, RULER's string_match_all), "max_tokens" and "tokens".

  ruler.py --model M.gguf --tokens 4096 --n 100 --seed 7 --haystack prose > ruler-4k.jsonl

Tasks (RULER's definitions; the needle and question wording is RULER's):
  niah_single       one needle "One of the special magic numbers for KEY is: VALUE." (7 digits)
  niah_single_uuid  the same with a UUID as the value
  niah_multikey     four needles of different keys; one is asked
  niah_multivalue   four needles of one key; all four values are asked
  niah_multiquery   four needles of different keys; all four are asked
  vt                variable tracking: a chain "VAR A = 12345", "VAR B = VAR A", ... (4 hops)
                    spread through the haystack; every variable holding the value is asked
  cwe               common words: a numbered list where 10 words appear 30 times and the others
                    3 times; the 10 common words are asked
  fwe               frequent words: coded words drawn from a Zipf law (alpha 2) among "...."
                    noise; the three most frequent are asked
  qa                question answering over documents: numbered documents of prose, one of which
                    states the fact asked (RULER takes SQuAD's; here the fact is written from
                    templates, and three other documents state the same kind of fact of other
                    subjects, so the question's subject must be read)
Haystacks (--haystack) for the needle, variable-tracking and QA tasks:
  prose   real English prose: paragraphs of Debian's documentation installed on this machine
          (debian-policy, debian-faq, gnu-standards: scripts/ruler-sets.sh installs them)
  filler  the project's own generator's sentences (train/generate.py)
  noise   RULER's repeated "The grass is green. The sky is blue. ..."
Lengths are in tokens of the --model's tokenizer (counted with `specprefill tokenize --batch`):
each prompt lies within [T - 64 - max(60, 0.06 T), T - 64], leaving room for a chat template and the answer.
Standard library only; the same arguments always write the same file.
"""
import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import generate  # noqa: E402  the project's filler sentences

PROSE_FILES = [
    "/usr/share/doc/debian-policy/policy.txt.gz",
    "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz",
    "/usr/share/info/standards.info.gz",
    "/usr/share/info/maintain.info.gz",
]
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
ADJECTIVES = ("able bitter brave calm cheerful clever curious eager elegant fancy fierce gentle glad grumpy handsome happy "
              "helpful honest hungry jolly kind lively lucky mighty nervous noisy polite proud quick quiet rapid rich shy "
              "silly smooth sour steady swift tender tidy tiny wise witty young zany bold crisp dusty faint fuzzy giant").split()
NOUNS = ("anchor apple badge barrel basket beacon bottle bucket button cabin candle canyon carpet castle chair comet "
         "compass cookie copper crystal dragon engine falcon feather forest garden glacier hammer harbor helmet island "
         "jacket kettle ladder lantern lemon magnet marble meadow mirror needle orchard palace pencil pepper pillow planet "
         "pocket rabbit ribbon saddle shadow signal statue stamp summit thunder ticket tunnel violin wagon window").split()
TOWNS = ("Ashford Belmont Carrow Dunmore Elsworth Fairhaven Glenrock Harwick Ivydale Jarrow Kilbride Lymington Marlow "
         "Northam Oakridge Pemberton Quarry Redfield Saltash Thornbury Upton Verwood Whitby Yarmouth").split()


# ---------------------------------------------------------------- haystacks

def prose_paragraphs():
    """English paragraphs of the installed documentation, in file order (deterministic)."""
    paras = []
    missing = [f for f in PROSE_FILES if not os.path.exists(f)]
    if missing:
        sys.exit("error: the prose haystack needs Debian's documentation: " + ", ".join(missing) +
                 "\n(scripts/ruler-sets.sh installs debian-policy, debian-faq and gnu-standards)")
    for path in PROSE_FILES:
        text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
        for block in re.split(r"\n\s*\n", text):
            p = " ".join(line.strip() for line in block.splitlines())
            if len(p) < 200 or p.count(". ") < 2:
                continue
            letters = sum(c.isalpha() or c in " ,.;:'()-" for c in p)
            if letters < 0.93 * len(p) or re.search(r"[|{}<>=_*#\\]|\.\.\.|--", p) or p[0] in "*-•":
                continue
            paras.append(p)
    return paras


def sentences_of(text):
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


class Haystack:
    def __init__(self, kind):
        self.kind = kind
        self.paras = prose_paragraphs() if kind == "prose" else None

    def sentences(self, r, n_chars):
        """Sentences of about n_chars characters in all."""
        out, size = [], 0
        if self.kind == "prose":
            i = r.randrange(len(self.paras))  # a contiguous stretch from a random paragraph on
            while size < n_chars:
                for s in sentences_of(self.paras[i % len(self.paras)]):
                    if size >= n_chars:
                        break
                    if len(s) > 240 or len(s.split()) < 4 or not s[0].isupper():  # long ones; headings
                        continue
                    if size + len(s) + 1 > n_chars:  # the last one cut at a word: the length in small steps
                        s = s[:max(0, n_chars - size)].rsplit(" ", 1)[0].rstrip(",;:") + "."
                    out.append(s)
                    size += len(s) + 1
                i += 1
        elif self.kind == "filler":
            out = generate.filler(r, n_chars)
        else:
            out = sentences_of(NOISE * (n_chars // len(NOISE) + 1))
        return out


def insert(r, sentences, needles):
    """The needles placed between sentences at random depths, in their order."""
    depths = sorted(r.randrange(len(sentences) + 1) for _ in needles)
    out, last = [], 0
    for d, n in zip(depths, needles):
        out += sentences[last:d] + [n]
        last = d
    return " ".join(out + sentences[last:])


# ---------------------------------------------------------------- tasks
# Each returns (prompt, answers, max_tokens) for a haystack of about n_chars characters.

def key(r, taken):
    while True:
        k = f"{r.choice(ADJECTIVES)}-{r.choice(NOUNS)}"
        if k not in taken:
            taken.add(k)
            return k


def number(r):
    return str(r.randrange(1000000, 10000000))


def niah(r, hay, n_chars, n_keys=1, n_values=1, n_asked=1, uuid_values=False):
    taken = set()
    keys = [key(r, taken) for _ in range(n_keys)]
    kind = "uuids" if uuid_values else "numbers"
    value = (lambda: str(uuid.UUID(int=r.getrandbits(128), version=4))) if uuid_values else (lambda: number(r))
    needles, values = [], {}
    for k in keys:
        values[k] = [value() for _ in range(n_values)]
        needles += [f"One of the special magic {kind} for {k} is: {v}." for v in values[k]]
    r.shuffle(needles)
    asked = keys[:n_asked] if n_asked > 1 else [r.choice(keys)]
    context = insert(r, hay.sentences(r, n_chars), needles)
    query = ", ".join(asked[:-1]) + ", and " + asked[-1] if len(asked) > 1 else asked[0]
    prompt = (f"Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
              f"I will quiz you about the {kind} afterwards.\n{context}\n"
              f"What are all the special magic {kind} for {query} mentioned in the provided text?")
    answers = [v for k in asked for v in values[k]]
    return prompt, answers, 24 + (40 if uuid_values else 12) * len(answers)


def variable_name(r, taken):
    while True:
        v = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
        if v not in taken:
            taken.add(v)
            return v


def vt(r, hay, n_chars, hops=4):
    taken = set()
    names = [variable_name(r, taken) for _ in range(hops + 1)]
    value = str(r.randrange(10000, 100000))
    chain = [f"VAR {names[0]} = {value}."] + [f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)]
    context = insert(r, hay.sentences(r, n_chars), chain)
    prompt = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
              f"{context}\nQuestion: Find all variables that are assigned the value {value} in the text above.")
    return prompt, names, 60


def word_list():
    """Distinct lowercase words of the prose documents, or of the generator when they are absent."""
    try:
        words = sorted({w for p in prose_paragraphs() for w in re.findall(r"\b[a-z]{4,10}\b", p)})
    except SystemExit:
        words = sorted({w.lower() for w in re.findall(r"\b[A-Za-z]{4,10}\b", " ".join(
            generate.FIRST + generate.LAST + generate.CITIES + generate.OBJECTS) + " " + " ".join(ADJECTIVES + NOUNS))})
    return words


WORDS = None


def cwe(r, hay, n_chars, n_common=10, freq_common=30, freq_rare=3):
    global WORDS
    WORDS = WORDS or word_list()
    n_items = n_chars // 12  # "123. word " is about 12 characters
    freq_common = max(freq_rare + 2, min(freq_common, n_items // (2 * n_common)))  # short lists: the common words half of it at most
    n_rare = max(1, (n_items - n_common * freq_common) // freq_rare)
    chosen = r.sample(WORDS, min(len(WORDS), n_common + n_rare))
    common, rare = chosen[:n_common], chosen[n_common:]
    items = common * freq_common + rare * freq_rare
    r.shuffle(items)
    context = " ".join(f"{i + 1}. {w}" for i, w in enumerate(items))
    prompt = ("Below is a numbered list of words. In these words, some appear more often than others. "
              f"Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?")
    return prompt, common, 120


def fwe(r, hay, n_chars, alpha=2.0, vocab=800):
    coded = set()
    while len(coded) < vocab:
        coded.add("".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randrange(3, 7))))
    coded = sorted(coded)
    r.shuffle(coded)
    weights = [1 / (i + 1) ** alpha for i in range(vocab)]
    n_words = max(30, n_chars // 7)
    drawn = [w if r.random() > 0.1 else "...." for w in r.choices(coded, weights, k=n_words)]  # RULER's noise
    counts = {}
    for w in drawn:
        if w != "....":
            counts[w] = counts.get(w, 0) + 1
    top = sorted(counts, key=lambda w: (-counts[w], w))
    while len(top) > 3 and counts[top[2]] == counts[top[3]]:  # a tie at third place: one more occurrence
        drawn.insert(r.randrange(len(drawn) + 1), top[2])
        counts[top[2]] += 1
        top = sorted(counts, key=lambda w: (-counts[w], w))
    text = " ".join(drawn)
    prompt = ("Read the following coded text and track the frequency of each coded word. Find the three most frequently "
              f"appeared coded words. {text}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
              "What are the three most frequently appeared words in the above coded text?")
    return prompt, top[:3], 50


FACTS = [
    ("The town archive of {s} was moved to the city of {a} after the flood.", "To which city was the town archive of {s} moved?",
     ["Lisbon", "Bergen", "Dresden", "Krakow", "Valencia", "Tampere", "Utrecht", "Trieste", "Ghent", "Seville"]),
    ("The bell of the old chapel in {s} was cast by a founder named {a}.", "Who cast the bell of the old chapel in {s}?",
     ["Halvorsen", "Brennan", "Okafor", "Lindqvist", "Moreau", "Castillo", "Novak", "Whitaker", "Fujimoto", "Abernathy"]),
    ("The lighthouse of {s} is painted {a} from its base to its lamp.", "What colour is the lighthouse of {s} painted?",
     ["crimson", "turquoise", "ochre", "violet", "amber", "emerald", "scarlet", "indigo", "maroon", "saffron"]),
]


def qa(r, hay, n_chars, n_golden_like=3):
    fact, question, pool = r.choice(FACTS)
    subjects = r.sample(TOWNS, 1 + n_golden_like)
    answers = r.sample(pool, 1 + n_golden_like)
    docs = []
    size = 0
    while size < n_chars:
        p = " ".join(hay.sentences(r, min(r.randrange(300, 900), max(100, n_chars - size))))
        docs.append(p)
        size += len(p) + 16
    for s, a in zip(subjects, answers):  # the golden document and its look-alikes: a fact each, amid prose
        i = r.randrange(len(docs))
        docs[i] = insert(r, sentences_of(docs[i]), [fact.format(s=s, a=a)])
    context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(docs))
    instruction = "Answer the question based on the given documents. Only give me the answer and do not output any other words."
    prompt = (f"{instruction}\n\nThe following are given documents.\n\n{context}\n\n{instruction}\n\n"
              f"Question: {question.format(s=subjects[0])}")
    return prompt, [answers[0]], 32


TASKS = {
    "niah_single": lambda r, h, n: niah(r, h, n),
    "niah_single_uuid": lambda r, h, n: niah(r, h, n, uuid_values=True),
    "niah_multikey": lambda r, h, n: niah(r, h, n, n_keys=4),
    "niah_multivalue": lambda r, h, n: niah(r, h, n, n_values=4),
    "niah_multiquery": lambda r, h, n: niah(r, h, n, n_keys=4, n_asked=4),
    "vt": vt,
    "cwe": cwe,
    "fwe": fwe,
    "qa": qa,
}
NEEDLE_TASKS = [t for t in TASKS if t.startswith("niah")]


# ---------------------------------------------------------------- lengths in tokens

def count_tokens(specprefill, model, texts):
    data = b"".join(b"%d\n%s" % (len(t.encode()), t.encode()) for t in texts)
    out = subprocess.run([specprefill, "tokenize", "-m", model, "--batch"], input=data, capture_output=True, check=True).stdout
    return [len(json.loads(line)) for line in out.decode().splitlines()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the GGUF whose tokenizer measures the lengths")
    ap.add_argument("--specprefill", default=os.path.join(HERE, "..", "build", "specprefill"), help="the CLI (default build/specprefill)")
    ap.add_argument("--tokens", type=int, required=True, help="length T: prompts of about 0.94 T to T - 64 tokens")
    ap.add_argument("--n", type=int, default=100, help="prompts, the tasks in turn (default 100)")
    ap.add_argument("--tasks", default="all", help="comma-separated, or 'all', or 'needles' (default all): " + ",".join(TASKS))
    ap.add_argument("--haystack", default="prose", choices=["prose", "filler", "noise"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--answer-prefix", action="store_true", help="end each prompt with RULER's answer prefix (for base models)")
    a = ap.parse_args()
    tasks = list(TASKS) if a.tasks == "all" else NEEDLE_TASKS if a.tasks == "needles" else a.tasks.split(",")
    for t in tasks:
        if t not in TASKS:
            sys.exit(f"error: unknown task {t} (one of {', '.join(TASKS)})")
    hi = a.tokens - 64
    lo = hi - max(60, int(0.06 * a.tokens))
    if a.tokens < 512:
        sys.exit("error: --tokens must be at least 512")
    hay = Haystack(a.haystack)
    budgets = [3.6 * (lo + hi) / 2] * a.n  # each prompt's haystack in characters, refined by measuring
    todo = list(range(a.n))
    done = {}
    for _ in range(12):
        batch = []
        for i in todo:
            t = tasks[i % len(tasks)]
            r = random.Random(a.seed * 1000003 + i)  # the same document for the same i, whatever its length
            budget = budgets[i]
            prompt, answers, max_tokens = TASKS[t](r, hay, int(budget))
            if a.answer_prefix:
                prompt += "\nAnswer:"
            batch.append((i, t, prompt, answers, max_tokens, budget))
        counts = count_tokens(a.specprefill, a.model, [b[2] for b in batch])
        todo = []
        for (i, t, prompt, answers, max_tokens, budget), n in zip(batch, counts):
            if lo <= n <= hi:
                done[i] = {"task": t, "haystack": a.haystack, "prompt": prompt, "answer": answers[0], "answers": answers,
                           "max_tokens": max_tokens, "tokens": n}
            else:
                budgets[i] = budget * (lo + hi) / 2 / n
                if os.environ.get("RULER_DEBUG"):
                    print(i, t, int(budget), n, file=sys.stderr)
                todo.append(i)
        if not todo:
            break
    if todo:
        sys.exit(f"error: {len(todo)} prompts did not reach {lo}-{hi} tokens (tasks {sorted({tasks[i % len(tasks)] for i in todo})})")
    for i in range(a.n):
        print(json.dumps(done[i]))


if __name__ == "__main__":
    main()
