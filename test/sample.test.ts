// Batched sampling: determinism, batch independence of greedy output, stop/length/eos, option errors.
import test from 'ava';
import { loadModel, type Model } from '../lib/model.js';
import { PROMPTS, tinyModel } from './helpers/models.js';

let model: Model;
test.before(async () => {
  model = await loadModel(await tinyModel());
});
test.after.always(() => model?.dispose());

test('same seed gives the same samples; another seed gives others', async (t) => {
  const a = await model.sample(PROMPTS, { n: 3, maxTokens: 24, seed: 11 });
  const b = await model.sample(PROMPTS, { n: 3, maxTokens: 24, seed: 11 });
  const c = await model.sample(PROMPTS, { n: 3, maxTokens: 24, seed: 12 });
  t.is(a.length, PROMPTS.length * 3);
  t.deepEqual(a, b);
  t.notDeepEqual(a.map((s) => s.text), c.map((s) => s.text));
  // Results come ordered by (prompt, sample) and the samples of a prompt differ from each other.
  a.forEach((s, i) => {
    t.is(s.promptIndex, Math.floor(i / 3));
    t.is(s.sampleIndex, i % 3);
  });
  t.true(new Set(a.filter((s) => s.promptIndex === 0).map((s) => s.text)).size > 1);
});

test('with highPrecision, samples do not depend on how many sequences run in parallel', async (t) => {
  // Each sample draws from its own random stream, so only numerics could couple samples; the F32 KV
  // cache keeps batch-shape rounding (~1e-7) from being amplified by F16 rounding of K and V.
  const o = { n: 4, maxTokens: 20, seed: 3, highPrecision: true };
  const wide = await model.sample(PROMPTS, { ...o, parallel: 16 });
  const narrow = await model.sample(PROMPTS, { ...o, parallel: 3 });
  const single = await model.sample(PROMPTS, { ...o, parallel: 1 });
  t.deepEqual(narrow, wide);
  t.deepEqual(single, wide);
});

test('greedy output of a prompt does not depend on what else is in the batch', async (t) => {
  const alone = await Promise.all(PROMPTS.map((p) => model.sample([p], { temperature: 0, maxTokens: 40 })));
  const together = await model.sample(PROMPTS, { temperature: 0, maxTokens: 40, n: 2 });
  const shuffled = await model.sample([...PROMPTS].reverse(), { temperature: 0, maxTokens: 40, parallel: 2 });
  PROMPTS.forEach((_, i) => {
    const ref = alone[i]![0]!;
    t.true(ref.tokens > 0);
    t.is(together[2 * i]!.text, ref.text, `prompt ${i}, sample 0`);
    t.is(together[2 * i + 1]!.text, ref.text, `prompt ${i}, sample 1`);
    t.is(shuffled[PROMPTS.length - 1 - i]!.text, ref.text, `prompt ${i}, reversed batch`);
  });
});

test('top-k 1 and a tiny top-p are greedy', async (t) => {
  const greedy = await model.sample(PROMPTS, { temperature: 0, maxTokens: 16 });
  const k1 = await model.sample(PROMPTS, { temperature: 1.5, topK: 1, maxTokens: 16, seed: 9 });
  const p0 = await model.sample(PROMPTS, { temperature: 1.5, topP: 1e-6, maxTokens: 16, seed: 9 });
  t.deepEqual(k1.map((s) => s.text), greedy.map((s) => s.text));
  t.deepEqual(p0.map((s) => s.text), greedy.map((s) => s.text));
});

test('maxTokens ends a sample with finishReason length', async (t) => {
  const s = await model.sample([PROMPTS[0]!], { temperature: 0, maxTokens: 7 });
  t.is(s[0]!.finishReason, 'length');
  t.is(s[0]!.tokens, 7);
});

test('a stop string ends a sample before it, with finishReason stop', async (t) => {
  const [free] = await model.sample([PROMPTS[2]!], { temperature: 0, maxTokens: 40 });
  // Pick a stop string from the middle of the free-running output.
  const stop = free!.text.slice(Math.floor(free!.text.length / 2), Math.floor(free!.text.length / 2) + 3);
  t.true(stop.length === 3);
  const [stopped] = await model.sample([PROMPTS[2]!], { temperature: 0, maxTokens: 40, stop: ['zzzz-never', stop] });
  t.is(stopped!.finishReason, 'stop');
  t.is(stopped!.text, free!.text.slice(0, free!.text.indexOf(stop)));
  t.true(stopped!.tokens < free!.tokens);
});

test('sampling the EOS token ends a sample with finishReason eos', async (t) => {
  // At a very high temperature the tiny model samples nearly uniformly, so EOS turns up within a few
  // thousand tokens; the seed makes the run reproducible.
  const s = await model.sample([PROMPTS[4]!], { temperature: 100, n: 48, maxTokens: 200, seed: 5 });
  const eos = s.filter((x) => x.finishReason === 'eos');
  t.true(eos.length > 0, `no EOS in ${s.reduce((a, x) => a + x.tokens, 0)} tokens`);
  for (const x of eos) t.true(x.tokens < 200);
});

test('progress reports tokens and finished samples', async (t) => {
  const seen: { tokens: number; finished: number; total: number }[] = [];
  const s = await model.sample(PROMPTS, { n: 2, maxTokens: 30, onProgress: (p) => seen.push(p) });
  t.true(seen.length > 0);
  const last = seen[seen.length - 1]!;
  t.is(last.total, PROMPTS.length * 2);
  t.true(last.tokens <= s.reduce((a, x) => a + x.tokens, 0));
  for (let i = 1; i < seen.length; i++) t.true(seen[i]!.tokens >= seen[i - 1]!.tokens);
});

test('bad options are InvalidArgumentErrors with the shared message shape', (t) => {
  t.throws(() => model.sample(PROMPTS, { n: 0 }), { code: 'ERR_W2S_INVALID_ARGUMENT', message: 'Expected integer in [1, 65536] for n but received 0 of type number' });
  t.throws(() => model.sample(PROMPTS, { maxTokens: -1 }), { message: 'Expected positive integer for maxTokens but received -1 of type number' });
  t.throws(() => model.sample(PROMPTS, { temperature: -0.5 }), { message: /Expected number in \[0, 100\] for temperature but received -0.5/ });
  t.throws(() => model.sample(PROMPTS, { topP: 0 }), { message: /for topP but received 0/ });
  t.throws(() => model.sample(PROMPTS, { seed: 1.5 }), { message: /for seed but received 1.5/ });
  t.throws(() => model.sample([42 as unknown as string]), { message: 'Expected string for prompts[0] but received 42 of type number' });
});

test('a prompt longer than the context is a ContextOverflowError', async (t) => {
  const long = 'Question: ' + 'nine '.repeat(600);
  const e = await t.throwsAsync(model.sample([PROMPTS[0]!, long], { maxTokens: 4 }), { code: 'ERR_W2S_CONTEXT_OVERFLOW' });
  t.regex(e!.message, /prompt 1 has \d+ tokens/);
  // The model stays usable.
  t.is((await model.sample([PROMPTS[0]!], { maxTokens: 2 })).length, 1);
});

test('an empty prompt list gives no samples', async (t) => {
  t.deepEqual(await model.sample([], { n: 3 }), []);
});
