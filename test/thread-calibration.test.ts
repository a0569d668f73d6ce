// The calibrated default thread count (lib/thread-calibration.ts): the probe's faster count wins only by a
// margin, the choice is cached per machine and model size and read back without probing, a damaged cache is
// measured again, and sample() without `threads` uses it while an explicit `threads` skips it. (Whether the
// choice is right is a timing question: `w2s bench sample` prints both counts and the chosen one.)
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { calibratedThreads, calibrationKey, resetThreadCalibration } from '../lib/thread-calibration.js';
import { loadModel } from '../lib/model.js';
import { physicalCores } from '../lib/threads.js';
import { PROMPTS, TMP, tinyModel } from './helpers/models.js';
import { trainSft } from '../lib/train/sft.js';

const cache = fs.mkdtempSync(path.join(TMP, 'cache-'));
process.env.W2S_CACHE_DIR = cache;
const file = path.join(cache, 'thread-calibration.json');
const cores = physicalCores();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake probe: `ms(threads)` milliseconds per run; counts its runs. */
function probe(ms: (threads: number) => number) {
  const calls: number[] = [];
  return { calls, run: async (t: number) => { calls.push(t); await sleep(ms(t)); } };
}

test.serial('more threads are chosen only when clearly faster; the choice is cached and read back', async (t) => {
  if (cores === 1) {
    const p = probe(() => 1);
    t.is((await calibratedThreads(1 << 20, p.run)).threads, 1);
    t.deepEqual(p.calls, [], 'one core: nothing to measure');
    return;
  }
  fs.rmSync(file, { force: true });
  resetThreadCalibration();
  const fast = probe((n) => (n === 1 ? 120 : 30));
  const a = await calibratedThreads(1 << 20, fast.run);
  t.is(a.threads, cores);
  t.false(a.cached);
  t.deepEqual([...new Set(fast.calls)].sort(), [1, cores]);
  t.true(a.seconds['1']! > a.seconds[String(cores)]!);
  // Within the margin: one thread.
  resetThreadCalibration();
  // Sleeps are long enough that timer jitter on a loaded CI host (a few ms) stays far below the 15% margin.
  const close = probe((n) => (n === 1 ? 200 : 190));
  t.is((await calibratedThreads(1 << 26, close.run)).threads, 1);
  // Both sizes are in the file under this machine's key; a new process (reset) reads them without probing.
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { threads: number }>;
  t.is(saved[calibrationKey(1 << 20)]!.threads, cores);
  t.is(saved[calibrationKey(1 << 26)]!.threads, 1);
  resetThreadCalibration();
  const none = probe(() => 1);
  const b = await calibratedThreads(1 << 20, none.run);
  t.true(b.cached);
  t.is(b.threads, cores);
  t.deepEqual(none.calls, []);
  // Same size class (within a factor of √2): same entry.
  t.is(calibrationKey((1 << 20) + 1000), calibrationKey(1 << 20));
});

test.serial('a damaged cache file is measured again and rewritten; a failed probe is not remembered', async (t) => {
  if (cores === 1) return t.pass('one core: no calibration (tested above)');
  fs.writeFileSync(file, '{ not json');
  resetThreadCalibration();
  const p = probe((n) => (n === 1 ? 100 : 20));
  t.is((await calibratedThreads(1 << 22, p.run)).threads, cores);
  t.true(p.calls.length > 0);
  t.is((JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { threads: number }>)[calibrationKey(1 << 22)]!.threads, cores);
  resetThreadCalibration();
  const boom = async () => { throw new Error('probe failed'); };
  await t.throwsAsync(calibratedThreads(1 << 30, boom), { message: 'probe failed' });
  const ok = probe(() => 150); // equal runs: one thread (5 ms runs let timer jitter exceed the margin)
  t.is((await calibratedThreads(1 << 30, ok.run)).threads, 1);
  t.true(ok.calls.length > 0);
});

test.serial('sample() without threads runs the probe once per model size; explicit threads skip it', async (t) => {
  fs.rmSync(file, { force: true });
  resetThreadCalibration();
  const modelFile = await tinyModel({ seed: 31 });
  const model = await loadModel(modelFile);
  try {
    const explicit = await model.sample([PROMPTS[0]!], { maxTokens: 4, threads: 1 });
    t.is(explicit.length, 1);
    t.false(fs.existsSync(file), 'explicit threads: no probe');
    const samples = await model.sample([PROMPTS[0]!], { maxTokens: 4 });
    t.is(samples.length, 1);
    const c = await model.calibrateThreads();
    t.true(c.threads === 1 || c.threads === cores);
    if (cores > 1) {
      t.true(fs.existsSync(file));
      t.log(`calibrated: ${c.threads} thread(s); best seconds ${JSON.stringify(c.seconds)}`);
    }
  } finally {
    model.dispose();
  }
});

test.serial('training without threads uses the model\'s calibrated count (probed once, then from the cache)', async (t) => {
  fs.rmSync(file, { force: true });
  resetThreadCalibration();
  const modelFile = await tinyModel({ seed: 32, embd: 96, heads: 4, kvHeads: 2 });
  const rows = Array.from({ length: 4 }, (_, i) => ({ prompt: `Question: ${i} + 1?\nAnswer:`, response: ` ${i + 1}` }));
  const r = await trainSft({ model: modelFile, out: path.join(TMP, 'calibrated-sft.gguf'), data: rows, epochs: 1, batch: 4, maxLen: 64 });
  t.is(r.steps, 1);
  if (cores === 1) return;
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { threads: number }>;
  const entry = saved[calibrationKey(fs.statSync(modelFile).size)];
  t.truthy(entry, 'the training run calibrated this model size');
  t.true(entry!.threads === 1 || entry!.threads === cores);
});
