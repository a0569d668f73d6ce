// A prefix shared by every prompt (weak-ICL's demonstrations) is decoded once and copied into each prompt's
// stream (native/core/batch_sampler.cpp). Checked against prompts sampled one at a time (nothing to share)
// and against sharePrefix: false; progress counts the prompt tokens decoded, so the saving is visible.
import test from 'ava';
import { loadModel, type Model } from '../lib/model.js';
import { tinyModel } from './helpers/models.js';

const DEMOS = 'Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer: 3 + 4 = 7. #### 7\n\n' +
  'Question: A box holds 6 pens. How many pens are in 5 boxes?\nAnswer: 6 * 5 = 30. #### 30\n\n';
const QUESTIONS = ['What is 9 + 8?', 'Sara reads 12 pages a day. How many pages in 3 days?', 'What is 100 - 1?', 'Hi', 'A train has 8 cars with 40 seats each. How many seats?'];
const PROMPTS = QUESTIONS.map((q) => `${DEMOS}Question: ${q}\nAnswer:`);

let model: Model;
test.before(async () => {
  model = await loadModel(await tinyModel({ seed: 5 }));
});
test.after.always(() => model?.dispose());

/** Common token prefix of all prompts, short of each one's last token: what the sampler may share. */
function commonPrefix(prompts: readonly string[]): { lengths: number[]; common: number } {
  const toks = prompts.map((p) => model.tokenize(p, { addSpecial: true }));
  let common = Math.min(...toks.map((t) => t.length - 1));
  for (const t of toks) {
    let k = 0;
    while (k < common && t[k] === toks[0]![k]) k++;
    common = k;
  }
  return { lengths: toks.map((t) => t.length), common };
}

async function sampleWithProgress(prompts: readonly string[], o: Parameters<Model['sample']>[1]) {
  let last = { promptTokens: -1, tokens: -1 };
  const samples = await model.sample(prompts, { ...o, onProgress: (p) => { last = p; } });
  return { samples, promptTokens: last.promptTokens };
}

test('greedy samples and their log-probs match each prompt sampled alone; the prefix is decoded once', async (t) => {
  const { lengths, common } = commonPrefix(PROMPTS);
  t.true(common >= 32, `the demonstrations are ${common} tokens: enough to be shared`);
  const o = { temperature: 0, maxTokens: 24, highPrecision: true, logprobs: true };
  const shared = await sampleWithProgress(PROMPTS, o);
  const whole = await sampleWithProgress(PROMPTS, { ...o, sharePrefix: false });
  const alone = await Promise.all(PROMPTS.map((p) => model.sample([p], o)));
  const sum = lengths.reduce((a, b) => a + b, 0);
  t.is(whole.promptTokens, sum, 'without sharing every prompt token is decoded');
  t.is(shared.promptTokens, sum - (PROMPTS.length - 1) * common, 'with sharing the prefix is decoded once');
  let worst = 0;
  PROMPTS.forEach((_, i) => {
    const ref = alone[i]![0]!;
    for (const s of [shared.samples[i]!, whole.samples[i]!]) {
      t.is(s.text, ref.text, `prompt ${i}`);
      t.deepEqual(s.tokenIds, ref.tokenIds);
      s.logprobs!.forEach((lp, k) => { worst = Math.max(worst, Math.abs(lp - ref.logprobs![k]!)); });
    }
  });
  t.log(`${PROMPTS.length} prompts, ${common} of ${lengths.join('/')} tokens shared: ${shared.promptTokens} prompt tokens decoded instead of ${sum}; max |log-prob - alone| = ${worst.toExponential(2)}`);
  t.true(worst < 1e-4);
});

test('seeded draws with n > 1 are the same with and without sharing, at any parallelism', async (t) => {
  const o = { n: 3, temperature: 1, maxTokens: 16, seed: 9, highPrecision: true };
  const whole = await model.sample(PROMPTS, { ...o, sharePrefix: false });
  for (const parallel of [1, 4, 15]) {
    const shared = await sampleWithProgress(PROMPTS, { ...o, parallel });
    t.deepEqual(shared.samples, whole, `parallel ${parallel}`);
    t.true(shared.promptTokens < commonPrefix(PROMPTS).lengths.reduce((a, b) => a + b, 0));
  }
});

test('prompts without a long common prefix share nothing', async (t) => {
  const different = ['Question: What is 9 + 8?\nAnswer:', `${DEMOS}Question: What is 1 + 1?\nAnswer:`];
  const { lengths } = commonPrefix(different);
  const r = await sampleWithProgress(different, { temperature: 0, maxTokens: 8 });
  t.is(r.promptTokens, lengths[0]! + lengths[1]!);
  // One prompt: nothing to share with.
  const one = await sampleWithProgress([PROMPTS[0]!], { temperature: 0, maxTokens: 8 });
  t.is(one.promptTokens, commonPrefix([PROMPTS[0]!]).lengths[0]);
  t.throws(() => model.sample(PROMPTS, { sharePrefix: 'yes' as unknown as boolean }), { message: /sharePrefix/ });
});

test('gemma2 with a sliding window shorter than the shared prefix, and qwen2 (BPE): shared equals alone', async (t) => {
  for (const config of [{ arch: 'gemma2' as const, slidingWindow: 24 }, { arch: 'qwen2' as const }]) {
    const m = await loadModel(await tinyModel({ ...config, seed: 8 }));
    try {
      const o = { temperature: 0, maxTokens: 16, highPrecision: true, logprobs: true };
      const shared = await m.sample(PROMPTS, o);
      const alone = await Promise.all(PROMPTS.map((p) => m.sample([p], o)));
      const common = Math.min(...PROMPTS.map((p) => m.tokenize(p, { addSpecial: true }).length));
      let worst = 0;
      PROMPTS.forEach((_, i) => {
        t.deepEqual(shared[i]!.tokenIds, alone[i]![0]!.tokenIds, `${config.arch} prompt ${i}`);
        shared[i]!.logprobs!.forEach((lp, k) => { worst = Math.max(worst, Math.abs(lp - alone[i]![0]!.logprobs![k]!)); });
      });
      t.log(`${config.arch}: shortest prompt ${common} tokens; max |log-prob - alone| = ${worst.toExponential(2)}`);
      t.true(worst < 1e-4);
    } finally {
      m.dispose();
    }
  }
});
