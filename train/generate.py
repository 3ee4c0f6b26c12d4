#!/usr/bin/env python3
"""Seeded procedural generator of long documents with a question whose answer sits inside.

Families:
  needle     one fact ("The access code of Maria Lopez is 48213.") in varied filler
  distract   several facts about look-alike people; the question asks about one of them
  table      a long table of records; the question asks for one record's number
  multihop   "A's manager is B." ... "B's office is room 4821."; asks for A's manager's office

Every document is plain ASCII. The prompt ends with "Question: ...\\nAnswer:" and the answer is
a digit string, generated after a space. Usage:
  generate.py --family all --n 200 --tokens 2000-4000 --seed 7 > eval.jsonl
(lengths are approximate token counts of the bundled tokenizer: about 4 characters a token)
"""
import argparse
import json
import random
import re
import sys

FIRST = ("Maria James Robert Linda Michael Sarah David Emma Daniel Olivia Thomas Sofia Peter Anna Lucas Mia Henry Clara "
         "Oscar Julia Victor Elena Samuel Nora Felix Laura Hugo Alice Ivan Grace Leon Rosa Adam Irene Paul Lena Mark Vera "
         "Simon Ruth Karl Helen Omar Nina Ethan Zoe Noah Lily").split()
LAST = ("Lopez Smith Garcia Brown Miller Davis Wilson Moore Taylor Anderson Thomas Jackson White Harris Martin Clark Lewis "
        "Walker Young Allen King Wright Scott Green Baker Adams Nelson Hill Ramirez Campbell Mitchell Roberts Carter Phillips "
        "Evans Turner Torres Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Reed Bailey Bell").split()
CITIES = ("Lisbon Oslo Denver Kyoto Lima Dublin Cairo Quito Perth Austin Bergen Porto Vienna Nairobi Tulsa Leeds Sapporo "
          "Hanoi Krakow Seville Tampere Geneva Boston Valencia Bruges Salta Cork Ghent Riga Turin").split()
OBJECTS = ("lantern map notebook bicycle teapot violin compass umbrella kettle ladder camera basket mirror clock telescope "
           "blanket hammer candle bottle anchor").split()
ADJ = "old quiet bright narrow heavy small ancient busy distant green cold warm empty wooden crowded silver".split()
PLACES = "market harbor library station bridge garden museum bakery school tower farm river valley square mill chapel".split()
VERBS = "visited painted repaired described carried noticed measured cleaned borrowed photographed admired opened".split()
TIMES = "in the morning,at noon,in the evening,last winter,every Sunday,after the storm,before dawn,during the festival".split(",")
FIELDS = ("access code", "locker number", "badge number", "room number", "account number", "parcel number")
# A person's name, and the fact sentences the families below write ("The FIELD of NAME is N.",
# "NAME's manager is NAME.", "NAME's office is room N."): what a reader of the documents (train.py's
# sparse batches) finds them by. Kept beside the templates that write them.
NAME = re.compile(r"[A-Z][a-z]+ [A-Z][a-z]+")
FACT = re.compile(r"The [a-z ]+ of [A-Z][a-z]+ [A-Z][a-z]+ is \d+\."
                  r"|[A-Z][a-z]+ [A-Z][a-z]+'s (?:manager is [A-Z][a-z]+ [A-Z][a-z]+|office is room \d+)\.")


def name(r):
    return f"{r.choice(FIRST)} {r.choice(LAST)}"


def number(r, digits=5):
    return str(r.randint(10 ** (digits - 1), 10 ** digits - 1))


def filler_sentence(r):
    k = r.randrange(8)
    n = name(r)
    if k == 0:
        return f"{n} {r.choice(VERBS)} the {r.choice(ADJ)} {r.choice(OBJECTS)} near the {r.choice(PLACES)} {r.choice(TIMES)}."
    if k == 1:
        return f"The {r.choice(PLACES)} in {r.choice(CITIES)} was {r.choice(ADJ)} {r.choice(TIMES)}."
    if k == 2:
        return f"{n} travelled from {r.choice(CITIES)} to {r.choice(CITIES)} with a {r.choice(ADJ)} {r.choice(OBJECTS)}."
    if k == 3:
        return f"Some people say the {r.choice(OBJECTS)} of the {r.choice(PLACES)} is {r.choice(ADJ)}, but nobody in {r.choice(CITIES)} agrees."
    if k == 4:
        return f"{n} counted {r.randint(2, 99)} {r.choice(OBJECTS)}s at the {r.choice(PLACES)}."
    if k == 5:
        return f"{TIMES[r.randrange(len(TIMES))].capitalize()}, the {r.choice(ADJ)} {r.choice(PLACES)} smelled of bread and rain."
    if k == 6:
        return f"{n} wrote a long letter about the {r.choice(PLACES)} and the {r.choice(ADJ)} {r.choice(OBJECTS)}."
    return f"Nobody remembered why the {r.choice(OBJECTS)} was left in {r.choice(CITIES)}."


def filler(r, n_chars):
    out, size = [], 0
    while size < n_chars:
        s = filler_sentence(r)
        out.append(s)
        size += len(s) + 1
    return out


def place(r, sentences, facts):
    """Inserts each fact at a random place among the filler sentences."""
    for f in facts:
        sentences.insert(r.randint(0, len(sentences)), f)
    return sentences


def paragraphs(sentences, r):
    out, cur = [], []
    for s in sentences:
        cur.append(s)
        if len(cur) >= r.randint(3, 7):
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return "\n".join(out)


def distinct_names(r, n, first):
    """n-1 more names, none equal to `first` or to each other."""
    out = [first]
    while len(out) < n:
        p = name(r)
        if p not in out:
            out.append(p)
    return out


# Each family returns the document and its questions with answers. The first question is the
# document's own (evaluation sets use only it); n_q > 1 asks more about the same document, which
# trains retrieval with more answers per token read. With n_q = 1 the random draws are those of
# the first version of this generator, so the committed evaluation sets stay reproducible.

def needle(r, n_chars, n_q=1):
    who, field, val = name(r), r.choice(FIELDS), number(r)
    people = distinct_names(r, n_q, who)
    extra = [(p, r.choice(FIELDS), number(r)) for p in people[1:]]
    facts = [f"The {f} of {p} is {v}." for p, f, v in [(who, field, val)] + extra]
    s = place(r, filler(r, n_chars), facts)
    return paragraphs(s, r), [(f"What is the {f} of {p}?", v) for p, f, v in [(who, field, val)] + extra]


def distract(r, n_chars, n_q=1):
    field = r.choice(FIELDS)
    first, last = r.choice(FIRST), r.choice(LAST)
    people = [f"{first} {last}"]
    while len(people) < 4:  # look-alikes: same first or same last name (a list, not a set: set order is not seeded)
        p = f"{first} {r.choice(LAST)}" if r.random() < 0.5 else f"{r.choice(FIRST)} {last}"
        if p not in people:
            people.append(p)
    vals = [number(r) for _ in people]
    facts = [f"The {field} of {p} is {v}." for p, v in zip(people, vals)]
    i = r.randrange(len(people))
    s = place(r, filler(r, n_chars), facts)
    order = [i] + [j for j in range(len(people)) if j != i][:n_q - 1]
    return paragraphs(s, r), [(f"What is the {field} of {people[j]}?", vals[j]) for j in order]


def table(r, n_chars, n_q=1):
    rows, seen, size = [], set(), 0
    while size < n_chars:
        if len(seen) == len(FIRST) * len(LAST):  # ~2 500 rows, a table of ~32k tokens
            raise ValueError(f"table: {n_chars} characters need more rows than there are names ({len(seen)})")
        p = name(r)
        if p in seen:
            continue
        seen.add(p)
        row = f"| {p} | {r.choice(CITIES)} | {number(r)} |"
        rows.append(row)
        size += len(row) + 1
    i = r.randrange(len(rows))
    picks = [i] + (r.sample([j for j in range(len(rows)) if j != i], min(n_q - 1, len(rows) - 1)) if n_q > 1 else [])
    doc = "Staff records (name | city | number):\n" + "\n".join(rows)
    qas = []
    for j in picks:
        who, val = rows[j].split(" | ")[0][2:], rows[j].split(" | ")[2][:-2]
        qas.append((f"In the records, what is the number of {who}?", val))
    return doc, qas


def multihop(r, n_chars, n_q=1, hops=False, chain=False, offices=False):
    a, b = name(r), name(r)
    while b == a:
        b = name(r)
    room = number(r, 4)
    chains = [(a, b, room)]
    used = {a, b}
    while len(chains) < n_q:
        x, y = name(r), name(r)
        if x in used or y in used or x == y:
            continue
        used |= {x, y}
        chains.append((x, y, number(r, 4)))
    others = [(name(r), number(r, 4)) for _ in range(2)]
    facts = [f"{a}'s manager is {b}.", f"{b}'s office is room {room}."] + [f"{p}'s office is room {n}." for p, n in others]
    for x, y, rm in chains[1:]:
        facts += [f"{x}'s manager is {y}.", f"{y}'s office is room {rm}."]
    s = place(r, filler(r, n_chars), facts)
    # chain: the answer states the chain, each hop before the next is used ("A's manager is B.
    # B's office is room 4821"), the way a language model answers step by step, so that each step
    # is one lookup of something already written. Tried for the main (two stages): it learnt the
    # first hop at 2k tokens but copied the room's digits wrongly (8-12 % exact), and SpecPrefill's
    # draft could not follow the chain; the bundled models answer with the room alone.
    qas = [(f"Which room is the office of {x}'s manager in?",
            f"{x}'s manager is {y}. {y}'s office is room {rm}" if chain else rm) for x, y, rm in chains]
    if hops and n_q > 1:
        # Training: each hop asked on its own too, after the two-hop question (before it, the two
        # answers would let the model copy instead of chaining): the parts of the chain are learnt
        # as skills of their own, which the two-hop question then composes.
        hop_qas = hop_questions(a, b, room)
        if offices:
            # The second hop alone was the weak skill (stage 7 of the main at 2k tokens: manager 100 %,
            # "office of B" 47 %): ask every office, the look-alike facts it must tell apart. Half
            # the documents ask them instead of the two-hop question, in random order: after the
            # two-hop answer, B's office could be copied from that answer instead of looked up.
            rooms = [(f"Which room is the office of {p}?", n) for p, n in others]
            if r.random() < 0.5:
                hop_qas = hop_qas[:1] + rooms
            else:
                hop_qas += rooms
                r.shuffle(hop_qas)
                qas = qas[1:]
        qas[1:1] = hop_qas
        qas = qas[:n_q]
    return paragraphs(s, r), qas


def hop_questions(a, b, room):
    """The two hops of the chain A -> B -> room as questions of their own."""
    return [(f"Who is the manager of {a}?", b), (f"Which room is the office of {b}?", room)]


def chain_of(prompt):
    """(A, B, room) of a two-hop prompt as make() writes it, read back from its text."""
    a = re.search(r"\nQuestion: Which room is the office of (.*)'s manager in\?\nAnswer:$", prompt).group(1)
    b = re.search(re.escape(a) + r"'s manager is ([A-Za-z]+ [A-Za-z]+)\.", prompt).group(1)
    return a, b, re.search(re.escape(b) + r"'s office is room (\d+)\.", prompt).group(1)


FAMILIES = {"needle": needle, "distract": distract, "table": table, "multihop": multihop}


def make_multi(r, family, n_tokens, n_q, hops=False, chain=False, offices=False):
    """A document with up to n_q questions (training): (document text, [(question, answer)]).
    hops: two-hop documents also ask each hop on its own (offices: and every office);
    chain: two-hop answers state the chain."""
    extra = {"hops": hops or offices, "chain": chain, "offices": offices} if family == "multihop" else {}
    return FAMILIES[family](r, max(16, int(n_tokens * 4)), n_q, **extra)


def make(r, family, n_tokens, chain=False):
    doc, qas = make_multi(r, family, n_tokens, 1, chain=chain)
    q, a = qas[0]
    return {"family": family, "prompt": f"{doc}\nQuestion: {q}\nAnswer:", "answer": a}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="all", help="needle, distract, table, multihop or all (round robin)")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--tokens", default="2000-4000", help="approximate length range in tokens, e.g. 2000-4000")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    lo, _, hi = a.tokens.partition("-")
    lo, hi = int(lo), int(hi or lo)
    fams = list(FAMILIES) if a.family == "all" else a.family.split(",")
    r = random.Random(a.seed)
    for i in range(a.n):
        print(json.dumps(make(r, fams[i % len(fams)], r.randint(lo, hi))))


if __name__ == "__main__":
    sys.exit(main())
