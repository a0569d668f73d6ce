// One measurement for test/train-memory.test.ts in its own process (so that peak RSS is this run's alone):
// the memory plan of a B × T micro-batch, then one accumulate + optimizer step of that shape.
// Usage: node train-memory-child.js <model> <T> <B> <checkpointing>  -> one JSON line {plan, baseline, peak}
import { addon } from '../../lib/native.js';

const [model, T, B, checkpointing] = process.argv.slice(2) as [string, string, string, 'on' | 'off'];
const t = Number(T), b = Number(B);
const native = addon();
const baseline = process.memoryUsage().rss;
const tr = await native.createTrainer(model, { rank: 8, alpha: 16, dropout: 0, targets: 0x7f, seed: 0, threads: 1, checkpointing });
const plan = await tr.plan({ T: t, B: b, pairs: false });
const tokens = Int32Array.from({ length: t * b }, (_, i) => (i * 7919) % 1000);
const targets = Int32Array.from({ length: t * b }, (_, i) => ((i + 1) % t === 0 ? -1 : tokens[i + 1]!));
await tr.accumulate({ T: t, B: b, tokens, targets, lossScale: 1 / (t * b) });
await tr.step({ lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1 });
const peak = process.resourceUsage().maxRSS * 1024;
tr.dispose();
process.stdout.write(JSON.stringify({ plan, baseline, peak }) + '\n');
