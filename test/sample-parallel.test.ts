// The default `parallel` (lib/sample-options.ts defaultParallel): bounded by the work, by 64, and by a KV
// budget that counts each sequence's own stream of (longest prompt + maxTokens) cells, so longer prompts or
// answers on a big model mean fewer sequences, never a KV cache past min(4 GiB, RAM / 4).
import test from 'ava';
import os from 'node:os';
import { defaultParallel, MAX_DEFAULT_PARALLEL } from '../lib/sample-options.js';

const llama8b = { nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKv: 8 };
const tiny = { nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2 };

test('bounded by the work and by 64 on small models', (t) => {
  t.is(defaultParallel(tiny, 10, 256, 20), 10);
  t.is(defaultParallel(tiny, 10_000, 256, 20), MAX_DEFAULT_PARALLEL);
  t.is(defaultParallel(tiny, 1, 256, 20), 1);
});

test('on an 8B-shaped model the KV budget decides, and longer prompts or answers lower it', (t) => {
  const budget = Math.min(4 * 2 ** 30, os.totalmem() / 4);
  const bytesPerCell = 2 * 32 * (4096 / 32) * 8 * 2; // K and V, F16, every layer
  const shapes = [[100, 256], [400, 256], [400, 1024], [2000, 1024]] as const;
  let last = Infinity;
  for (const [prompt, maxTokens] of shapes) {
    const p = defaultParallel(llama8b, 10_000, maxTokens, prompt);
    const kv = p * Math.ceil((prompt + maxTokens) / 256) * 256 * bytesPerCell;
    t.log(`prompt ${prompt} + ${maxTokens} new tokens: parallel ${p}, KV ${(kv / 2 ** 30).toFixed(2)} GiB of a ${(budget / 2 ** 30).toFixed(2)} GiB budget`);
    t.true(p >= 1 && p <= MAX_DEFAULT_PARALLEL);
    t.true(p === 1 || kv <= budget, `${kv} > ${budget}`);
    t.true(p <= last);
    last = p;
  }
  t.true(defaultParallel(llama8b, 10_000, 1024, 2000) < defaultParallel(llama8b, 10_000, 256, 100));
});
