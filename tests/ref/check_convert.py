"""`specprefill convert` round trip: the bundled main model's weights (read from its GGUF with
PyPI's gguf, as F32) are written as safetensors with a config, then converted back with the
bundled tokenizer.json; the result must hold the same F16 tensors byte for byte and the same
tokenizer, so its logits equal the original's. Usage: check_convert.py SPECPREFILL WORKDIR"""
import json
import os
import subprocess
import sys

import gguf
import numpy as np

sp, work = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
src = os.path.join(root, "models", "main.gguf")
os.makedirs(work, exist_ok=True)
r = gguf.GGUFReader(src)
field = lambda k: r.fields[k].contents()

# safetensors: an 8-byte little-endian header length, a JSON header, then the raw tensors
tensors, header, blobs, offset = {}, {}, [], 0
for t in r.tensors:
    a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    a = a.reshape([int(n) for n in t.shape][::-1]) if len(t.shape) > 1 else a.reshape(-1)
    tensors[t.name] = a
    b = np.ascontiguousarray(a).tobytes()
    header[t.name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
    blobs.append(b)
    offset += len(b)
h = json.dumps(header).encode()
h += b" " * ((3 - (8 + len(h)) % 4) % 4)  # the data 3 bytes past alignment: safetensors allows it, convert must cope
with open(os.path.join(work, "main.safetensors"), "wb") as f:
    f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
config = {"config": {"dim": field("llama.embedding_length"), "layers": field("llama.block_count"),
                     "heads": field("llama.attention.head_count"), "kv_heads": field("llama.attention.head_count_kv"),
                     "ffn": field("llama.feed_forward_length"), "rope_base": field("llama.rope.freq_base"),
                     "head_dim": field("llama.attention.key_length") if "llama.attention.key_length" in r.fields
                     else field("llama.embedding_length") // field("llama.attention.head_count")}}
json.dump(config, open(os.path.join(work, "main.json"), "w"))
out = os.path.join(work, "converted.gguf")
res = subprocess.run([sp, "convert", "--weights", os.path.join(work, "main.safetensors"), "--tokenizer",
                      os.path.join(root, "models", "tokenizer.json"), "--config", os.path.join(work, "main.json"),
                      "--type", "F16", "-o", out], capture_output=True, text=True)
passed = failed = 0


def check(ok, what):
    global passed, failed
    passed, failed = passed + ok, failed + (not ok)
    if not ok:
        print("FAIL:", what)


check(res.returncode == 0, f"convert exits 0: {res.stderr[-300:]}")
if res.returncode == 0:
    c = gguf.GGUFReader(out)
    orig = {t.name: t for t in r.tensors}
    same = all(t.name in orig and t.tensor_type == orig[t.name].tensor_type and bytes(t.data) == bytes(orig[t.name].data)
               for t in c.tensors)
    check(same and len(c.tensors) == len(r.tensors), "every tensor byte for byte as in models/main.gguf")
    check(gguf.LlamaFileType(int(c.fields["general.file_type"].contents())).name == "MOSTLY_F16", "general.file_type MOSTLY_F16")
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id"):
        check(c.fields[k].contents() == r.fields[k].contents(), f"{k} as in models/main.gguf")
    case = os.path.join(work, "case.json")
    json.dump({"tokens": [[1110, 40, 41, 42, 300, 301]], "positions": [[0, 1, 2, 3, 4, 5]], "logits_batch": 0}, open(case, "w"))
    la = subprocess.run([sp, "logits", "-m", src, "--case", case], capture_output=True, check=True).stdout
    lb = subprocess.run([sp, "logits", "-m", out, "--case", case], capture_output=True, check=True).stdout
    check(la == lb, "logits identical to the original model's")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
