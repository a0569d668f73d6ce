// Teach a small random model an answer format with LoRA SFT, then see the adapter at work in sampling and
// scoring. Reads top to bottom; runs in seconds on a laptop CPU: `node dist/examples/train-sft.js`.
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { createModel, formatPrompt, loadModel, trainSft } from '../lib/index.js';

// 1. A base model (random weights) in a scratch folder.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-example-'));
const base = path.join(dir, 'base.gguf');
await createModel({ arch: 'llama', layers: 2, embd: 128, heads: 4, kvHeads: 2, ff: 256, ctx: 512, type: 'q8_0', seed: 1, out: base });

// 2. Training rows in the paper's prompt format: each answer ends with "#### <sum>".
const rows = Array.from({ length: 32 }, (_, i) => ({
  prompt: formatPrompt(`What is ${i} + ${i % 5}?`),
  response: ` ${i} + ${i % 5} = ${i + (i % 5)}. #### ${i + (i % 5)}`,
}));

// 3. LoRA SFT: rank 8 on all seven projections, prompt tokens masked; a loss line per step.
const adapter = path.join(dir, 'sft.gguf');
const result = await trainSft({
  model: base, data: rows, out: adapter, epochs: 8, batch: 8, lr: 3e-3, seed: 1,
  onProgress: (p) => console.log(`step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(3)} (${p.tokensPerSecond.toFixed(0)} tokens/s)`),
});
console.log(`trained ${result.trainer.nParams} LoRA parameters; log: ${result.log}`);

// 4. The adapter in use: greedy answers and the log-probability of a correct answer, with and without it.
const model = await loadModel(base);
const lora = await model.loadLora(adapter);
const question = formatPrompt('What is 7 + 2?');
const [plain] = await model.sample([question], { temperature: 0, maxTokens: 24 });
const [tuned] = await model.sample([question], { temperature: 0, maxTokens: 24, lora });
console.log(`base:    ${JSON.stringify(plain!.text)}\nadapter: ${JSON.stringify(tuned!.text)}`);
const item = { prompt: question, completion: ' 7 + 2 = 9. #### 9' };
const [before] = await model.score([item]);
const [after] = await model.score([item], { lora });
console.log(`log p(correct answer): ${before!.sum.toFixed(2)} -> ${after!.sum.toFixed(2)}`);
model.dispose();
console.log(`files in ${dir}`);
