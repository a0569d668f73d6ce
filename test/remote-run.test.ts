// `w2s run` with the weak model served by a real llama-server: training stays local, and an adapter hook
// (a small script written here) restarts the server with each trained adapter (`--lora`). Stage I completes;
// the remote generations equal local ones with the same adapter; an interrupted remote step resumes from
// its partial results, asking the server only for what is missing.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { postprocessResponse } from '../lib/data/datasets.js';
import { loadModel } from '../lib/model.js';
import { freePort } from '../lib/remote/llama-server.js';
import { parseConfig } from '../lib/pipeline/run/config.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import type { StepEvents } from '../lib/pipeline/run/steps.js';
import { faultProxy, llamaServerBinary } from './helpers/llama-server.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, gsm8kDataYaml } from './helpers/shared-data.js';

const quiet: StepEvents = { start() {}, progress() {}, end() {} };
const SECRET = 'sk-run-secret-0123456789';

// The hook: stop the server it started last (pid file), start llama-server on the fixed port with the
// adapter of W2S_ADAPTER_GGUF (none for the base model), wait until it is healthy, log the call.
const HOOK = String.raw`
import { spawn } from 'node:child_process';
import fs from 'node:fs';
const [bin, model, port, dir] = process.argv.slice(2);
const pidFile = dir + '/server.pid';
if (fs.existsSync(pidFile)) {
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  try { process.kill(pid, 'SIGKILL'); } catch {}
  for (let i = 0; i < 100; i++) { try { process.kill(pid, 0); await new Promise((r) => setTimeout(r, 50)); } catch { break; } }
}
const adapter = process.env.W2S_ADAPTER_GGUF;
fs.appendFileSync(dir + '/hook.log', JSON.stringify({ name: process.env.W2S_ADAPTER_NAME, adapter, role: process.env.W2S_ROLE, step: process.env.W2S_STEP }) + '\n');
const args = ['-m', model, '--host', '127.0.0.1', '--port', port, '--alias', 'weak', '-np', '4', '-c', '8192', '-t', '1', ...(adapter ? ['--lora', adapter] : [])];
const child = spawn(bin, args, { detached: true, stdio: 'ignore' });
child.unref();
fs.writeFileSync(pidFile, String(child.pid));
for (let i = 0; i < 600; i++) {
  try { if ((await fetch('http://127.0.0.1:' + port + '/health')).ok) process.exit(0); } catch {}
  await new Promise((r) => setTimeout(r, 100));
}
process.exit(1);
`;

dataTest('w2s run: Stage I with the weak model on llama-server (adapter hook), equal to local generation, resumable', async (t) => {
  const binary = await llamaServerBinary(t);
  const weak = await tinyModel({ ctx: 1024, seed: 11 });
  const strong = await tinyModel({ ctx: 2048, embd: 96, heads: 4, kvHeads: 2, ff: 192, seed: 12 });
  const dir = fs.mkdtempSync(path.join(TMP, 'remote-run-'));
  const port = await freePort();
  const hook = path.join(dir, 'hook.mjs');
  fs.writeFileSync(hook, HOOK);
  t.teardown(() => {
    const pid = path.join(dir, 'server.pid');
    if (fs.existsSync(pid)) {
      try {
        process.kill(Number(fs.readFileSync(pid, 'utf8')), 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  // Requests go through a proxy that counts them (the hook restarts the server behind it, same port).
  const proxy = await faultProxy(`http://127.0.0.1:${port}`);
  t.teardown(() => proxy.close());
  const file = path.join(dir, 'run.yaml');
  fs.writeFileSync(file, [
    `out: ${JSON.stringify(path.join(dir, 'out'))}`,
    `weak:`,
    `  model: ${JSON.stringify(weak)}`,
    `  endpoint: { url: "${proxy.url}/v1", model: weak, concurrency: 2, retries: 2, adapters: { hook: ${JSON.stringify(`node ${hook} ${binary} ${weak} ${port} ${dir}`)} } }`,
    `strong: { model: ${JSON.stringify(strong)} }`,
    ...gsm8kDataYaml({ train1: 30, train2: 30, test: 20 }),
    'generation: { maxTokens: 24, threads: 1 }',
    'train:',
    '  weak: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    '  strong: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    'stage1: { keepEmpty: true }',
    'stage2: { enabled: false }',
    'baselines: { fullWeakFt: false, ceiling: false }',
    '',
  ].join('\n'));
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);
  process.env.W2S_API_KEY = SECRET;
  t.teardown(() => delete process.env.W2S_API_KEY);

  // 1. Interrupt 02-d-weak (remote) once it has results: they stay in <out>/.partial.
  const controller = new AbortController();
  const started = Date.now();
  await t.throwsAsync(runMethod(cfg, { ...quiet, progress: (name, done) => { if (name === '02-d-weak' && done >= 10) controller.abort(); } }, controller.signal), { name: 'AbortError' });
  const partialDir = path.join(cfg.out, '.partial');
  const partials = fs.readdirSync(partialDir);
  t.is(partials.length, 1);
  t.regex(partials[0]!, /^02-d-weak-/);
  const partialFile = path.join(partialDir, partials[0]!, 'results.partial');
  // Complete lines only (after the header): a line torn by the abort is cut off on resume and asked again.
  const lines = fs.readFileSync(partialFile, 'utf8').split('\n').slice(1, -1);
  const kept = lines.filter((l) => { try { JSON.parse(l); return true; } catch { return false; } }).length;
  t.true(kept >= 10 && kept < 30, `${kept} kept`);

  // 2. The re-run resumes: 02-d-weak asks only for the missing answers; Stage I and the evaluations complete.
  proxy.seen.length = 0;
  const steps: string[] = [];
  const r = await runMethod(cfg, { ...quiet, end: (name, _m, skipped) => steps.push(`${name}${skipped ? ' (skipped)' : ''}`) });
  t.log(`steps: ${steps.join(', ')} (${((Date.now() - started) / 1000).toFixed(0)} s for both runs)`);
  t.deepEqual(steps, ['01-weak-sft (skipped)', '02-d-weak', '03-weak-icl', '04-select-1', '05-strong-sft-1', '30-eval-weak', '30-eval-strong-base', '30-eval-stage1']);
  // Distinct requests: a retry (e.g. while the hook restarts the server on a loaded machine) resends the same body.
  const sent = proxy.seen.filter((s) => s.path === '/v1/completions');
  const completions = new Set(sent.map((s) => JSON.stringify(s.body)));
  t.log(`re-run: ${sent.length} requests, ${completions.size} distinct (${kept} answers kept from the interrupted run)`);
  // 30 - kept answers for 02-d-weak, then 20 for 30-eval-weak (same adapter, no restart).
  t.is(completions.size, 30 - kept + 20);
  t.false(fs.existsSync(path.join(partialDir, partials[0]!)));
  t.true(r.metrics.accuracy !== undefined);

  // The hook ran once per adapter change: for the weak SFT adapter (the base weak model is never generated from).
  const calls = fs.readFileSync(path.join(dir, 'hook.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(calls.length, 2, JSON.stringify(calls)); // once in the interrupted run, once after it (a new process knows nothing of the server)
  for (const c of calls) t.like(c, { role: 'weak', adapter: path.join(cfg.out, '01-weak-sft', 'adapter.gguf') });
  t.regex(calls[0].name, /^w2s-01-weak-sft-[0-9a-f]{8}$/);
  const manifest = JSON.parse(fs.readFileSync(path.join(cfg.out, '02-d-weak', 'manifest.json'), 'utf8'));
  t.like(manifest.inputs.remote, { model: 'weak' });
  // The API key (sent to the server, which ignores it here) is in no file of the run.
  const files = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(d, e.name)) : [path.join(d, e.name)]));
  t.deepEqual(files(cfg.out).filter((f) => fs.readFileSync(f).includes(SECRET)), []);

  // 3. The remote answers equal local greedy generation with the same adapter.
  const rows = fs.readFileSync(path.join(cfg.out, '02-d-weak', 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const m = await loadModel(weak);
  t.teardown(() => m.dispose());
  const local = await m.sample(rows.map((x) => x.prompt), { temperature: 0, maxTokens: 24, stop: ['Question', 'Answer'], threads: 1, lora: await m.loadLora(path.join(cfg.out, '01-weak-sft', 'adapter.gguf')) });
  const same = local.filter((s, i) => postprocessResponse(s.text) === rows[i].response).length;
  t.log(`02-d-weak: ${same}/${rows.length} remote answers equal the local sampler's`);
  t.is(same, rows.length);
});
