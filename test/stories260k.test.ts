// Real pretrained weights nobody here wrote (../shared/models/stories260K.gguf and its F16 form, TinyStories
// llama, SentencePiece 512): greedy text equals node-llama-cpp's, scores agree, LoRA SFT learns, and the
// adapter gives the same log-probs in node-llama-cpp. Read in place, never copied.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { LlamaCompletion } from 'node-llama-cpp';
import { loadModel } from '../lib/model.js';
import { trainSft } from '../lib/train/sft.js';
import { nodeLlama, referenceLogprobs } from './helpers/nlc.js';
import { TMP } from './helpers/models.js';

const MODELS = path.resolve('../shared/models');
const dir = fs.mkdtempSync(path.join(TMP, 'stories-'));
const STORY = { prompt: 'Once upon a time, there was a little girl named Lily.', completion: ' She loved to play outside in the park with her friends.' };

for (const file of ['stories260K.gguf', 'stories260K-f16.gguf']) {
  test(`${file}: greedy text equals node-llama-cpp's, log-probs agree within 1e-4`, async (t) => {
    const modelPath = path.join(MODELS, file);
    const m = await loadModel(modelPath);
    try {
      const [ours] = await m.sample(['Once upon a time'], { temperature: 0, maxTokens: 40, threads: 1 });
      const l = await nodeLlama();
      const ref = await l.loadModel({ modelPath });
      const ctx = await ref.createContext({ contextSize: 256, threads: 1 });
      const completion = new LlamaCompletion({ contextSequence: ctx.getSequence() });
      const theirs = await completion.generateCompletion('Once upon a time', { maxTokens: 40, temperature: 0 });
      await ctx.dispose();
      await ref.dispose();
      t.log(`ours:   ${JSON.stringify(ours!.text)}\ntheirs: ${JSON.stringify(theirs)}`);
      t.is(ours!.text, theirs);
      t.true(ours!.text.startsWith(', there was a little girl named Lily'));

      const [s] = await m.score([STORY], { threads: 1 });
      const pair = m.tokenizePair(STORY.prompt, STORY.completion);
      const lp = await referenceLogprobs(modelPath, pair.tokens, pair.nPrompt);
      const diff = lp.reduce((a, x, i) => Math.max(a, Math.abs(x - s!.logprobs[i]!)), 0);
      t.log(`${s!.tokens} completion tokens, max |weak2strong - node-llama-cpp| = ${diff.toExponential(2)}`);
      t.true(diff < 1e-4);
    } finally {
      m.dispose();
    }
  });
}

for (const file of ['stories260K.gguf', 'stories260K-f16.gguf']) test(`LoRA SFT on ${file} lowers the loss; node-llama-cpp applies the adapter the same way`, async (t) => {
  const modelPath = path.join(MODELS, file);
  const rows = ['Lily', 'Tom', 'Sue', 'Ben'].flatMap((name) => ['ball', 'dog', 'cake', 'tree'].map((thing) => ({
    prompt: `${name} had a ${thing}.`, response: ` ${name} was very happy with the ${thing}.`,
  })));
  const out = path.join(dir, `${file}.lora.gguf`);
  const r = await trainSft({ model: modelPath, data: rows, out, epochs: 4, batch: 4, lr: 3e-3, seed: 2, threads: 1, warmupRatio: 0 });
  const first = r.history.slice(0, 4).reduce((a, s) => a + s.loss, 0) / 4;
  const last = r.history.slice(-4).reduce((a, s) => a + s.loss, 0) / 4;
  t.log(`mean loss of the first 4 steps ${first.toFixed(3)}, of the last 4 ${last.toFixed(3)} (${r.steps} steps)`);
  t.true(last < first * 0.8);
  const m = await loadModel(modelPath);
  try {
    const lora = await m.loadLora(out);
    const item = { prompt: rows[5]!.prompt, completion: rows[5]!.response };
    const [s] = await m.score([item], { lora, threads: 1 });
    const pair = m.tokenizePair(item.prompt, item.completion);
    const lp = await referenceLogprobs(modelPath, pair.tokens, pair.nPrompt, out);
    const diff = lp.reduce((a, x, i) => Math.max(a, Math.abs(x - s!.logprobs[i]!)), 0);
    t.log(`with the adapter: max |weak2strong - node-llama-cpp| = ${diff.toExponential(2)}`);
    t.true(diff < 1e-4);
  } finally {
    m.dispose();
  }
});
