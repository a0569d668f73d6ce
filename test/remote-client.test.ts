// The remote generator and its partial-results file against an in-process fake OpenAI-compatible server
// (pure TS, fast): request shape and seeds, bounded concurrency, retries on 429/500/hangs/dropped
// connections, typed 4xx errors naming the prompt, resuming without duplicates or gaps, API keys kept out
// of files and messages. The same behaviours against a real llama-server: remote-server.test.ts.
import test from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContextOverflowError } from '../lib/errors.js';
import { sampleResumable } from '../lib/generate/resumable.js';
import { PartialResultsError, RemoteAuthError, RemoteModelNotFoundError, RemoteUnavailableError } from '../lib/remote/errors.js';
import { SampleJournal } from '../lib/remote/journal.js';
import { normalizeEndpoint, RemoteGenerator } from '../lib/remote/openai.js';
import { requestSeed } from '../lib/remote/seed.js';
import { TMP } from './helpers/models.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');

interface Fake {
  url: string;
  bodies: any[];
  headers: http.IncomingHttpHeaders[];
  inFlight: number;
  maxInFlight: number;
  /** Per completion request (0-based count): a fault, or undefined to answer. */
  fault: (i: number, body: any) => 'hang' | 'reset' | number | undefined;
  key?: string;
  delayMs: number;
  close(): Promise<void>;
}

const textOf = (prompt: string, seed: number) => `t${crypto.createHash('sha256').update(`${prompt}|${seed}`).digest('hex').slice(0, 8)}`;

/** Answers like vLLM: stop_reason per choice, usage counts tokens; "long" prompts overflow the context. */
async function fakeServer(o: Partial<Pick<Fake, 'fault' | 'key' | 'delayMs'>> = {}): Promise<Fake> {
  let completions = 0;
  const f: Fake = {
    url: '', bodies: [], headers: [], inFlight: 0, maxInFlight: 0, fault: o.fault ?? (() => undefined), key: o.key, delayMs: o.delayMs ?? 5,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    f.headers.push(req.headers);
    if (f.key && req.headers.authorization !== `Bearer ${f.key}`) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: 'Invalid API key' } }));
    }
    if (req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: [{ id: 'tiny', object: 'model', owned_by: 'vllm', max_model_len: 64 }] }));
    }
    const body = JSON.parse(Buffer.concat(chunks).toString());
    const i = completions++;
    f.bodies.push(body);
    const fault = f.fault(i, body);
    if (fault === 'hang') return; // never answers
    if (fault === 'reset') return req.socket.destroy();
    if (typeof fault === 'number') {
      res.writeHead(fault, { 'content-type': 'application/json', 'retry-after': '0' });
      return res.end(JSON.stringify({ error: { message: `injected ${fault}` } }));
    }
    if (body.model !== 'tiny') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'error', message: `The model \`${body.model}\` does not exist.`, type: 'NotFoundError', code: 404 }));
    }
    if (String(body.prompt).startsWith('long')) {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'error', message: "This model's maximum context length is 64 tokens. However, you requested 900 tokens.", code: 400 }));
    }
    f.inFlight++;
    f.maxInFlight = Math.max(f.maxInFlight, f.inFlight);
    await new Promise((r) => setTimeout(r, f.delayMs));
    f.inFlight--;
    const text = textOf(body.prompt, body.seed);
    const eos = body.seed % 2 === 0;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      object: 'text_completion', model: body.model,
      choices: [{ index: 0, text, finish_reason: 'stop', stop_reason: eos ? null : 'Question', logprobs: null }],
      usage: { completion_tokens: eos ? 4 : 3, prompt_tokens: 5, total_tokens: 8 },
    }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  f.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return f;
}

const PROMPTS = ['Question: 1 + 1?\nAnswer:', 'Question: 2 + 2?\nAnswer:', 'Question: 3 + 3?\nAnswer:'];
const fast = { backoff: 0.01, maxBackoff: 0.05 };

test('endpoints normalise to their /v1 base', (t) => {
  t.is(normalizeEndpoint('http://h:8080'), 'http://h:8080/v1');
  t.is(normalizeEndpoint('http://h:8080/v1/'), 'http://h:8080/v1');
  t.is(normalizeEndpoint('http://h:8080/v1/completions'), 'http://h:8080/v1');
  t.is(normalizeEndpoint('https://h/openai/v1'), 'https://h/openai/v1');
  t.throws(() => normalizeEndpoint('ftp://h'), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});

test('one request per sample, seeded by (seed, prompt, sample); rows ordered; concurrency bounded; vLLM finish reasons', async (t) => {
  const fake = await fakeServer({ delayMs: 20 });
  t.teardown(() => fake.close());
  const gen = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', concurrency: 2 });
  const progress: number[] = [];
  const out = await gen.sample(PROMPTS, { n: 3, temperature: 1, topP: 0.9, maxTokens: 7, stop: ['Question'], seed: 5, onProgress: (p) => progress.push(p.finished) });
  t.is(out.length, 9);
  t.deepEqual(out.map((s) => [s.promptIndex, s.sampleIndex]), PROMPTS.flatMap((_, p) => [0, 1, 2].map((s) => [p, s])));
  for (const s of out) {
    const seed = requestSeed(5, s.promptIndex, s.sampleIndex);
    t.is(s.text, textOf(PROMPTS[s.promptIndex]!, seed));
    // The fake's EOS answers count the EOS token (as vLLM does): the rows do not.
    t.is(s.finishReason, seed % 2 === 0 ? 'eos' : 'stop');
    t.is(s.tokens, 3);
  }
  t.is(new Set(fake.bodies.map((b) => b.seed)).size, 9);
  const b = fake.bodies[0];
  t.like(b, { model: 'tiny', n: 1, max_tokens: 7, temperature: 1, top_p: 0.9, stop: ['Question'], top_k: -1, min_p: 0 });
  t.is(fake.maxInFlight, 2);
  t.is(progress.at(-1), 9);
  // The same request again asks for the same draws.
  const again = await gen.sample(PROMPTS, { n: 3, temperature: 1, topP: 0.9, maxTokens: 7, stop: ['Question'], seed: 5 });
  t.deepEqual(again, out);
});

test('429, 500, a hung request and a dropped connection are retried with backoff; exhausted retries are RemoteUnavailableError', async (t) => {
  const faults: Record<number, 'hang' | 'reset' | number> = { 0: 429, 1: 500, 2: 'hang', 3: 'reset', 4: 503 };
  const fake = await fakeServer({ fault: (i) => faults[i] });
  t.teardown(() => fake.close());
  const retries: string[] = [];
  const gen = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', concurrency: 1, timeout: 0.5, ...fast, onRetry: (r) => retries.push(r.reason) });
  const started = Date.now();
  const out = await gen.sample([PROMPTS[0]!], { n: 1, temperature: 0 });
  t.is(out[0]!.text, textOf(PROMPTS[0]!, requestSeed(0, 0, 0)));
  t.is(retries.length, 5);
  t.regex(retries[0]!, /HTTP 429/);
  t.regex(retries[1]!, /HTTP 500/);
  t.regex(retries[2]!, /no answer within 0.5 s/);
  t.regex(retries[3]!, /connection failed/);
  t.regex(retries[4]!, /HTTP 503/);
  // Every attempt asked for the same draw.
  t.is(new Set(fake.bodies.map((b) => b.seed)).size, 1);
  t.log(`5 faults then success in ${Date.now() - started} ms`);

  const down = await fakeServer({ fault: () => 500 });
  t.teardown(() => down.close());
  const g2 = new RemoteGenerator({ endpoint: down.url, model: 'tiny', retries: 2, ...fast });
  const err = await t.throwsAsync(g2.sample(['x'], { temperature: 0 }), { instanceOf: RemoteUnavailableError });
  t.regex(err!.message, /failed 3 times; last: HTTP 500/);
});

test('4xx answers are typed errors naming the prompt, never retried', async (t) => {
  const fake = await fakeServer();
  t.teardown(() => fake.close());
  const gen = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', concurrency: 1 });
  const err = await t.throwsAsync(gen.sample(['a', 'b', 'long prompt'], { temperature: 0 }), { instanceOf: ContextOverflowError });
  t.regex(err!.message, /^prompt 2 does not fit the context of remote tiny .*\(64 tokens per sequence\)/);
  t.is(fake.bodies.filter((b) => b.prompt === 'long prompt').length, 1);

  const wrong = new RemoteGenerator({ endpoint: fake.url, model: 'tinny' });
  const e2 = await t.throwsAsync(wrong.sample(['a'], { temperature: 0 }), { instanceOf: RemoteModelNotFoundError });
  t.is(e2!.message, `remote tinny at ${fake.url}/v1: the server does not serve a model named "tinny"; it serves "tiny"`);
});

test('API key from the environment: sent as Bearer, never in messages or files', async (t) => {
  const secret = 'sk-test-do-not-leak-1234';
  const fake = await fakeServer({ key: secret });
  t.teardown(() => fake.close());
  process.env.W2S_TEST_KEY = secret;
  const gen = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', apiKeyEnv: 'W2S_TEST_KEY' });
  const partial = path.join(TMP, 'key.partial');
  const r = await sampleResumable(gen, PROMPTS, { partial, temperature: 0 });
  t.is(r.samples.length, 3);
  t.true(fake.headers.every((h) => h.authorization === `Bearer ${secret}`));
  t.false(fs.readFileSync(partial, 'utf8').includes(secret));
  t.false(JSON.stringify(gen).includes(secret));
  t.false(gen.description.includes(secret));
  delete process.env.W2S_TEST_KEY;
  const noKey = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', apiKeyEnv: 'W2S_TEST_KEY' });
  const err = await t.throwsAsync(noKey.sample(['a']), { instanceOf: RemoteAuthError });
  t.regex(err!.message, /needs an API key: set \$W2S_TEST_KEY/);
  process.env.W2S_TEST_KEY = 'wrong-key-5678';
  const bad = await t.throwsAsync(new RemoteGenerator({ endpoint: fake.url, model: 'tiny', apiKeyEnv: 'W2S_TEST_KEY' }).sample(['a']), { instanceOf: RemoteAuthError });
  t.false(bad!.message.includes('wrong-key-5678'));
  delete process.env.W2S_TEST_KEY;
});

test('partial results: an interrupted run resumes with only the missing requests, no duplicates or gaps; a torn last line is cut', async (t) => {
  const fake = await fakeServer({ delayMs: 10 });
  t.teardown(() => fake.close());
  const prompts = Array.from({ length: 6 }, (_, i) => `Question: ${i}?\nAnswer:`);
  const partial = path.join(TMP, 'resume.partial');
  const gen = new RemoteGenerator({ endpoint: fake.url, model: 'tiny', concurrency: 2 });
  const controller = new AbortController();
  let got = 0;
  await t.throwsAsync(sampleResumable(gen, prompts, {
    partial, n: 2, temperature: 1, seed: 3, signal: controller.signal,
    onSample: () => {
      if (++got === 5) controller.abort();
    },
  }), { name: 'AbortError' });
  await new Promise((r) => setTimeout(r, 200)); // requests cut off by the abort may still reach the fake
  const kept = fs.readFileSync(partial, 'utf8').trim().split('\n').length - 1;
  t.true(kept >= 5 && kept < 12, `${kept} rows kept`);
  // A writer killed mid-line leaves a torn row: it is cut off and asked again.
  fs.appendFileSync(partial, '{"prompt_index":5,"sample_in');
  const before = fake.bodies.length;
  const r = await sampleResumable(gen, prompts, { partial, n: 2, temperature: 1, seed: 3 });
  t.is(r.resumed, kept);
  t.is(fake.bodies.length - before, 12 - kept);
  t.deepEqual(r.samples.map((s) => `${s.promptIndex}:${s.sampleIndex}`), prompts.flatMap((_, p) => [`${p}:0`, `${p}:1`]));
  const full = await new RemoteGenerator({ endpoint: fake.url, model: 'tiny' }).sample(prompts, { n: 2, temperature: 1, seed: 3 });
  t.deepEqual(r.samples, full);
  // Over both runs each (prompt, sample) was asked once, except those in flight at the abort (concurrency 2).
  const asked = fake.bodies.slice(0, fake.bodies.length - 12).map((b) => `${b.prompt}|${b.seed}`);
  t.true(asked.length - new Set(asked).size <= 2, `${asked.length - new Set(asked).size} asked twice`);
  t.is(new Set(asked).size, 12);
  const rows = fs.readFileSync(partial, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l));
  t.is(rows.length, 12);
  r.done();
  t.false(fs.existsSync(partial));

  // Another request may not reuse the file.
  const other = path.join(TMP, 'other.partial');
  await sampleResumable(gen, prompts, { partial: other, n: 2, temperature: 1, seed: 3 });
  const err = await t.throwsAsync(sampleResumable(gen, prompts, { partial: other, n: 2, temperature: 0.5, seed: 3 }), { instanceOf: PartialResultsError });
  t.regex(err!.message, /differs in temperature/);
  // A live writer holds the lock.
  const j = SampleJournal.open(path.join(TMP, 'locked.partial'), { prompts: 'x', promptCount: 1, n: 1 });
  fs.writeFileSync(path.join(TMP, 'locked.partial.lock'), String(process.ppid));
  t.throws(() => SampleJournal.open(path.join(TMP, 'locked.partial'), { prompts: 'x', promptCount: 1, n: 1 }), { instanceOf: PartialResultsError, message: /being written by another process/ });
  j.close();
});

function w2s(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('w2s sample --endpoint: the documented rows; a wrong model name is exit 2 and writes nothing', async (t) => {
  const fake = await fakeServer();
  t.teardown(() => fake.close());
  const dir = fs.mkdtempSync(path.join(TMP, 'cli-'));
  const prompts = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(prompts, PROMPTS.map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n');
  const out = path.join(dir, 'out.jsonl');
  const r = await w2s(['sample', '--endpoint', `${fake.url}/v1`, '--model-name', 'tiny', '--prompts', prompts, '--n', '2', '--temperature', '0.7', '--seed', '9', '--out', out]);
  t.is(r.status, 0, r.stderr);
  const rows = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(rows.length, 6);
  t.deepEqual(Object.keys(rows[0]), ['prompt_index', 'sample_index', 'text', 'tokens', 'finish_reason']);
  t.false(fs.existsSync(`${out}.partial`));
  t.regex(r.stderr, /6 samples \(6 generated by remote tiny/);

  const never = path.join(dir, 'never.jsonl');
  const bad = await w2s(['sample', '--endpoint', fake.url, '--model-name', 'nope', '--prompts', prompts, '--out', never]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /does not serve a model named "nope".*\[ERR_W2S_REMOTE_MODEL\]/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['out.jsonl', 'prompts.jsonl']);
});

test('Ctrl-C during w2s sample --endpoint: exit 130, the finished samples stay in <out>.partial, a re-run completes from them', async (t) => {
  const fake = await fakeServer({ delayMs: 40 });
  t.teardown(() => fake.close());
  const dir = fs.mkdtempSync(path.join(TMP, 'sigint-'));
  const prompts = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(prompts, Array.from({ length: 20 }, (_, i) => JSON.stringify({ prompt: `Question: ${i}?` })).join('\n') + '\n');
  const out = path.join(dir, 'out.jsonl');
  const args = [cli, 'sample', '--endpoint', fake.url, '--model-name', 'tiny', '--prompts', prompts, '--n', '2', '--concurrency', '2', '--out', out];
  const child = spawn(process.execPath, args);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const partial = `${out}.partial`;
  const rows = () => (fs.existsSync(partial) ? fs.readFileSync(partial, 'utf8').trim().split('\n').length - 1 : 0);
  while (rows() < 4) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGINT');
  const status = await new Promise<number | null>((r) => child.on('close', r));
  t.is(status, 130, stderr);
  t.false(fs.existsSync(out));
  const kept = rows();
  t.true(kept >= 4 && kept < 40, `${kept}`);
  t.false(fs.existsSync(`${partial}.lock`));
  await new Promise((r) => setTimeout(r, 200)); // requests cut off by the interrupt may still reach the fake
  const before = fake.bodies.length;
  const again = await w2s(args.slice(1));
  t.is(again.status, 0, again.stderr);
  t.is(fake.bodies.length - before, 40 - kept);
  t.is(fs.readFileSync(out, 'utf8').trim().split('\n').length, 40);
});
