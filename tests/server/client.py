"""The official `openai` Python client against `specprefill serve`: models, completions, chat,
streaming with usage, the speculative_prefill extension, errors as the client's exception types,
and cancellation. Usage: python client.py BASE_URL API_KEY"""
import sys
import time

import httpx
import openai
from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")


models = client.models.list()
check(len(models.data) == 1 and models.data[0].object == "model", "models.list")

c = client.completions.create(model="x", prompt="Once upon a time", max_tokens=6, temperature=0)
check(c.object == "text_completion" and isinstance(c.choices[0].text, str), "completion shape")
check(c.usage.prompt_tokens > 0 and c.usage.completion_tokens <= 6, "completion usage")

msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
chat = client.chat.completions.create(model="x", messages=msgs, max_completion_tokens=5, seed=7)
check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat shape")
check(chat.choices[0].finish_reason in ("stop", "length"), "chat finish_reason")

# the same request twice with a seed gives the same text
again = client.chat.completions.create(model="x", messages=msgs, max_completion_tokens=5, seed=7)
check(again.choices[0].message.content == chat.choices[0].message.content, "seeded sampling is reproducible")

# streaming: chunks, a finish reason and the usage chunk; the streamed text equals the whole answer
story = [{"role": "user", "content": "Tell me a story"}]
stream = client.chat.completions.create(model="x", messages=story, max_tokens=8, temperature=0, stream=True,
                                        stream_options={"include_usage": True})
chunks, usage, finish, text = 0, None, None, ""
for ch in stream:
    chunks += 1
    if ch.usage:
        usage = ch.usage
    if ch.choices:
        if ch.choices[0].finish_reason:
            finish = ch.choices[0].finish_reason
        text += ch.choices[0].delta.content or ""
check(chunks >= 2 and usage is not None and usage.completion_tokens <= 8 and finish, "chat streaming with usage")
whole = client.chat.completions.create(model="x", messages=story, max_tokens=8, temperature=0)
check(whole.choices[0].message.content == text,
      f"streamed text equals the whole answer ({text!r} vs {whole.choices[0].message.content!r})")

# the speculative prefill extension: keep everything -> every prompt token kept
long = "The quick brown fox jumps over the lazy dog. " * 10
sp = client.completions.create(model="x", prompt=long, max_tokens=2,
                               extra_body={"speculative_prefill": {"enabled": True, "keep_rate": 1.0}})
info = sp.model_extra.get("specprefill") or {}
check(info.get("enabled") and info.get("kept_tokens") == sp.usage.prompt_tokens, f"keep_rate 1.0 keeps every token: {info}")
sp2 = client.completions.create(model="x", prompt=long, max_tokens=2,
                                extra_body={"speculative_prefill": {"keep_rate": 0.1, "chunk": 8}, "cache_prompt": False})
info2 = sp2.model_extra.get("specprefill") or {}
check(info2.get("kept_tokens", 1 << 30) < sp2.usage.prompt_tokens / 2,
      f"keep_rate 0.1 keeps few tokens ({info2.get('kept_tokens')}/{sp2.usage.prompt_tokens})")
off = client.completions.create(model="x", prompt=long, max_tokens=2, extra_body={"speculative_prefill": False})
check(not (off.model_extra.get("specprefill") or {}).get("enabled"), "speculative_prefill: false turns it off")

# errors arrive as the client's exception types, with the status and the server's message
for kwargs, exc, status, what in [
    ({"prompt": 5}, openai.BadRequestError, 400, "wrong type"),
    ({"prompt": "hi", "temperature": "hot"}, openai.BadRequestError, 400, "wrong temperature type"),
    ({"prompt": "word " * 5000, "max_tokens": 1}, openai.BadRequestError, 400, "prompt longer than the context"),
    ({"prompt": "hi", "extra_body": {"speculative_prefill": {"keep_rate": 2}}}, openai.BadRequestError, 400, "keep_rate out of range"),
]:
    try:
        client.completions.create(model="x", **kwargs)
        check(False, f"{what}: accepted")
    except exc as e:
        check(e.status_code == status and isinstance(e.body, dict) and e.body.get("message"), f"{what}: {e.status_code} {e.body}")
    except Exception as e:  # the wrong exception type
        check(False, f"{what}: {type(e).__name__} {e}")
try:
    OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    check(False, "bad key accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "bad key -> 401")

# cancellation: close a long stream after its first chunk; the slot must free up at once, and the
# generation must have stopped (not run on to max_tokens with nobody reading)
root = base.rsplit("/v1", 1)[0]


def metric(name):
    m = httpx.get(root + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
    return float(next(l.split()[1] for l in m.splitlines() if l.startswith(name + " ")))


generated_before = metric("specprefill_generated_tokens_total")
s2 = client.completions.create(model="x", prompt="Go on and on", max_tokens=1500, stream=True, extra_body={"ignore_eos": True})
for _ in s2:
    break
s2.close()
busy = -1
for _ in range(200):
    time.sleep(0.05)
    busy = metric("specprefill_slots_busy")
    if busy == 0:
        break
check(busy == 0, f"disconnect frees the slot (busy {busy})")
generated = metric("specprefill_generated_tokens_total") - generated_before
check(generated < 750, f"a cancelled generation stops: {generated:.0f} of 1500 tokens generated")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
