// Native jobs never block the event loop, report progress while they run, stop promptly on abort, and
// run one after the other when their threads together would outnumber the CPUs (job-queue.test.ts tests
// the queue's rule on its own).
import test from 'ava';
import os from 'node:os';
import { loadModel, type Model } from '../lib/model.js';
import type { Sample } from '../lib/sample-options.js';
import { PROMPTS, tinyModel } from './helpers/models.js';

// Big enough that one call takes a few seconds (4 layers, 128 wide, 8000-token vocabulary). One decode
// thread: what is tested is that the native call runs off the JS thread, and ggml's spin-waiting threads
// would make these jobs crawl when ava runs another native test file on the same (small) machine.
const LONG_SAMPLE = { n: 4, maxTokens: 256, parallel: 4, seed: 1, threads: 1 } as const;
const SCORE_ITEMS = Array.from({ length: 24 }, (_, i) => ({ prompt: PROMPTS[i % PROMPTS.length]!, completion: ' word'.repeat(200) }));
const LONG_SCORE = { parallel: 4, threads: 1 } as const;

let model: Model;
test.before(async () => {
  model = await loadModel(await tinyModel({ layers: 4, embd: 128, vocab: 8000, ctx: 1024 }));
  await model.sample([PROMPTS[0]!], { maxTokens: 4, threads: 1 }); // warm-up (first-call allocations)
});
test.after.always(() => model?.dispose());

/** Counts setInterval(…, 10) ticks and the longest gap between consecutive ticks while `run` is pending. */
async function watchLoop<T>(run: () => Promise<T>): Promise<{ result: T; ticks: number; maxGap: number; elapsed: number }> {
  const start = performance.now();
  let last = start;
  let ticks = 0;
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 10);
  try {
    const result = await run();
    const end = performance.now();
    maxGap = Math.max(maxGap, end - last);
    return { result, ticks, maxGap, elapsed: end - start };
  } finally {
    clearInterval(timer);
  }
}

function totalTokens(s: Sample[]): number {
  return s.reduce((a, x) => a + x.tokens, 0);
}

test.serial('the event loop keeps running and progress arrives while sample() runs', async (t) => {
  const progressAt: number[] = [];
  let settled = false;
  const start = performance.now();
  const { result, ticks, maxGap, elapsed } = await watchLoop(() =>
    model.sample(PROMPTS, { ...LONG_SAMPLE, onProgress: () => progressAt.push(settled ? Infinity : performance.now() - start) }).finally(() => (settled = true)));
  t.log(`sample: ${totalTokens(result)} tokens in ${elapsed.toFixed(0)} ms; ${ticks} ticks of 10 ms (${(ticks / (elapsed / 10)).toFixed(2)} of the ideal); ` +
    `longest gap ${maxGap.toFixed(1)} ms; ${progressAt.length} progress calls, the first after ${progressAt[0]?.toFixed(0)} ms`);
  t.true(elapsed > 500, 'the job is long enough to say something');
  t.true(ticks >= 0.5 * (elapsed / 10));
  t.true(maxGap < 250);
  t.true(progressAt.length > 1);
  t.true(progressAt.every((x) => Number.isFinite(x)), 'no progress after the promise settled');
  t.true(progressAt[0]! < elapsed / 2, 'progress arrives while the job runs, not all at the end');
});

test.serial('progress is paced (at most one report per 50 ms) and its last report says every sample finished', async (t) => {
  const reports: { finished: number; total: number; at: number }[] = [];
  const start = performance.now();
  const result = await model.sample(PROMPTS, { ...LONG_SAMPLE, onProgress: (p) => reports.push({ finished: p.finished, total: p.total, at: performance.now() - start }) });
  const elapsed = performance.now() - start;
  const gaps = reports.slice(1).map((r, i) => r.at - reports[i]!.at);
  t.log(`${reports.length} reports in ${elapsed.toFixed(0)} ms (${result.length} samples, ${totalTokens(result)} tokens); ` +
    `shortest gap ${Math.min(...gaps).toFixed(1)} ms; last ${JSON.stringify(reports.at(-1))}`);
  // Each report wakes the JS thread: one per decode step (hundreds per second) stole the cores that ggml's
  // workers run on. Reports are sent 50 ms apart at least; delivery can bunch them, so count, not gaps.
  t.true(reports.length > 1);
  t.true(reports.length <= elapsed / 50 + 2, `${reports.length} reports in ${elapsed.toFixed(0)} ms`);
  t.like(reports.at(-1), { finished: result.length, total: result.length });
});

test.serial('the event loop keeps running and progress arrives while score() runs', async (t) => {
  const progress: { done: number; total: number; at: number }[] = [];
  const start = performance.now();
  const { result, ticks, maxGap, elapsed } = await watchLoop(() =>
    model.score(SCORE_ITEMS, { ...LONG_SCORE, onProgress: (p) => progress.push({ ...p, at: performance.now() - start }) }));
  t.log(`score: ${result.reduce((a, s) => a + s.tokens, 0)} tokens in ${elapsed.toFixed(0)} ms; ${ticks} ticks (${(ticks / (elapsed / 10)).toFixed(2)} of the ideal); ` +
    `longest gap ${maxGap.toFixed(1)} ms; ${progress.length} progress calls, the first after ${progress[0]?.at.toFixed(0)} ms`);
  t.is(result.length, SCORE_ITEMS.length);
  t.true(elapsed > 500);
  t.true(ticks >= 0.5 * (elapsed / 10));
  t.true(maxGap < 250);
  t.true(progress.length > 1);
  t.true(progress[0]!.at < elapsed / 2);
  t.true(progress.every((p) => p.total === SCORE_ITEMS.length && p.done <= p.total));
});

test.serial('aborting sample() mid-run rejects with AbortError long before the run would end; the model works afterwards', async (t) => {
  let start = performance.now();
  const full = await model.sample(PROMPTS, LONG_SAMPLE);
  const fullMs = performance.now() - start;
  const fullTokens = totalTokens(full);

  const controller = new AbortController();
  let tokensAtAbort = 0;
  let lastProgress = 0;
  start = performance.now();
  const e = await t.throwsAsync(model.sample(PROMPTS, {
    ...LONG_SAMPLE,
    signal: controller.signal,
    onProgress: (p) => {
      lastProgress = p.tokens;
      if (p.tokens >= fullTokens / 10 && !controller.signal.aborted) {
        tokensAtAbort = p.tokens;
        controller.abort();
      }
    },
  }));
  const abortedMs = performance.now() - start;
  t.log(`un-aborted: ${fullTokens} tokens in ${fullMs.toFixed(0)} ms; aborted at ${tokensAtAbort} tokens, rejected after ${abortedMs.toFixed(0)} ms ` +
    `(${(abortedMs / fullMs).toFixed(2)} of the full run), last progress ${lastProgress} tokens`);
  t.is(e!.name, 'AbortError');
  t.is((e as Error & { code: string }).code, 'ABORT_ERR');
  t.true(tokensAtAbort > 0);
  t.true(abortedMs < 0.6 * fullMs);
  t.true(lastProgress < fullTokens / 2, 'decoding stopped soon after the abort');
  // Same call, same result as before the aborted run.
  t.deepEqual(await model.sample(PROMPTS, LONG_SAMPLE), full);
});

test.serial('aborting score() mid-run rejects with AbortError long before the run would end; the model works afterwards', async (t) => {
  let start = performance.now();
  const full = await model.score(SCORE_ITEMS, LONG_SCORE);
  const fullMs = performance.now() - start;

  const controller = new AbortController();
  let doneAtAbort = -1;
  start = performance.now();
  const e = await t.throwsAsync(model.score(SCORE_ITEMS, {
    ...LONG_SCORE,
    signal: controller.signal,
    onProgress: (p) => {
      if (doneAtAbort < 0) {
        doneAtAbort = p.done;
        controller.abort();
      }
    },
  }));
  const abortedMs = performance.now() - start;
  t.log(`un-aborted score: ${fullMs.toFixed(0)} ms; aborted at ${doneAtAbort}/${SCORE_ITEMS.length} items, rejected after ${abortedMs.toFixed(0)} ms (${(abortedMs / fullMs).toFixed(2)} of the full run)`);
  t.is(e!.name, 'AbortError');
  t.is((e as Error & { code: string }).code, 'ABORT_ERR');
  t.true(doneAtAbort >= 0 && doneAtAbort < SCORE_ITEMS.length);
  t.true(abortedMs < 0.6 * fullMs);
  const again = await model.score(SCORE_ITEMS, LONG_SCORE);
  t.deepEqual(again.map((s) => s.sum), full.map((s) => s.sum));
});

test.serial('an already-aborted signal rejects at once, without running the job', async (t) => {
  const controller = new AbortController();
  controller.abort();
  let progress = 0;
  let macrotaskRan = false;
  setImmediate(() => (macrotaskRan = true));
  const s = model.sample(PROMPTS, { ...LONG_SAMPLE, signal: controller.signal, onProgress: () => progress++ });
  const c = model.score(SCORE_ITEMS, { ...LONG_SCORE, signal: controller.signal, onProgress: () => progress++ });
  const e1 = await t.throwsAsync(s);
  const e2 = await t.throwsAsync(c);
  // Settled within the same turn of the event loop: no native work could have happened.
  t.false(macrotaskRan);
  for (const e of [e1, e2]) {
    t.is(e!.name, 'AbortError');
    t.is((e as Error & { code: string }).code, 'ABORT_ERR');
  }
  t.is(progress, 0);
  // A signal aborted while its job waits behind another: the job never starts.
  const first = model.sample(PROMPTS, { n: 1, maxTokens: 32, seed: 2, threads: 1 });
  const waiting = new AbortController();
  const queued = model.sample(PROMPTS, { ...LONG_SAMPLE, signal: waiting.signal, onProgress: () => progress++ });
  waiting.abort();
  await t.throwsAsync(queued, { name: 'AbortError', code: 'ABORT_ERR' });
  t.is(progress, 0);
  t.is((await first).length, PROMPTS.length);
});

test.serial('two sample() calls that each use every CPU run one after the other and give the same results as in sequence', async (t) => {
  const threads = os.availableParallelism();
  const a = { n: 2, maxTokens: 64, seed: 4, threads } as const;
  const b = { n: 3, maxTokens: 48, seed: 5, temperature: 0.7, parallel: 2, threads } as const;
  const seqA = await model.sample(PROMPTS, a);
  const seqB = await model.sample([...PROMPTS].reverse(), b);

  const events: string[] = [];
  const pa = model.sample(PROMPTS, { ...a, onProgress: () => events.push('a') }).then((r) => (events.push('a done'), r));
  const pb = model.sample([...PROMPTS].reverse(), { ...b, onProgress: () => events.push('b') }).then((r) => (events.push('b done'), r));
  const [ra, rb] = await Promise.all([pa, pb]);
  t.deepEqual(ra, seqA);
  t.deepEqual(rb, seqB);
  // Serialized: every progress report of the second comes after the first resolved.
  const firstB = events.indexOf('b');
  t.log(`progress events: ${events.filter((x) => x === 'a').length} of a, then ${events.filter((x) => x === 'b').length} of b; 'a done' at ${events.indexOf('a done')}, first b at ${firstB}`);
  t.true(firstB > events.indexOf('a done'));
  t.true(events.lastIndexOf('a') < events.indexOf('a done'));
  t.true(events.indexOf('a done') >= 0 && firstB >= 0);
});
