"""The engine's forward pass against the float64 NumPy reference (forward.py), through the stable
`specprefill logits` and `generate` commands.

Models: random-weight models this script writes with `specprefill make-model` (llama with
every tensor type the engine writes, qwen2 with QKV bias and qwen3 with QK-norm; the bundled
models' vocabulary), on every kernel set this CPU has (SPECPREFILL_ISA; Q4_0 and the K-quants also with --repack); and, with --real, a
real model (SmolLM2-135M-Instruct: plain prompt, chat prompt, a SpecPrefill-like gapped case,
greedy generation).

Tolerance, per model and case, from an emulation: the reference makes the roundings the engine
makes by design (8-bit activation blocks for quantized weights, bf16 activations for BF16
weights, an f16 KV cache) and measures how far they move the exact logits: D (largest) and s
(root mean square). The engine passes with max |engine - exact| <= max(3 D, 1e-3) and rms <=
max(1.5 s, 1e-4): the rms is a stable statistic of many independent roundings (1.5: the engine's
kernels round a little differently, e.g. in the order of their sums), the maximum a tail that
fluctuates more (3). A wrong formula (RoPE pairs, a missing bias or norm, a mask off by one
position) moves logits by about their spread (std 0.3 here, 6.6 for SmolLM2), far more. Argmax
must agree on every row whose exact top-1 lead is over max(6 s, 2e-3) (a nearer tie may flip; the
count of such rows is printed). F32 and F16 models with an f32 KV cache must land within 5e-5 of
the exact logits (only f32 arithmetic is left).

Usage: check_forward.py SPECPREFILL WORKDIR [--real MODEL.gguf] [--quick]
Closing line: 'N passed, N failed, N skipped' (a case = one model on all its cases and kernel sets)."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import forward as F  # noqa: E402
import gguf_tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
GAPPED = [0, 1, 2, 3, 10, 11, 12] + list(range(40, 48)) + list(range(300, 311)) + list(range(512, 518)) + list(range(990, 998))
# (arch, type): llama in every type the engine writes, qwen2 / qwen3 in a float and two quantized types
MODELS = [("llama", t) for t in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q5_K", "Q4_K",
                                  "Q4_K_M", "Q5_K_M")] + \
         [(a, t) for a in ("qwen2", "qwen3") for t in ("F32", "F16", "Q8_0", "Q4_K_M")]


def kernel_sets():
    """The SPECPREFILL_ISA names this CPU runs."""
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    sets = ["scalar"]
    if {"avx2", "fma", "f16c"} <= flags:
        sets.append("avx2")
        if "avx_vnni" in flags:
            sets.append("avx2-vnni")  # AVX2 with 256-bit vpdpbusd (Alder Lake and later)
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        # the AVX-512 base set, then each feature overlay alone where the CPU has it, then all
        if "avx512_vnni" in flags or "avx512_bf16" in flags:
            sets.append("avx512-base")
        if "avx512_vnni" in flags and "avx512_bf16" in flags:
            sets += ["avx512-nobf16", "avx512-novnni"]
        if "avx512_vnni" in flags and {"amx_tile", "amx_int8"} <= flags:
            sets.append("avx512-noamx")  # "avx512" then prefills on the AMX tile unit
        sets.append("avx512")
    return sets


def engine_logits(sp, model, case, work, isa=None, kv="f16", extra=()):
    path = os.path.join(work, "case.json")
    with open(path, "w") as f:
        json.dump(case, f)
    env = dict(os.environ)
    if isa:
        env["SPECPREFILL_ISA"] = isa
    r = subprocess.run([sp, "logits", "-m", model, "--case", path, "--kv-type", kv, *extra], capture_output=True, env=env)
    if r.returncode:
        raise RuntimeError(f"specprefill logits failed: {r.stderr.decode()[-500:]}")
    return np.array(json.loads(r.stdout)["logits"])


def near_tie(exact, emul):
    """A top-1 lead below this is a near tie for the integer kernels: 6 × the rms deviation that
    quantizing the activations to 8 bits alone (the emulation) gives the exact logits."""
    return max(6 * float(np.sqrt(np.mean((emul - exact) ** 2))), 2e-3)


def compare(got, exact, emul):
    """Deviation of the engine's logits from the exact ones, judged against the emulation's.
    Returns (ok, max dev, rms dev, tolerances text, argmax-checked rows, near-tie rows)."""
    d_emul = np.abs(emul - exact)
    tol_max = max(3 * float(d_emul.max()), 1e-3)
    tol_rms = max(1.5 * float(np.sqrt(np.mean(d_emul ** 2))), 1e-4)
    tie = near_tie(exact, emul)
    d = np.abs(got - exact)
    dev, rms = float(d.max()), float(np.sqrt(np.mean(d ** 2)))
    srt = np.sort(exact, axis=1)
    clear = srt[:, -1] - srt[:, -2] > tie
    wrong = int(np.sum((got.argmax(1) != exact.argmax(1)) & clear))
    ok = dev <= tol_max and rms <= tol_rms and wrong == 0
    return ok, dev, rms, f"max {tol_max:.2g} rms {tol_rms:.2g}", wrong, int(np.sum(~clear))


def file_type_name(path):
    """general.file_type as llama.cpp's numbering names it (gguf-py's LlamaFileType)."""
    import gguf
    value = int(gguf.GGUFReader(path).fields["general.file_type"].contents())
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return f"no llama.cpp file type ({value})"


# the llama_ftype a file of each type the engine writes must carry (all Q4_K / Q5_K: their _S mix)
FILE_TYPE = {"F32": "ALL_F32", "Q4_K": "MOSTLY_Q4_K_S", "Q5_K": "MOSTLY_Q5_K_S"}


def check_model(sp, label, path, cases, isas, f32_kv_check, repack=False):
    """repack: each kernel set also with the weights repacked at load (--repack).
    Returns (ok, lines, each case's near-tie margin)."""
    m = F.Model(path)
    ok, lines, margins = True, [], {}
    runs = [(isa, ()) for isa in isas] + ([(isa + "+repack", ("--repack",)) for isa in isas] if repack else [])
    for name, case in cases.items():
        exact, emul = F.run_case(m, case), F.run_case(m, case, emulate=True)
        margins[name] = near_tie(exact, emul)
        devs, tols, ties = [], "", 0
        for isa, extra in runs:
            good, dev, rms, tols, wrong, ties = compare(
                engine_logits(sp, path, case, os.path.dirname(path), isa.removesuffix("+repack"), extra=extra), exact, emul)
            devs.append(f"{isa} {dev:.2g}/{rms:.2g}")
            if not good:
                ok = False
                lines.append(f"  FAIL {label} {name} [{isa}]: max dev {dev:.4g}, rms {rms:.4g} (tolerance {tols}), "
                             f"argmax wrong on {wrong} clear rows")
        msg = f"  {label:14s} {name:12s} tol {tols}: max/rms " + ", ".join(devs) + (f" ({ties} near-tie rows)" if ties else "")
        if f32_kv_check:
            dev = float(np.abs(engine_logits(sp, path, case, os.path.dirname(path), kv="f32") - exact).max())
            msg += f"; f32 KV {dev:.2g}"
            if dev > 5e-5:
                ok = False
                lines.append(f"  FAIL {label} {name} with an f32 KV cache: max dev {dev:.3g} > 5e-5")
        lines.append(msg)
    return ok, lines, margins


def random_cases(n_vocab):
    rng = np.random.default_rng(7)
    toks = [int(t) for t in rng.integers(0, n_vocab - 5, 48)]
    return {
        "contiguous": {"tokens": [toks], "positions": [list(range(48))], "logits_batch": 0},
        "gapped": {"tokens": [toks[:40]], "positions": [GAPPED], "logits_batch": 0},
        "two_batches": {"tokens": [toks[:32], toks[32:]], "positions": [list(range(32)), list(range(32, 48))],
                        "logits_batch": 1},
    }


def chatml(messages):
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def check_real(sp, path, isas, exact_greedy):
    """exact_greedy: also generate with the scalar set (exact floats) where it is one of isas."""
    tok = gguf_tokenizer.from_gguf(path)
    ids = lambda text: tok.encode(text, add_special_tokens=False).ids
    plain = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
    chat = chatml([{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
                   {"role": "user", "content": "What is the capital of France?"}])
    doc = open(os.path.join(ROOT, "eval", "demo-prompt.txt")).read()[:1500]
    long_ids = ids(doc)[:320]
    # SpecPrefill's shape: chunks of 32 kept at their original positions, the last chunk always
    kept = [p for c in (0, 3, 4, 7, 9) for p in range(32 * c, 32 * c + 32)]
    cases = {
        "plain": {"tokens": [ids(plain)], "positions": [list(range(len(ids(plain))))], "logits_batch": 0},
        "chat": {"tokens": [ids(chat)], "positions": [list(range(len(ids(chat))))], "logits_batch": 0},
        "gapped": {"tokens": [[long_ids[p] for p in kept]], "positions": [kept], "logits_batch": 0},
    }
    # the two best SIMD sets (on AVX-512: the float path and the integer one), never the scalar
    # one where a SIMD set exists: under the sanitizers' -O0 it takes 280 s a case (an AVX2 Zen 3)
    simd = [s for s in isas if s != "scalar"] or isas
    ok, lines, margins = check_model(sp, "SmolLM2-135M", path, cases, simd[-2:], False)
    # greedy generation of 32 tokens through `generate` (the decode path) against the reference's.
    # The scalar set computes in floats as the reference does: its text must be the reference's
    # but at a near tie (lead < 0.05). The SIMD sets quantize the activations to 8 bits (as
    # llama.cpp does), which moves this model's logits by as much as the tolerances above allow:
    # there a divergence passes only where the reference's lead is under the logits check's
    # near-tie margin (an AVX2 Zen 3 took the runner-up at a lead of 0.196, margin ≈ 1.8).
    m = F.Model(path)
    _, _, tokens, types, _, _ = gguf_tokenizer.read_vocab(path)
    eog = {i for i, t in enumerate(tokens) if t in gguf_tokenizer.EOG_TEXTS}
    ref, gaps = F.greedy(m, ids(plain), 32, eog)
    want = tok.decode([t for t in ref if t not in eog], skip_special_tokens=False)
    runs = [] if simd[-1] == "scalar" else [(simd[-1], margins["plain"])]  # a CPU with no SIMD set: the scalar run alone
    if "scalar" in isas and (exact_greedy or not runs):
        runs.append(("scalar", 0.05))
    for isa, tol in runs:
        r = subprocess.run([sp, "generate", "-m", path, "-p", plain, "-n", "32", "--temp", "0"], capture_output=True,
                           env=dict(os.environ, SPECPREFILL_ISA=isa))
        got = r.stdout.decode()
        got = got[:-1] if got.endswith("\n") else got  # generate ends its output with a newline
        if got == want:
            lines.append(f"  SmolLM2-135M greedy [{isa}] 32 tokens identical to the reference (smallest top-1 lead {min(gaps):.3f})")
            continue
        k = next((i for i in range(len(ref)) if not got.startswith(tok.decode(ref[:i + 1]))), len(ref))
        if k < len(gaps) and gaps[k] < tol:
            lines.append(f"  SmolLM2-135M greedy [{isa}]: the same up to token {k}, where the reference's lead is {gaps[k]:.4f}"
                         f" (a near tie: < {tol:.3g})")
        else:
            ok = False
            lines.append(f"  FAIL SmolLM2-135M greedy [{isa}] differs at token {k} (reference's lead there {gaps[k] if k < len(gaps) else 0:.4f},"
                         f" near-tie margin {tol:.3g}):\n    engine    {got!r}\n    reference {want!r}")
    return ok, lines


def with_yarn_keys(src, dst, factor, orig):
    """A copy of the GGUF src that declares YaRN (llama.cpp's keys), written with gguf-py."""
    import gguf
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch=arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), f.types[0])
    w.add_string(f"{arch}.rope.scaling.type", "yarn")
    w.add_float32(f"{arch}.rope.scaling.factor", factor)
    w.add_uint32(f"{arch}.rope.scaling.original_context_length", orig)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=[int(x) for x in reversed(t.shape)], raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_yarn(sp, work, isa):
    """Past the training context (a model trained on 32 tokens, cases of 40-48): the default,
    YaRN by the sequence's length over 32 with the paper's ramp; --rope-scaling yarn with a fixed
    factor, llama.cpp's ramp; and a file that declares YaRN (gguf-py writes the keys), read as
    llama.cpp reads it — each against the reference's own YaRN, with an f32 KV cache (only f32
    arithmetic left: 5e-5). And the scaling must matter: positions as they are differ."""
    path = os.path.join(work, "qwen2-F32-ctx32.gguf")
    subprocess.run([sp, "make-model", "--arch", "qwen2", "--type", "F32", "--vocab-from", os.path.join(ROOT, "models", "main.gguf"),
                    "--seed", "5", "--ctx", "32", "--rope-base", "10000", "-o", path], check=True, capture_output=True)
    declared = os.path.join(work, "qwen2-F32-ctx32-yarn3.gguf")
    with_yarn_keys(path, declared, 3.0, 32)
    m, md = F.Model(path), F.Model(declared)
    if md.yarn != (3.0, 32, False):
        return False, [f"  FAIL the reference does not read the declared YaRN: {md.yarn}"]
    ok, lines = True, []
    for name, case in random_cases(m.n_vocab).items():
        auto = F.run_case(m, case)
        m.yarn = (3.0, 32, False)
        fixed = F.run_case(m, case)
        m.yarn = None
        runs = (("auto", path, auto, ()), ("yarn x3", path, fixed, ("--rope-scaling", "yarn", "--rope-scale", "3")),
                ("file x3", declared, F.run_case(md, case), ()))
        for label, model, want, extra in runs:
            dev = float(np.abs(engine_logits(sp, model, case, work, isa, kv="f32", extra=extra) - want).max())
            lines.append(f"  qwen2-F32-ctx32 {name:12s} {label:8s} [{isa}]: max dev {dev:.2g} (tolerance 5e-5)")
            if dev > 5e-5:
                ok = False
                lines.append(f"  FAIL YaRN {label} on {name}: max dev {dev:.3g} > 5e-5")
        plain = engine_logits(sp, path, case, work, isa, kv="f32", extra=("--rope-scaling", "none"))
        if float(np.abs(plain - auto).max()) < 1e-2:
            ok = False
            lines.append(f"  FAIL YaRN on {name}: the logits do not move with it (a check that cannot fail)")
    return ok, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sp")
    ap.add_argument("work")
    ap.add_argument("--real", default="")
    ap.add_argument("--quick", action="store_true", help="the best kernel set only")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    isas = kernel_sets()
    if a.quick:
        isas = isas[-1:]
    print("kernel sets:", ", ".join(isas))
    passed = failed = skipped = 0
    for arch, typ in MODELS:
        path = os.path.join(a.work, f"{arch}-{typ}.gguf")
        # written again whenever the binary is newer: a model from an older make-model is stale
        if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(a.sp):
            args = [a.sp, "make-model", "--arch", arch, "--type", typ, "--vocab-from", os.path.join(ROOT, "models", "main.gguf"),
                    "--seed", str(11 + MODELS.index((arch, typ))), "--ctx", "4096", "-o", path + ".tmp"]
            if arch != "llama":
                args += ["--tied", "--rope-base", "1000000"]
            subprocess.run(args, check=True, capture_output=True)
            os.replace(path + ".tmp", path)
        ok, lines, _ = check_model(a.sp, f"{arch}-{typ}", path, random_cases(F.Model(path).n_vocab), isas,
                                typ in ("F32", "F16"), repack=typ in ("Q4_0", "Q4_K", "Q4_K_M", "Q5_K", "Q5_K_M", "Q6_K"))
        want, got = FILE_TYPE.get(typ, "MOSTLY_" + typ), file_type_name(path)
        if got != want:  # what llama.cpp would call the file
            ok = False
            lines.append(f"  FAIL {arch}-{typ}: general.file_type reads as {got} in llama.cpp's numbering, not {want}")
        print("\n".join(lines), flush=True)
        passed, failed = passed + ok, failed + (not ok)
    ok, lines = check_yarn(a.sp, a.work, isas[-1])
    print("\n".join(lines), flush=True)
    passed, failed = passed + ok, failed + (not ok)
    if a.real and os.path.exists(a.real):
        ok, lines = check_real(a.sp, a.real, isas, not a.quick)
        print("\n".join(lines))
        passed, failed = passed + ok, failed + (not ok)
    else:
        print(f"skipped: the real model ({a.real or 'none given'}: run scripts/get-models.sh)")
        skipped += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
