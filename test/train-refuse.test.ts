// The trainer refuses a GGUF whose tensors it would not all use (issue 13): training would otherwise change a
// different model than llama.cpp runs. Here a qwen2 file relabelled as llama: llama.cpp's llama graph adds the
// q/k/v biases it finds, the training graph for llama does not.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { UnsupportedModelError } from '../lib/errors.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { loadModel } from '../lib/model.js';
import { trainSft } from '../lib/train/sft.js';
import { editGguf } from './helpers/gguf-edit.js';
import { TMP, tinyModel } from './helpers/models.js';

const dir = fs.mkdtempSync(path.join(TMP, 'refuse-'));
const ROWS = Array.from({ length: 4 }, (_, i) => ({ prompt: `Q: ${i}?\nA:`, response: ` ${i}` }));

test('a tensor the training graph does not implement is an UnsupportedModelError naming it; llama.cpp still runs the file', async (t) => {
  const src = await tinyModel({ arch: 'qwen2' });
  const meta = await readGgufMetadata(src);
  const kv: Record<string, { value: unknown; type: number; itemType?: number } | string | null> = { 'general.architecture': 'llama' };
  for (const e of meta.kv.filter((e) => e.key.startsWith('qwen2.'))) {
    kv[e.key] = null;
    const { key: _key, ...value } = e; // the new key comes from the record's name
    kv[`llama.${e.key.slice(6)}`] = value as { value: unknown; type: number };
  }
  const file = await editGguf(src, path.join(dir, 'llama-with-biases.gguf'), { kv: kv as never });
  const m = await loadModel(file);
  t.is(m.info.architecture, 'llama');
  m.dispose();
  const err = await t.throwsAsync(trainSft({ model: file, data: ROWS, out: path.join(dir, 'x.gguf'), threads: 1 }), { instanceOf: UnsupportedModelError });
  t.regex(err!.message, /does not implement tensors blk\.0\.attn_q\.bias, blk\.0\.attn_k\.bias, blk\.0\.attn_v\.bias/);
  t.false(fs.existsSync(path.join(dir, 'x.gguf')));
  // The unmodified qwen2 file trains (positive control).
  const ok = await trainSft({ model: src, data: ROWS, out: path.join(dir, 'ok.gguf'), threads: 1, maxSteps: 1 });
  t.is(ok.steps, 1);
});
