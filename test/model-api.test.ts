// Model loading, metadata, tokenizer, lifecycle and the typed errors of bad model files.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../lib/model.js';
import { addon } from '../lib/native.js';
import { SAMPLE_DEFAULTS } from '../lib/sample-options.js';
import { writeGguf } from '../lib/gguf/writer.js';
import { GgmlType, GgufValueType } from '../lib/gguf/types.js';
import { TMP, tinyModel } from './helpers/models.js';

test('loads a created model and reports its shape', async (t) => {
  const m = await loadModel(await tinyModel());
  t.is(m.info.architecture, 'llama');
  t.is(m.info.nEmbd, 64);
  t.is(m.info.nLayer, 2);
  t.is(m.info.nCtxTrain, 512);
  t.true(m.info.nVocab > 259);
  t.true(m.info.addBos);
  t.is(m.metadata()['general.architecture'], 'llama');
  m.dispose();
});

test('qwen2 models load too', async (t) => {
  const m = await loadModel(await tinyModel({ arch: 'qwen2' }));
  t.is(m.info.architecture, 'qwen2');
  m.dispose();
});

test('tokenize and detokenize round-trip text, with BOS only when asked', async (t) => {
  const m = await loadModel(await tinyModel());
  for (const text of ['Question: 12 + 30 = 42\nAnswer: #### 42', 'café 🙂 naïve', '  spaced\ttabs\n\nnewlines ']) {
    const toks = m.tokenize(text);
    t.not(toks[0], m.info.bos);
    t.is(m.detokenize(toks), text);
    const withBos = m.tokenize(text, { addSpecial: true });
    t.is(withBos[0], m.info.bos);
    t.deepEqual(withBos.slice(1), toks);
  }
  t.throws(() => m.detokenize([m.info.nVocab]), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  m.dispose();
});

test('the documented sampling defaults equal the native request defaults', (t) => {
  const native = addon().defaults().sample;
  for (const [k, v] of Object.entries(SAMPLE_DEFAULTS)) t.is(native[k as keyof typeof native], v, k);
});

test('a missing file is a FileNotFoundError', async (t) => {
  const e = await t.throwsAsync(loadModel(path.join(TMP, 'nope.gguf')), { code: 'ERR_W2S_FILE_NOT_FOUND' });
  t.regex(e!.message, /nope\.gguf does not exist/);
});

test('a file that is not GGUF, and a truncated GGUF, are GgufFormatErrors', async (t) => {
  const notGguf = path.join(TMP, 'not.gguf');
  fs.writeFileSync(notGguf, 'this is plain text, not a model\n');
  await t.throwsAsync(loadModel(notGguf), { code: 'ERR_W2S_GGUF_FORMAT', message: /not-gguf|magic|not a GGUF/i });
  const full = fs.readFileSync(await tinyModel());
  for (const cut of [10, 200, Math.floor(full.length / 2), full.length - 1]) {
    const file = path.join(TMP, `cut-${cut}.gguf`);
    fs.writeFileSync(file, full.subarray(0, cut));
    await t.throwsAsync(loadModel(file), { code: 'ERR_W2S_GGUF_FORMAT' }, `cut at ${cut}`);
  }
});

test('an unknown architecture is an UnsupportedModelError, not an abort', async (t) => {
  const file = path.join(TMP, 'alien.gguf');
  await writeGguf(file, [
    { key: 'general.architecture', type: GgufValueType.STRING, value: 'alienformer' },
    { key: 'alienformer.block_count', type: GgufValueType.UINT32, value: 1 },
  ], [{ name: 'token_embd.weight', type: GgmlType.F32, ne: [4, 4], data: () => [new Uint8Array(64)] }]);
  const e = await t.throwsAsync(loadModel(file), { code: 'ERR_W2S_UNSUPPORTED_MODEL' });
  t.regex(e!.message, /alienformer/);
});

test('a disposed model throws DisposedError', async (t) => {
  const m = await loadModel(await tinyModel());
  m.dispose();
  t.true(m.disposed);
  t.throws(() => m.tokenize('x'), { code: 'ERR_W2S_DISPOSED' });
  t.throws(() => m.sample(['x']), { code: 'ERR_W2S_DISPOSED' });
});
