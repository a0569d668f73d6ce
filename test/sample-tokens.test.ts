// Token ids and per-token log-probs of sampled text, returned by the same pass (SampleOptions.tokenIds,
// .logprobs): the ids detokenize to the text, and each log-prob equals node-llama-cpp's for the same tokens
// after the same prompt (an independent pass through llama.cpp, F32 KV on both sides).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, type Model } from '../lib/model.js';
import { PROMPTS, TMP, tinyModel } from './helpers/models.js';
import { referenceLogprobs } from './helpers/nlc.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
let model: Model;
let modelFile: string;
test.before(async () => {
  modelFile = await tinyModel({ layers: 2, embd: 64, vocab: 2000, ctx: 512, seed: 5 });
  model = await loadModel(modelFile);
});
test.after.always(() => model?.dispose());

/** The text of `ids` generated after `prompt` (detokenizing alone would drop a SentencePiece leading space). */
function textAfter(prompt: string, ids: readonly number[]): string {
  const p = model.tokenize(prompt);
  return model.detokenize([...p, ...ids]).slice(model.detokenize(p).length);
}

test('tokenIds detokenize to the sampled text; logprobs equal node-llama-cpp\'s on the same tokens', async (t) => {
  const samples = await model.sample(PROMPTS, { n: 3, maxTokens: 24, temperature: 1, seed: 9, threads: 1, logprobs: true, highPrecision: true });
  let compared = 0;
  let maxDiff = 0;
  for (const s of samples) {
    t.true(Array.isArray(s.tokenIds) && Array.isArray(s.logprobs));
    t.is(s.tokenIds!.length, s.tokens);
    t.is(s.logprobs!.length, s.tokens);
    t.is(textAfter(PROMPTS[s.promptIndex]!, s.tokenIds!), s.text);
    for (const lp of s.logprobs!) t.true(Number.isFinite(lp) && lp <= 1e-6, String(lp));
    // An independent pass: node-llama-cpp's own llama.cpp over prompt + the sampled ids (F32 KV, no flash attention).
    if (compared < 6 && s.tokens > 0) {
      const p = model.tokenize(PROMPTS[s.promptIndex]!, { addSpecial: true });
      const ref = await referenceLogprobs(modelFile, [...p, ...s.tokenIds!], p.length);
      t.is(ref.length, s.tokens);
      for (let i = 0; i < s.tokens; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i]! - s.logprobs![i]!));
      compared++;
    }
  }
  t.log(`${compared} samples compared with node-llama-cpp: max |sample logprob - reference| = ${maxDiff.toExponential(2)}`);
  t.is(compared, 6);
  t.true(maxDiff < 1e-4, `max diff ${maxDiff}`);
});

test('greedy log-probs are the largest of each step; without the options there are no ids', async (t) => {
  const [greedy] = await model.sample([PROMPTS[0]!], { temperature: 0, maxTokens: 16, threads: 1, logprobs: true, highPrecision: true });
  const [hot] = await model.sample([PROMPTS[0]!], { temperature: 5, maxTokens: 16, seed: 3, threads: 1, logprobs: true, highPrecision: true });
  const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  // Greedy picks the argmax at every step: its mean log-prob is above a hot sample's.
  t.true(mean(greedy!.logprobs!) > mean(hot!.logprobs!), `${mean(greedy!.logprobs!)} vs ${mean(hot!.logprobs!)}`);
  const [plain] = await model.sample([PROMPTS[0]!], { maxTokens: 8, threads: 1 });
  t.is(plain!.tokenIds, undefined);
  t.is(plain!.logprobs, undefined);
  const [ids] = await model.sample([PROMPTS[0]!], { maxTokens: 8, threads: 1, tokenIds: true });
  t.is(ids!.tokenIds!.length, ids!.tokens);
  t.is(ids!.logprobs, undefined);
  t.throws(() => model.sample([PROMPTS[0]!], { logprobs: 'yes' as unknown as boolean }), { code: 'ERR_W2S_INVALID_ARGUMENT', message: /Expected boolean for logprobs/ });
});

test('a stop string drops the tokens that start inside it', async (t) => {
  const free = await model.sample(PROMPTS, { n: 2, maxTokens: 24, seed: 2, threads: 1, tokenIds: true });
  // A stop string taken from the middle of a free sample: the same seed reproduces it up to there.
  const s = free.find((x) => x.text.length > 12)!;
  const stop = s.text.slice(6, 10);
  const stopped = await model.sample([PROMPTS[s.promptIndex]!], { n: 2, maxTokens: 24, seed: 2, threads: 1, tokenIds: true, stop: [stop] });
  const r = stopped.find((x) => x.sampleIndex === s.sampleIndex)!;
  t.is(r.finishReason, 'stop');
  const prompt = PROMPTS[s.promptIndex]!;
  const detok = textAfter(prompt, r.tokenIds!);
  t.true(detok.startsWith(r.text), `${JSON.stringify(detok)} vs ${JSON.stringify(r.text)}`);
  // Every kept token starts before the stop: without the last one, the text is not reached.
  t.true(r.tokenIds!.length > 0 && textAfter(prompt, r.tokenIds!.slice(0, -1)).length < r.text.length);
  t.true(r.tokenIds!.length <= r.tokens);
});

test('w2s sample --logprobs --token-ids writes them beside the text, as the library returns them', async (t) => {
  const dir = fs.mkdtempSync(path.join(TMP, 'sample-tokens-'));
  const prompts = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(prompts, PROMPTS.slice(0, 2).map((prompt) => JSON.stringify({ prompt })).join('\n') + '\n');
  const out = path.join(dir, 'out.jsonl');
  const r = spawnSync(process.execPath, [cli, 'sample', '--model', modelFile, '--prompts', prompts, '--n', '2', '--max-tokens', '12', '--seed', '4',
    '--threads', '1', '--logprobs', '--token-ids', '--out', out], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const rows = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string; tokens: number; token_ids: number[]; logprobs: number[] });
  const lib = await model.sample(PROMPTS.slice(0, 2), { n: 2, maxTokens: 12, seed: 4, threads: 1, logprobs: true });
  t.deepEqual(rows.map((x) => x.token_ids), lib.map((s) => s.tokenIds));
  rows.forEach((x, i) => {
    t.is(x.logprobs.length, x.tokens);
    x.logprobs.forEach((lp, k) => t.true(Math.abs(lp - lib[i]!.logprobs![k]!) < 1e-6));
  });
});
