// Remote generation against a REAL llama-server (built from deps/llama.cpp, cached outside the clone) on a
// loopback port, serving a created model: `w2s sample --endpoint` rows and greedy parity with the local
// sampler; faults through a loopback proxy (429, 500, a hung request, a dropped connection, a wrong model
// name); the server killed mid-run and restarted (resume without duplicates or gaps); LoRA hot-loading.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../lib/model.js';
import { RemoteGenerator } from '../lib/remote/openai.js';
import { listLoraAdapters, setLoraAdapters, type LlamaServer } from '../lib/remote/llama-server.js';
import { trainSft } from '../lib/train/sft.js';
import { faultProxy, llamaServerBinary, startServer } from './helpers/llama-server.js';
import { PROMPTS, TMP, tinyModel } from './helpers/models.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
let binary = '';
let model = '';
let server: LlamaServer | undefined;
const servers: LlamaServer[] = [];

test.before(async (t) => {
  binary = await llamaServerBinary(t);
  model = await tinyModel({ seed: 31, ctx: 1024 });
  const started = Date.now();
  server = await startServer(binary, model);
  servers.push(server);
  t.log(`llama-server ${binary} ready in ${Date.now() - started} ms on ${server.url}`);
});
test.after.always(async () => {
  for (const s of servers) await s.stop();
});

function w2s(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
const readRows = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

function promptsFile(dir: string, prompts: readonly string[]): string {
  const f = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(f, prompts.map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n');
  return f;
}

test.serial('w2s sample --endpoint writes the documented rows; greedy text, tokens and finish reasons equal the local sampler', async (t) => {
  const dir = fs.mkdtempSync(path.join(TMP, 'greedy-'));
  const prompts = promptsFile(dir, PROMPTS);
  const common = ['--prompts', prompts, '--temperature', '0', '--max-tokens', '40', '--stop', 'Question'];
  const local = path.join(dir, 'local.jsonl');
  const remote = path.join(dir, 'remote.jsonl');
  const t0 = Date.now();
  const r1 = await w2s(['sample', '--model', model, ...common, '--threads', '1', '--out', local]);
  t.is(r1.status, 0, r1.stderr);
  const t1 = Date.now();
  const r2 = await w2s(['sample', '--endpoint', `${server!.url}/v1`, '--model-name', 'tiny', ...common, '--out', remote]);
  t.is(r2.status, 0, r2.stderr);
  t.log(`local ${t1 - t0} ms, remote ${Date.now() - t1} ms (each includes process start)`);
  const a = readRows(local);
  const b = readRows(remote);
  t.deepEqual(Object.keys(b[0]), ['prompt_index', 'sample_index', 'text', 'tokens', 'finish_reason']);
  t.deepEqual(b, a);
  t.log(b.map((r) => `${r.prompt_index}: ${JSON.stringify(r.text).slice(0, 60)} (${r.tokens} tokens, ${r.finish_reason})`).join('\n'));
  // Stop strings that do occur: cut at the same place, finish reason `stop`, same token counts.
  const stops = ['--prompts', prompts, '--temperature', '0', '--max-tokens', '40', '--stop', 'e', '--stop', 'is'];
  t.is((await w2s(['sample', '--model', model, ...stops, '--threads', '1', '--out', local])).status, 0);
  t.is((await w2s(['sample', '--endpoint', server!.url, '--model-name', 'tiny', ...stops, '--out', remote])).status, 0);
  const c = readRows(remote);
  t.deepEqual(c, readRows(local));
  t.true(c.filter((r) => r.finish_reason === 'stop').length >= 3, JSON.stringify(c));

  // Sampled: n rows per prompt in order, distinct draws per sample, the same draws on a re-run.
  const sampled = path.join(dir, 'sampled.jsonl');
  const args = ['sample', '--endpoint', server!.url, '--model-name', 'tiny', '--prompts', prompts, '--n', '3', '--temperature', '1', '--seed', '7', '--max-tokens', '16', '--out', sampled];
  t.is((await w2s(args)).status, 0);
  const s1 = readRows(sampled);
  t.deepEqual(s1.map((r) => [r.prompt_index, r.sample_index]), PROMPTS.flatMap((_, p) => [0, 1, 2].map((s) => [p, s])));
  t.true(new Set(s1.map((r) => r.text)).size > PROMPTS.length, 'samples differ');
  t.is((await w2s(args)).status, 0);
  t.deepEqual(readRows(sampled), s1);
  // --group-samples: one request with n per prompt; llama-server's n children draw distinct samples, reproducibly.
  t.is((await w2s([...args, '--group-samples'])).status, 0);
  const g1 = readRows(sampled);
  t.deepEqual(g1.map((r) => [r.prompt_index, r.sample_index]), s1.map((r) => [r.prompt_index, r.sample_index]));
  for (let p = 0; p < PROMPTS.length; p++) t.is(new Set(g1.filter((r) => r.prompt_index === p).map((r) => r.text)).size, 3);
  t.is((await w2s([...args, '--group-samples'])).status, 0);
  t.deepEqual(readRows(sampled), g1);
});

test.serial('greedy parity on qwen2 (byte-level BPE, tied embeddings) and qwen3 models too', async (t) => {
  for (const arch of ['qwen2', 'qwen3'] as const) {
    const file = await tinyModel({ arch, seed: 41 });
    const s = await startServer(binary, file);
    servers.push(s);
    const opts = { temperature: 0, maxTokens: 32, stop: ['e', 'Question'] };
    const m = await loadModel(file);
    const local = await m.sample(PROMPTS, { ...opts, threads: 1 });
    m.dispose();
    const remote = await new RemoteGenerator({ endpoint: s.url, model: 'tiny' }).sample(PROMPTS, opts);
    t.deepEqual(remote, local, arch);
    t.log(`${arch}: ${remote.map((x) => `${x.tokens} ${x.finishReason}`).join(', ')}`);
    await s.stop();
  }
});

test.serial('through a loopback proxy: 429, 500, a hung request and a dropped connection are retried; a wrong model name is a typed error and writes nothing', async (t) => {
  const proxy = await faultProxy(server!.url);
  t.teardown(() => proxy.close());
  const faults = ['pass' /* GET /models */, { status: 429, retryAfter: 0 }, { status: 500 }, 'hang', 'reset'] as const;
  proxy.plan = ({ index }) => faults[index] ?? 'pass';
  const reasons: string[] = [];
  const gen = new RemoteGenerator({ endpoint: proxy.url, model: 'tiny', concurrency: 1, timeout: 1, backoff: 0.05, onRetry: (r) => reasons.push(r.reason) });
  const direct = new RemoteGenerator({ endpoint: server!.url, model: 'tiny' });
  const opts = { temperature: 0, maxTokens: 24, stop: ['Question'] };
  const started = Date.now();
  const got = await gen.sample(PROMPTS.slice(0, 3), opts);
  t.log(`4 faults, then success: ${Date.now() - started} ms; retries: ${reasons.join(' | ')}`);
  t.deepEqual(got, await direct.sample(PROMPTS.slice(0, 3), opts));
  t.is(reasons.length, 4);
  t.regex(reasons.join('\n'), /HTTP 429[^]*HTTP 500[^]*no answer within 1 s[^]*connection failed/);

  const dir = fs.mkdtempSync(path.join(TMP, 'wrong-'));
  const prompts = promptsFile(dir, PROMPTS);
  const r = await w2s(['sample', '--endpoint', proxy.url, '--model-name', 'tiny-typo', '--prompts', prompts, '--out', path.join(dir, 'out.jsonl')]);
  t.is(r.status, 2);
  t.regex(r.stderr, /does not serve a model named "tiny-typo"; it serves "tiny".*\[ERR_W2S_REMOTE_MODEL\]/);
  t.deepEqual(fs.readdirSync(dir), ['prompts.jsonl']);
});

test.serial('the server killed mid-run and restarted: the re-run sends only what is missing; no duplicates, no gaps, the same draws', async (t) => {
  const dir = fs.mkdtempSync(path.join(TMP, 'kill-'));
  const prompts = Array.from({ length: 8 }, (_, i) => `Question: Tom has ${i + 3} apples and buys ${i + 1} more. How many apples?\nAnswer:`);
  const file = promptsFile(dir, prompts);
  const out = path.join(dir, 'out.jsonl');
  const victim = await startServer(binary, model);
  servers.push(victim);
  const proxy = await faultProxy(victim.url);
  t.teardown(() => proxy.close());
  const args = ['sample', '--endpoint', proxy.url, '--model-name', 'tiny', '--prompts', file, '--n', '4', '--temperature', '1', '--seed', '3',
    '--max-tokens', '24', '--concurrency', '2', '--retries', '1', '--timeout', '2', '--out', out];

  // 1. The proxy lets 8 completions through and holds the rest (so the kill lands mid-run on any machine);
  // the server is killed once they are in the partial file: the CLI gives up (exit 1) and keeps them.
  proxy.plan = ({ index }) => (index > 8 ? 'hang' : 'pass'); // index 0 is GET /models
  const run = w2s(args);
  const partial = `${out}.partial`;
  const rowsIn = () => (fs.existsSync(partial) ? fs.readFileSync(partial, 'utf8').split('\n').filter((l) => l.startsWith('{"prompt_index"')).length : 0);
  while (rowsIn() < 8) await new Promise((r) => setTimeout(r, 20));
  await victim.stop('SIGKILL');
  const first = await run;
  t.is(first.status, 1, first.stderr);
  t.regex(first.stderr, /ERR_W2S_REMOTE_UNAVAILABLE/);
  t.false(fs.existsSync(out));
  const kept = rowsIn();
  t.is(kept, 8);
  proxy.plan = () => 'pass';

  // 2. Restart (another port), re-run: only the missing samples are requested.
  const again = await startServer(binary, model);
  servers.push(again);
  proxy.upstream = again.url;
  proxy.seen.length = 0;
  const second = await w2s(args);
  t.is(second.status, 0, second.stderr);
  const asked = proxy.seen.filter((s) => s.path === '/v1/completions');
  t.is(asked.length, 32 - kept);
  const rows = readRows(out);
  t.deepEqual(rows.map((r) => `${r.prompt_index}:${r.sample_index}`), prompts.flatMap((_, p) => [0, 1, 2, 3].map((s) => `${p}:${s}`)));
  t.false(fs.existsSync(partial));
  t.regex(second.stderr, new RegExp(`32 samples \\(${kept} from .*partial, ${32 - kept} generated`));

  // 3. The same draws as an uninterrupted run (per-request seeds; llama-server honours them).
  const whole = path.join(dir, 'whole.jsonl');
  t.is((await w2s([...args.slice(0, -1), whole].map((a) => (a === proxy.url ? again.url : a)))).status, 0);
  const same = readRows(whole).filter((r, i) => r.text === rows[i].text).length;
  t.log(`resumed run: ${kept} samples kept, ${32 - kept} asked again; ${same}/32 texts equal those of an uninterrupted run`);
  t.is(same, 32);
});

test.serial('the server restarted within the retry window: the run carries on without a gap', async (t) => {
  const victim = await startServer(binary, model);
  servers.push(victim);
  const proxy = await faultProxy(victim.url);
  t.teardown(() => proxy.close());
  let finished = 0;
  let restarted: Promise<void> | undefined;
  const gen = new RemoteGenerator({ endpoint: proxy.url, model: 'tiny', concurrency: 2, retries: 10, backoff: 0.2, maxBackoff: 1 });
  const prompts = PROMPTS.slice(0, 4);
  const samples = await gen.sample(prompts, {
    n: 4, temperature: 1, seed: 11, maxTokens: 16,
    onSample: () => {
      if (++finished === 5) {
        restarted = (async () => {
          await victim.stop('SIGKILL');
          await new Promise((r) => setTimeout(r, 500));
          const next = await startServer(binary, model);
          servers.push(next);
          proxy.upstream = next.url;
        })();
      }
    },
  });
  await restarted;
  t.is(samples.length, 16);
  t.is(new Set(samples.map((s) => `${s.promptIndex}:${s.sampleIndex}`)).size, 16);
  const direct = await new RemoteGenerator({ endpoint: proxy.url, model: 'tiny' }).sample(prompts, { n: 4, temperature: 1, seed: 11, maxTokens: 16 });
  t.deepEqual(samples.map((s) => s.text), direct.map((s) => s.text));
});

test.serial('LoRA on llama-server: a locally trained adapter, loaded at start and switched on through /lora-adapters (or per request), changes the output as it changes the local one', async (t) => {
  const dir = fs.mkdtempSync(path.join(TMP, 'lora-'));
  const adapter = path.join(dir, 'adapter.gguf');
  const rows = PROMPTS.map((p, i) => ({ prompt: p, response: ` The answer is ${i + 4}. #### ${i + 4}` }));
  const tr = await trainSft({ model, data: rows, out: adapter, epochs: 30, batch: 5, lr: 5e-3, seed: 1, threads: 1, warmupRatio: 0 });
  t.log(`trained: loss ${tr.history[0]!.loss.toFixed(3)} -> ${tr.history.at(-1)!.loss.toFixed(3)}`);
  const opts = { temperature: 0, maxTokens: 20, stop: ['Question'] };
  const m = await loadModel(model);
  t.teardown(() => m.dispose());
  // Text, token count and finish reason: the adapter's answers end in EOS, the base model's run to the limit.
  const key = (x: { text: string; tokens: number; finishReason: string }) => `${x.text}|${x.tokens}|${x.finishReason}`;
  const localBase = (await m.sample(PROMPTS, { ...opts, threads: 1 })).map(key);
  const localLora = (await m.sample(PROMPTS, { ...opts, threads: 1, lora: await m.loadLora(adapter) })).map(key);
  t.notDeepEqual(localLora, localBase);

  // --cache-ram 0: llama-server's host-memory prompt cache restores prompts by their tokens alone, also
  // into a request with other adapter scales (seen here: stale answers); off, per-request scales are exact.
  const s = await startServer(binary, model, { lora: [adapter], loraInitWithoutApply: true, args: ['--cache-ram', '0'] });
  servers.push(s);
  // POST /lora-adapters does not invalidate the slots' cached prompts (computed with the old scales):
  // requests after a switch must not reuse them (cache_prompt: false), or name their adapters per request.
  const gen = new RemoteGenerator({ endpoint: s.url, model: 'tiny', extraBody: { cache_prompt: false } });
  const texts = async (g = gen) => (await g.sample(PROMPTS, opts)).map(key);
  // In this llama.cpp, --lora-init-without-apply does not reach the server's slots: the adapter is listed
  // and applied at scale 1 from the start. Set scales explicitly.
  const initial = (await listLoraAdapters(s.url))[0]!;
  const atStart = await texts();
  t.log(`after --lora-init-without-apply: listed scale ${initial.scale}, output ${JSON.stringify(atStart) === JSON.stringify(localLora) ? 'with' : JSON.stringify(atStart) === JSON.stringify(localBase) ? 'without' : 'neither with nor without'} the adapter`);
  await setLoraAdapters(s.url, [{ id: 0, scale: 0 }]);
  t.like((await listLoraAdapters(s.url))[0], { id: 0, scale: 0 });
  t.deepEqual(await texts(), localBase);
  await setLoraAdapters(s.url, [{ id: 0, scale: 1 }]);
  t.like((await listLoraAdapters(s.url))[0], { id: 0, scale: 1 });
  t.deepEqual(await texts(), localLora);
  await setLoraAdapters(s.url, [{ id: 0, scale: 0 }]);
  t.deepEqual(await texts(), localBase);
  // Per request: `lora` in the body (llama-server drops a slot's cache when a request's adapters differ).
  const perRequest = (scale: number) => new RemoteGenerator({ endpoint: s.url, model: 'tiny', extraBody: { lora: [{ id: 0, scale }] } });
  t.deepEqual(await texts(perRequest(1)), localLora);
  t.deepEqual(await texts(perRequest(0)), localBase);
  t.deepEqual(await texts(perRequest(1)), localLora);
  // What a cached prompt does after a global switch: record it (a llama-server behaviour, not ours).
  const cached = new RemoteGenerator({ endpoint: s.url, model: 'tiny' });
  await setLoraAdapters(s.url, [{ id: 0, scale: 1 }]);
  await texts(cached);
  await setLoraAdapters(s.url, [{ id: 0, scale: 0 }]);
  const stale = await texts(cached);
  t.log(`global switch 1 -> 0 with cache_prompt on: ${stale.filter((x, i) => x === localBase[i]).length}/${PROMPTS.length} texts are the base model's`);
  t.log(`base: ${JSON.stringify(localBase[2])}\nwith the adapter: ${JSON.stringify(localLora[2])}`);
});
