// Sequence scoring against an independent computation (node-llama-cpp's evaluation in the same process),
// the prompt/completion tokenization convention, and prompt masking.
import test from 'ava';
import { loadModel } from '../lib/model.js';
import { referenceLogprobs } from './helpers/nlc.js';
import { PROMPTS, tinyModel } from './helpers/models.js';

const ITEMS = [
  { prompt: PROMPTS[0]!, completion: ' She sold 48 / 2 = 24 clips in May. #### 72' },
  { prompt: PROMPTS[2]!, completion: ' 4' },
  { prompt: 'Hi', completion: ' there,\nfriend: é 🙂' },
];

for (const arch of ['llama', 'qwen2', 'qwen3'] as const) {
  test(`${arch}: log-probs equal node-llama-cpp's within 1e-4`, async (t) => {
    const file = await tinyModel({ arch });
    const m = await loadModel(file);
    const scores = await m.score(ITEMS);
    let maxDiff = 0;
    for (const [i, item] of ITEMS.entries()) {
      const pair = m.tokenizePair(item.prompt, item.completion);
      const s = scores[i]!;
      t.is(s.promptTokens, pair.nPrompt);
      t.is(s.tokens, pair.tokens.length - pair.nPrompt);
      const ref = await referenceLogprobs(file, pair.tokens, pair.nPrompt);
      t.is(ref.length, s.logprobs.length);
      ref.forEach((r, j) => (maxDiff = Math.max(maxDiff, Math.abs(r - s.logprobs[j]!))));
      t.true(Math.abs(s.sum - s.logprobs.reduce((a, b) => a + b, 0)) < 1e-3);
    }
    t.log(`${arch}: max |weak2strong - node-llama-cpp| = ${maxDiff.toExponential(2)}`);
    t.true(maxDiff < 1e-4);
    m.dispose();
  });
}

test('batched scoring equals scoring one item at a time', async (t) => {
  const m = await loadModel(await tinyModel());
  const together = await m.score(ITEMS, { parallel: 3, batchSize: 16 });
  let maxDiff = 0;
  for (const [i, item] of ITEMS.entries()) {
    const [alone] = await m.score([item], { parallel: 1 });
    alone!.logprobs.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - together[i]!.logprobs[j]!))));
  }
  t.log(`max difference batched vs alone: ${maxDiff.toExponential(2)}`);
  t.true(maxDiff < 1e-4);
  m.dispose();
});

test('prompt tokens are not scored, but condition the completion', async (t) => {
  const m = await loadModel(await tinyModel());
  const [a, b, empty] = await m.score([
    { prompt: 'Question: one\nAnswer:', completion: ' 12' },
    { prompt: 'Question: a much longer and different question\nAnswer:', completion: ' 12' },
    { prompt: 'Question: one\nAnswer:', completion: '' },
  ]);
  t.is(a!.tokens, b!.tokens);
  t.not(a!.sum, b!.sum);
  t.true(a!.sum < 0);
  t.deepEqual([empty!.tokens, empty!.sum], [0, 0]);
  m.dispose();
});

test('a prompt + completion longer than the context is a ContextOverflowError', async (t) => {
  const m = await loadModel(await tinyModel());
  await t.throwsAsync(m.score([{ prompt: 'x', completion: ' word'.repeat(700) }]), { code: 'ERR_W2S_CONTEXT_OVERFLOW', message: /item 0 has \d+ tokens/ });
  t.throws(() => m.score([{ prompt: 'x' } as never]), { message: 'Expected string for items[0].completion but received undefined of type undefined' });
  m.dispose();
});
