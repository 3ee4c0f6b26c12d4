"""The official `openai` client against `specprefill serve` running a real instruct model
(SmolLM2-135M-Instruct, rendered with its own chat template): a greedy chat answer names Paris,
streamed and whole alike. (Without a system message the template supplies SmolLM2's default
one, after which the 135M model at Q4_1 rambles in French: the test gives its own.)
Usage: python real.py BASE_URL"""
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0, timeout=120)
q = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the capital of France?"}]
whole = client.chat.completions.create(model="smollm2", messages=q, max_tokens=24, temperature=0)
answer = whole.choices[0].message.content
streamed = "".join(c.choices[0].delta.content or "" for c in
                   client.chat.completions.create(model="smollm2", messages=q, max_tokens=24, temperature=0, stream=True)
                   if c.choices)
checks = [("Paris" in answer, f"the answer names Paris: {answer!r}"),
          (streamed == answer, f"streamed {streamed!r} equals whole {answer!r}"),
          (whole.choices[0].finish_reason == "stop", f"ends at <|im_end|>: {whole.choices[0].finish_reason}")]
for ok, what in checks:
    if not ok:
        print("FAIL:", what)
print(f"answer: {answer!r}")
failed = sum(not ok for ok, _ in checks)
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
