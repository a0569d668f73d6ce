// The README's main command (`npm run demo`) until the full weak-to-strong demo lands: create a small
// random llama model, then sample 4 answers for each of a few GSM8K questions with the native batched
// sampler and print them with the throughput. Reads top to bottom.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createModel, formatPrompt, loadModel } from '../lib/index.js';

// 1. A model (random weights: the text is gibberish, the machinery is real). Cached across runs.
const dir = path.join(os.tmpdir(), 'weak2strong-demo');
const file = path.join(dir, 'tiny-llama-q8_0.gguf');
if (!fs.existsSync(file)) {
  fs.mkdirSync(dir, { recursive: true });
  await createModel({ arch: 'llama', layers: 4, embd: 128, heads: 4, kvHeads: 2, ff: 384, ctx: 1024, vocab: 8000, type: 'q8_0', seed: 1, out: file });
}

// 2. Questions: GSM8K test questions from ../shared/data when present, else two built-in ones.
const shared = path.resolve('../shared/data/gsm8k/test.jsonl');
const questions = fs.existsSync(shared)
  ? fs.readFileSync(shared, 'utf8').split('\n').filter(Boolean).slice(0, 8).map((l) => JSON.parse(l).question as string)
  : ['Natalia sold clips to 48 of her friends in April, and half as many in May. How many clips did she sell?',
     'Weng earns $12 an hour for babysitting. Yesterday she did 50 minutes. How much did she earn?'];

// 3. Sample: 4 answers per question at temperature 1, stopping at the paper's stop strings.
const model = await loadModel(file);
const started = performance.now();
const samples = await model.sample(questions.map((q) => formatPrompt(q)), {
  n: 4, temperature: 1, maxTokens: 48, stop: ['Question', 'Answer'], seed: 42,
  onProgress: (p) => process.stderr.write(`\r${p.finished}/${p.total} samples, ${p.tokens} tokens`),
});
const seconds = (performance.now() - started) / 1000;
process.stderr.write('\n');

// 4. Report.
for (const s of samples.filter((x) => x.sampleIndex === 0)) {
  console.log(`Q${s.promptIndex}: ${questions[s.promptIndex]!.slice(0, 70)}…\n  → ${JSON.stringify(s.text.slice(0, 80))} (${s.finishReason})`);
}
const tokens = samples.reduce((a, s) => a + s.tokens, 0);
console.log(`${samples.length} samples, ${tokens} tokens in ${seconds.toFixed(2)} s = ${(tokens / seconds).toFixed(0)} tokens/s on ${model.info.description}`);
model.dispose();
