// Load test, loopback only, bounded: N requests from C concurrent clients, a mix of plain,
// streamed, abandoned and malformed requests. Every request must get the right answer, the
// server must stay up, and its memory must return to the idle level.
// Usage: node load.mjs BASE_URL API_KEY SERVER_PID [N=200] [C=8]
import { readFileSync } from 'node:fs';

const [base, key, pid, nArg, cArg] = process.argv.slice(2);
const N = Number(nArg || 200), C = Number(cArg || 8);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };
const deadline = Date.now() + 240000;
const counts = { ok: 0, stream_ok: 0, aborted: 0, rejected: 0, busy: 0, wrong: 0 };
const latencies = [];

async function one(i) {
  const kind = i % 10 < 6 ? 'plain' : i % 10 < 8 ? 'stream' : i % 10 < 9 ? 'abort' : 'bad';
  const t0 = Date.now();
  const prompt = `Request ${i}: ` + 'a long sentence about rivers and mills. '.repeat(1 + (i % 7) * 4);
  try {
    if (kind === 'bad') {
      const r = await fetch(`${base}/completions`, { method: 'POST', headers, body: '{"prompt": ' + (i % 2 ? '[1,2' : '42}') });
      const j = await r.json();
      if (r.status === 400 && j.error) counts.rejected++; else counts.wrong++;
      return;
    }
    const ac = new AbortController();
    const body = JSON.stringify({ prompt, max_tokens: kind === 'abort' ? 5000 : 8, stream: kind !== 'plain', temperature: 0.7, seed: i });
    const r = await fetch(`${base}/completions`, { method: 'POST', headers, body, signal: ac.signal });
    if (r.status === 503) { counts.busy++; await r.text(); return; }
    if (r.status !== 200) { counts.wrong++; console.log('status', r.status, await r.text()); return; }
    if (kind === 'plain') {
      const j = await r.json();
      if (j.choices && j.usage) counts.ok++; else counts.wrong++;
    } else if (kind === 'stream') {
      const text = await r.text();
      if (text.trimEnd().endsWith('data: [DONE]')) counts.stream_ok++; else counts.wrong++;
    } else {
      const reader = r.body.getReader();
      await reader.read();
      ac.abort();
      counts.aborted++;
    }
  } catch (e) {
    if (kind === 'abort') counts.aborted++; else { counts.wrong++; console.log(kind, e.message); }
  } finally {
    latencies.push(Date.now() - t0);
  }
}

await fetch(`${base}/completions`, { method: 'POST', headers, body: JSON.stringify({ prompt: 'warm up', max_tokens: 4 }) }).then(r => r.text());
const idle = rss();
let next = 0;
const t0 = Date.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (next < N && Date.now() < deadline) await one(next++);
}));
const secs = (Date.now() - t0) / 1000;
await new Promise(r => setTimeout(r, 1500));
const health = await fetch(base.replace('/v1', '') + '/health').then(r => r.status).catch(() => 0);
const after = rss();
latencies.sort((a, b) => a - b);
const p = q => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
console.log(JSON.stringify({ requests: next, concurrency: C, seconds: secs, ...counts, p50_ms: p(0.5), p95_ms: p(0.95),
  rss_idle_mb: +idle.toFixed(1), rss_after_mb: +after.toFixed(1), health }));
const answered = counts.ok + counts.stream_ok + counts.aborted + counts.rejected + counts.busy;
// growth allowed over the load (MB): 64, or RSS_SLACK_MB (the sanitizer build: ASan's quarantine
// keeps up to 256 MB of freed memory resident)
const slack = Number(process.env.RSS_SLACK_MB || 64);
const ok = counts.wrong === 0 && answered === next && next === N && health === 200 && after < idle + slack;
console.log(ok ? '1 passed, 0 failed' : '0 passed, 1 failed');
process.exit(ok ? 0 : 1);
