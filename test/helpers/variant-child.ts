// Child process of test/gpu-variants.test.ts and test/cpu-backend.test.ts: loads the addon variant and CPU
// backend the environment picks (W2S_VARIANT, W2S_GPU, W2S_CPU_BACKEND) and prints, as one JSON line, where it came from and what sampling, scoring and one training step
// give on the model in argv[2]. argv[3] 'worker': also loads the addon in a worker_thread and reports its variant.
import { Worker } from 'node:worker_threads';
import { loadModel } from '../../lib/model.js';
import { addonLocation } from '../../lib/native.js';
import { trainSft } from '../../lib/train/sft.js';

const file = process.argv[2]!;
const m = await loadModel(file, { gpu: false });
const loc = addonLocation();
const prompts = ['Question: What is 2 + 3?\nAnswer:', 'Hello'];
const greedy = await m.sample(prompts, { temperature: 0, maxTokens: 16 });
const seeded = await m.sample(prompts, { temperature: 1, n: 2, seed: 7, maxTokens: 12 });
// Flash attention's per-token log-probs of a greedy run (the kernel whose code differs most between builds).
const flash = await m.sample(prompts, { temperature: 0, maxTokens: 24, attention: 'flash', logprobs: true });
// The same decode with plain attention (matrix products and a separate softmax): the reference for flash's.
const plain = await m.sample(prompts, { temperature: 0, maxTokens: 24, attention: 'plain', logprobs: true });
const scores = await m.score([{ prompt: prompts[0]!, completion: ' 5. #### 5' }, { prompt: 'Hi', completion: ' there, friend' }]);
m.dispose();
const r = await trainSft({
  model: file, out: `${file}.${loc.variant}.adapter.gguf`, data: [{ prompt: 'Q: 1 + 1?\nA:', response: ' 2' }, { prompt: 'Q: 2 + 2?\nA:', response: ' 4' }],
  epochs: 2, batch: 2, lr: 1e-2, seed: 1, threads: 1, warmupRatio: 0, gpu: false,
});
let workerVariant: string | undefined;
if (process.argv[3] === 'worker') {
  const url = new URL('../../lib/native.js', import.meta.url).href;
  const w = new Worker(`import(${JSON.stringify(url)}).then((n) => require('node:worker_threads').parentPort.postMessage(n.addonLocation().variant));`, { eval: true });
  workerVariant = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await w.terminate();
}
process.stdout.write(JSON.stringify({
  addon: loc.addonPath, libDir: loc.libDir, variant: loc.variant, reason: loc.reason, devices: loc.devices, loadLog: loc.loadLog,
  cpuBackend: loc.cpuBackend, systemInfo: loc.systemInfo,
  flash: flash.map((x) => ({ tokenIds: x.tokenIds, logprobs: Array.from(x.logprobs ?? []) })),
  plain: plain.map((x) => ({ tokenIds: x.tokenIds, logprobs: Array.from(x.logprobs ?? []) })),
  greedy: greedy.map((s) => s.text), seeded: seeded.map((s) => s.text), logprobs: scores.flatMap((s) => Array.from(s.logprobs)),
  losses: r.history.map((h) => h.loss), backend: r.trainer.backend, workerVariant,
}) + '\n');
