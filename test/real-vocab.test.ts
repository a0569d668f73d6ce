// Real tokenizers in random-weight models (`createModel({ vocabFrom })`, `w2s model create --vocab-from`):
// tokenization equals llama.cpp's own test vectors, and sampling, scoring and SFT run at real vocabulary sizes.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { InvalidArgumentError } from '../lib/errors.js';
import { createModel } from '../lib/model/create.js';
import { loadModel } from '../lib/model.js';
import { trainSft } from '../lib/train/sft.js';
import { TMP } from './helpers/models.js';

const VOCAB_DIR = path.resolve('../shared/models/vocab');
const dir = fs.mkdtempSync(path.join(TMP, 'real-vocab-'));

/** llama.cpp's test vectors: inputs split by `\n__ggml_vocab_test__\n`, one line of ids per input (tests/test-tokenizer-0.cpp). */
function vectors(name: string): { text: string; ids: number[] }[] {
  const inp = fs.readFileSync(path.join(VOCAB_DIR, `ggml-vocab-${name}.gguf.inp`), 'utf8');
  const out = fs.readFileSync(path.join(VOCAB_DIR, `ggml-vocab-${name}.gguf.out`), 'utf8').split('\n');
  const texts = inp.split('\n__ggml_vocab_test__\n');
  if (texts.at(-1) === '') texts.pop();
  if (out.at(-1) === '') out.pop();
  if (texts.length !== out.length) throw new Error(`${name}: ${texts.length} inputs but ${out.length} outputs`);
  return texts.map((text, i) => ({ text, ids: out[i]!.trim() === '' ? [] : out[i]!.trim().split(' ').map(Number) }));
}

const NAMES = ['llama-spm', 'phi-3', 'gpt-2', 'deepseek-llm', 'falcon', 'starcoder'];

test('a model created with a real vocabulary tokenizes exactly as llama.cpp\'s test vectors say', async (t) => {
  for (const name of NAMES) {
    const out = path.join(dir, `${name}.gguf`);
    const info = await createModel({ arch: 'llama', layers: 1, embd: 32, heads: 2, kvHeads: 1, ff: 64, ctx: 256, type: 'f32', seed: 1, out, vocabFrom: path.join(VOCAB_DIR, `ggml-vocab-${name}.gguf`) });
    const m = await loadModel(out);
    try {
      t.is(m.info.nVocab, info.nVocab);
      const cases = vectors(name);
      let ok = 0;
      for (const c of cases) {
        const got = m.tokenize(c.text);
        t.deepEqual(got, c.ids, `${name}: ${JSON.stringify(c.text.slice(0, 40))}`);
        if (got.join() === c.ids.join()) ok++;
      }
      t.log(`${name}: ${info.tokenizer} tokenizer, ${info.nVocab} tokens, ${ok}/${cases.length} test vectors equal`);
    } finally {
      m.dispose();
    }
  }
});

test('sampling, scoring and SFT run on a real 32,000-token SentencePiece vocabulary', async (t) => {
  const base = path.join(dir, 'spm-train.gguf');
  await createModel({ arch: 'llama', layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 256, type: 'q8_0', seed: 2, out: base, vocabFrom: path.join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf') });
  const rows = Array.from({ length: 16 }, (_, i) => ({ prompt: `Question: What is ${i} + 1?\nAnswer:`, response: ` ${i + 1} #### ${i + 1}` }));
  const r = await trainSft({ model: base, data: rows, out: path.join(dir, 'spm.lora.gguf'), epochs: 6, batch: 8, lr: 1e-2, seed: 1, threads: 1, warmupRatio: 0 });
  t.log(`SFT loss ${r.history[0]!.loss.toFixed(3)} -> ${r.history.at(-1)!.loss.toFixed(3)} over ${r.steps} steps`);
  t.true(r.history.at(-1)!.loss < r.history[0]!.loss);
  const m = await loadModel(base);
  try {
    const lora = await m.loadLora(r.adapter);
    const [before] = await m.score([{ prompt: rows[3]!.prompt, completion: rows[3]!.response }], { threads: 1 });
    const [after] = await m.score([{ prompt: rows[3]!.prompt, completion: rows[3]!.response }], { lora, threads: 1 });
    t.true(after!.sum > before!.sum, `the adapter raises the trained completion's log-prob (${before!.sum.toFixed(2)} -> ${after!.sum.toFixed(2)})`);
    const samples = await m.sample([rows[0]!.prompt], { n: 2, maxTokens: 6, seed: 1, lora, threads: 1 });
    t.is(samples.length, 2);
  } finally {
    m.dispose();
  }
});

test('vocabFrom refuses a file without a tokenizer and excludes vocab', async (t) => {
  const plain = { arch: 'llama' as const, layers: 1, embd: 32, heads: 2, kvHeads: 1, ff: 64, ctx: 64, type: 'f32' as const, seed: 1 };
  await t.throwsAsync(createModel({ ...plain, out: path.join(dir, 'x.gguf'), vocab: 2000, vocabFrom: path.join(VOCAB_DIR, 'ggml-vocab-gpt-2.gguf') }),
    { instanceOf: InvalidArgumentError, message: /vocab and vocabFrom exclude each other/ });
  t.false(fs.existsSync(path.join(dir, 'x.gguf')));
});
