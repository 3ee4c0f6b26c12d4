// The official `openai` npm client against `specprefill serve`: completions, chat, streaming,
// usage, errors and cancellation. Usage: node client.mjs BASE_URL API_KEY
import OpenAI from 'openai';

const [base, key] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 60000 });
let pass = 0, fail = 0;
const check = (ok, what) => { if (ok) pass++; else { fail++; console.log(`FAIL: ${what}`); } };

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].object === 'model', 'models.list');

const c = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
check(c.object === 'text_completion' && typeof c.choices[0].text === 'string', 'completion shape');
check(c.usage.prompt_tokens > 0 && c.usage.completion_tokens <= 6, 'completion usage');

const chat = await client.chat.completions.create({
  model: 'x', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }], max_completion_tokens: 5, seed: 7,
});
check(chat.object === 'chat.completion' && chat.choices[0].message.role === 'assistant', 'chat shape');
check(['stop', 'length'].includes(chat.choices[0].finish_reason), 'chat finish_reason');

// the same request twice with a seed gives the same text
const again = await client.chat.completions.create({
  model: 'x', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }], max_completion_tokens: 5, seed: 7,
});
check(again.choices[0].message.content === chat.choices[0].message.content, 'seeded sampling is reproducible');

const stream = await client.chat.completions.create({
  model: 'x', messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 8, stream: true, stream_options: { include_usage: true },
});
let chunks = 0, usage = null, finish = null;
for await (const ch of stream) {
  chunks++;
  if (ch.usage) usage = ch.usage;
  if (ch.choices.length && ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
}
check(chunks >= 2 && usage && usage.completion_tokens <= 8 && finish, 'chat streaming with usage');

// speculative prefill extension: keep everything → every prompt token kept
const long = 'The quick brown fox jumps over the lazy dog. '.repeat(10);
const sp = await client.completions.create({ model: 'x', prompt: long, max_tokens: 2, speculative_prefill: { enabled: true, keep_rate: 1.0 } });
check(sp.specprefill.enabled && sp.specprefill.kept_tokens === sp.usage.prompt_tokens, 'keep_rate 1.0 keeps every token');
const sp2 = await client.completions.create({ model: 'x', prompt: long, max_tokens: 2, speculative_prefill: { keep_rate: 0.1, chunk: 8 } });
check(sp2.specprefill.kept_tokens < sp2.usage.prompt_tokens / 2, `keep_rate 0.1 keeps few tokens (${sp2.specprefill.kept_tokens}/${sp2.usage.prompt_tokens})`);

// errors arrive as APIError with the status
for (const [body, status, what] of [
  [{ model: 'x', prompt: 5 }, 400, 'wrong type'],
  [{ model: 'x', prompt: 'hi', temperature: 'hot' }, 400, 'wrong temperature type'],
  [{ model: 'x', prompt: 'word '.repeat(5000), max_tokens: 1 }, 400, 'prompt longer than the context'],
]) {
  try { await client.completions.create(body); check(false, what); }
  catch (e) { check(e.status === status && e.error && e.error.message, `${what}: ${e.status} ${e.error && e.error.message}`); }
}
const noauth = new OpenAI({ baseURL: base, apiKey: 'wrong', maxRetries: 0 });
try { await noauth.models.list(); check(false, 'bad key accepted'); } catch (e) { check(e.status === 401, 'bad key → 401'); }

// cancellation: abort a long stream after its first chunk; the slot must free up at once
const ac = new AbortController();
const s2 = await client.completions.create({ model: 'x', prompt: 'Go on and on', max_tokens: 1500, stream: true, ignore_eos: true }, { signal: ac.signal });
try { for await (const _ of s2) { ac.abort(); } } catch (e) { /* aborted */ }
let busy = -1;
for (let i = 0; i < 40; i++) {
  await new Promise(r => setTimeout(r, 50));
  const m = await (await fetch(base.replace('/v1', '') + '/metrics', { headers: { Authorization: `Bearer ${key}` } })).text();
  busy = Number(/specprefill_slots_busy (\d+)/.exec(m)[1]);
  if (busy === 0) break;
}
check(busy === 0, `disconnect frees the slot (busy ${busy})`);
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
