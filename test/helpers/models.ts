// Tiny models for native tests, made with the project's own model creator and cached per process in a
// temp folder (creation is deterministic, so a config always gives the same file).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createModel, type CreateModelOptions } from '../../lib/model/create.js';

export const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-test-'));
// Each test file runs in its own process (ava, workerThreads off): its models and outputs go with it.
process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));

const made = new Map<string, Promise<string>>();

export type TinyConfig = Partial<Omit<CreateModelOptions, 'out'>>;

/** A 2-layer, 64-wide model (llama by default) in F32 unless overridden. */
export function tinyModel(config: TinyConfig = {}): Promise<string> {
  const o = { arch: 'llama' as const, layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 512, type: 'f32' as const, seed: 1, ...config };
  const key = JSON.stringify(o);
  let p = made.get(key);
  if (!p) {
    const out = path.join(TMP, `model-${made.size}.gguf`);
    p = createModel({ ...o, out }).then(() => out);
    made.set(key, p);
  }
  return p;
}

export const PROMPTS = [
  'Question: Natalia sold clips to 48 of her friends in April. How many clips did she sell?\nAnswer:',
  'Question: Weng earns $12 an hour for babysitting. How much did she earn?\nAnswer:',
  'Question: What is 2 + 2?\nAnswer:',
  'Question: Betty is saving money for a new wallet which costs $100.\nAnswer:',
  'Hello',
];
