"""Chat templates: the engine (`specprefill template`) against PyPI's jinja2 set up as Hugging Face
transformers renders chat templates (an immutable sandbox, trim_blocks, lstrip_blocks, loop
controls, its own tojson, raise_exception and strftime_now). Every template in tests/templates/
(and, as a second opinion, ../shared's) renders every conversation below, with and without the
generation prompt: the text must be byte-identical, and where jinja2 raises the engine must fail
too. Usage: check_templates.py SPECPREFILL [--shared DIR]"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

sp = sys.argv[1]
shared = sys.argv[sys.argv.index("--shared") + 1] if "--shared" in sys.argv else None
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' tojson: json.dumps without jinja2's HTML escaping
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class Raised(jinja2.exceptions.TemplateError):
    """the template's own raise_exception (transformers raises TemplateError)"""


def raise_exception(message):
    raise Raised(message)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "Name, e.g. Paris"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Adds two numbers",
                                      "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}},
]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CALL = {"role": "assistant", "content": None,
        "tool_calls": [{"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
CALL_TEXT_ARGS = {"role": "assistant", "content": "",
                  "tool_calls": [{"id": "call12345", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]}
RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 21}"}

CONVERSATIONS = {
    "one user turn": ([{"role": "user", "content": "Hello! What is the capital of France?"}], {}),
    "system and user": ([SYSTEM, {"role": "user", "content": "Hi there."}], {}),
    "multi-turn": ([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
                    {"role": "user", "content": "And 3+3?"}], {}),
    "system, multi-turn": ([SYSTEM, {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
                            {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Green."},
                            {"role": "user", "content": "Thanks"}], {}),
    "whitespace and unicode": ([{"role": "user", "content": "  héllo wörld 👋\n\n\tÜber — “quotes” 'single' \\ back  "}], {}),
    "reasoning in an earlier turn": ([{"role": "user", "content": "Think: 1+1?"},
                                      {"role": "assistant", "content": "<think>\nOne and one.\n</think>\n\nIt is 2."},
                                      {"role": "user", "content": "And 2+2?"}], {}),
    "thinking off": ([{"role": "user", "content": "Quick: capital of Italy?"}], {"enable_thinking": False}),
    "thinking on": ([{"role": "user", "content": "Quick: capital of Spain?"}], {"enable_thinking": True}),
    "content parts": ([{"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]}], {}),
    "tools offered": ([SYSTEM, {"role": "user", "content": "Weather in Paris?"}], {"tools": TOOLS}),
    "tool call and result": ([{"role": "user", "content": "Weather in Paris?"}, CALL, RESULT], {"tools": TOOLS}),
    "tool call with text arguments": ([{"role": "user", "content": "Add 1 and 2"}, CALL_TEXT_ARGS,
                                       {"role": "tool", "tool_call_id": "call12345", "content": "3"}], {"tools": TOOLS}),
    "a fixed date": ([SYSTEM, {"role": "user", "content": "What day is it?"}], {"date_string": "01 Jan 2025"}),
    "built-in tools": ([{"role": "user", "content": "Search the news"},
                        {"role": "assistant", "content": None, "tool_calls": [{"id": "call12345", "type": "function",
                                                                               "function": {"name": "brave_search", "arguments": {"query": "news"}}}]},
                        {"role": "tool", "tool_call_id": "call12345", "content": "Nothing new."}],
                       {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}),
}

# the special tokens each family's tokenizer has (transformers passes them as bos_token / eos_token)
TOKENS = [("llama-3", "<|begin_of_text|>", "<|eot_id|>"), ("Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
          ("Qwen", "", "<|im_end|>"), ("qwen", "", "<|im_end|>"), ("SmolLM", "<|im_start|>", "<|im_end|>"),
          ("DeepSeek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"), ("gemma", "<bos>", "<eos>"),
          ("Phi", "<s>", "<|endoftext|>"), ("phi", "<s>", "<|endoftext|>")]


def tokens_for(name):
    for key, bos, eos in TOKENS:
        if key in name:
            return bos, eos
    return "<s>", "</s>"


templates = []
tdir = os.path.join(root, "tests", "templates")
for f in sorted(os.listdir(tdir)):
    if f.endswith(".jinja"):
        templates.append((f, open(os.path.join(tdir, f), encoding="utf-8").read()))
if shared and os.path.isdir(os.path.join(shared, "fixtures", "templates")):
    sdir = os.path.join(shared, "fixtures", "templates")
    for f in sorted(os.listdir(sdir)):
        if f.endswith(".jinja"):
            templates.append(("shared/" + f, open(os.path.join(sdir, f), encoding="utf-8").read()))
else:
    print("skipped: ../shared's templates (a second opinion)")

passed = failed = identical = both_refuse = 0
work = tempfile.mkdtemp()
for name, source in templates:
    bos, eos = tokens_for(name)
    tpath = os.path.join(work, "t.jinja")
    with open(tpath, "w", encoding="utf-8") as fh:
        fh.write(source)
    template = env.from_string(source)
    rendered_here = 0
    for conv_name, (messages, extra) in CONVERSATIONS.items():
        for gen in (True, False):
            try:
                want = template.render(**{"messages": messages, "add_generation_prompt": gen, "bos_token": bos, "eos_token": eos,
                                          "tools": None, "documents": None, **extra})
                want_error = None
            except Raised as e:  # the template's raise_exception: the engine must say the same
                want, want_error, want_message = None, f"raise_exception: {e}", str(e)
            except Exception as e:  # Python refuses it otherwise (a TypeError, ...): the engine must fail too
                want, want_error, want_message = None, f"{type(e).__name__}: {e}", None
            mpath = os.path.join(work, "m.json")
            with open(mpath, "w", encoding="utf-8") as fh:
                json.dump(messages, fh, ensure_ascii=False)
            cmd = [sp, "template", "--file", tpath, "--messages", mpath, "--bos", bos, "--eos", eos]
            cmd += ["--add-generation-prompt"] if gen else []
            for k, v in extra.items():
                cmd += ["--var", f"{k}={json.dumps(v, ensure_ascii=False)}"]
            r = subprocess.run(cmd, capture_output=True)
            got = r.stdout.decode("utf-8", "replace")
            what = f"{name} / {conv_name} / generation prompt {'on' if gen else 'off'}"
            if want_error is not None:
                if r.returncode == 1 and b"error:" in r.stderr and (want_message is None or want_message in r.stderr.decode("utf-8", "replace")):
                    passed += 1
                    both_refuse += 1
                else:
                    failed += 1
                    print(f"FAIL: {what}: jinja2 refuses ({want_error}); the engine (exit {r.returncode}): "
                          f"{r.stderr.decode(errors='replace').strip()[:200]} {got[:200]!r}")
            elif r.returncode != 0:
                failed += 1
                print(f"FAIL: {what}: the engine failed: {r.stderr.decode(errors='replace').strip()[:300]}")
            elif got != want:
                failed += 1
                at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
                print(f"FAIL: {what}: differs at {at}:\n  engine: {got[max(0, at - 60):at + 60]!r}\n  jinja2: {want[max(0, at - 60):at + 60]!r}")
            else:
                passed += 1
                identical += 1
                rendered_here += 1
    print(f"{name}: {rendered_here} renderings identical")
print(f"{len(templates)} templates x {len(CONVERSATIONS)} conversations x 2: {identical} identical renderings, "
      f"{both_refuse} refused by both")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
