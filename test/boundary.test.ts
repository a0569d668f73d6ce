// The prompt/completion boundary (native/core/tokenize.h, issue 13): scoring, SFT, DPO and ORPO see the tokens
// of prompt + completion tokenized whole, on every real vocabulary in ../shared/models, never SentencePiece's
// dummy "▁" before a separately tokenized completion; an SFT run on real weights no longer learns that token.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { InvalidArgumentError } from '../lib/errors.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { writeGguf } from '../lib/gguf/writer.js';
import { loadModel } from '../lib/model.js';
import { tokenizeSft } from '../lib/train/sft-data.js';
import { tokenizePairs } from '../lib/train/preference-data.js';
import { trainSft } from '../lib/train/sft.js';
import { TMP } from './helpers/models.js';

const MODELS = path.resolve('../shared/models');
const STORIES = path.join(MODELS, 'stories260K.gguf');
const VOCABS = ['llama-spm', 'phi-3', 'gpt-2', 'deepseek-llm', 'falcon', 'starcoder'].map((n) => path.join(MODELS, 'vocab', `ggml-vocab-${n}.gguf`));
const dir = fs.mkdtempSync(path.join(TMP, 'boundary-'));

// Boundaries of every kind: after punctuation, a space-led completion, a prompt ending in a space (merges
// under BPE), a word cut in half (merges under both), newlines, digits, non-ASCII.
const PAIRS: [string, string][] = [
  ['One day a cat sat.', ' Mia saw it.'], ['Answer:', ' 42'], ['Answer: ', '42'], ['The cat', 's ran'],
  ['Q: 2+2\nA:', ' 4\n#### 4'], ['Question: how many?\nAnswer:', ' She sold 48 clips. #### 48'], ['Él dijo', ' «hola» 😀'], ['x', ''],
];

const lcp = (a: readonly number[], b: readonly number[]) => {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
};

test('on every real vocabulary the completion tokens are those of the joint tokenization, after the longest common prefix', async (t) => {
  for (const file of [STORIES, ...VOCABS]) {
    const m = await loadModel(file, { vocabOnly: true });
    const name = path.basename(file);
    let merges = 0;
    let dummies = 0;
    try {
      for (const [prompt, completion] of PAIRS) {
        const pair = m.tokenizePair(prompt, completion);
        const joint = m.tokenize(prompt + completion, { addSpecial: true });
        const alone = m.tokenize(prompt, { addSpecial: true });
        t.deepEqual(pair.tokens, joint, `${name} ${JSON.stringify([prompt, completion])}: tokens = joint tokenization`);
        t.is(pair.nPrompt, lcp(alone, joint), `${name}: context = longest common prefix with the prompt's own tokens`);
        if (pair.nPrompt < alone.length) merges++;
        // The old convention (completion tokenized alone) differs exactly where SentencePiece adds its dummy prefix.
        const separate = m.tokenize(completion);
        if (completion !== '' && pair.nPrompt === alone.length && separate.join() !== pair.tokens.slice(pair.nPrompt).join()) dummies++;
      }
    } finally {
      m.dispose();
    }
    const spm = (await readGgufMetadata(file)).values.get('tokenizer.ggml.model') === 'llama';
    t.log(`${name}: ${PAIRS.length} pairs, ${merges} merge across the boundary, ${dummies} differ from the completion tokenized alone`);
    // The hazard is real where SentencePiece adds its dummy space, and absent for byte-level BPE.
    if (spm) t.true(dummies >= 2, `${name}: the completion tokenized alone gains a token`);
    else t.is(dummies, 0, `${name}: BPE tokenizes a completion alone as it does in context`);
  }
});

test('scoring, SFT and preference data all use the boundary rule (stories260K)', async (t) => {
  const m = await loadModel(STORIES);
  try {
    const items = PAIRS.filter(([, c]) => c !== '').map(([prompt, completion]) => ({ prompt, completion }));
    const scores = await m.score(items, { threads: 1 });
    const sft = tokenizeSft(m, items.map((it) => ({ prompt: it.prompt, response: it.completion })), 512);
    const prefs = tokenizePairs(m, items.map((it) => ({ prompt: it.prompt, chosen: it.completion, rejected: `${it.completion} no` })), 512);
    items.forEach((it, i) => {
      const pair = m.tokenizePair(it.prompt, it.completion);
      t.is(scores[i]!.promptTokens, pair.nPrompt);
      t.is(scores[i]!.tokens, pair.tokens.length - pair.nPrompt);
      t.deepEqual(sft.examples[i]!.tokens, [...pair.tokens, m.info.eos]);
      t.is(sft.examples[i]!.nPrompt, pair.nPrompt);
      t.deepEqual(prefs.pairs[i]!.chosen.tokens, [...pair.tokens, m.info.eos]);
      t.is(prefs.pairs[i]!.chosen.nPrompt, pair.nPrompt);
    });
  } finally {
    m.dispose();
  }
});

test('SFT on real weights (stories260K) no longer teaches the doubled space', async (t) => {
  const names = ['Mia', 'Tom', 'Lily', 'Ben', 'Sue', 'Max', 'Anna', 'Tim'];
  const things = ['ball', 'cat', 'dog', 'tree', 'cake', 'box', 'bird', 'car'];
  const rows = Array.from({ length: 64 }, (_, i) => ({
    prompt: `Once upon a time there was a ${things[i % 8]}.`,
    response: ` ${names[(i * 3) % 8]} saw the ${things[(i + 1) % 8]}.`,
  }));
  const out = path.join(dir, 'stories-sft.gguf');
  const r = await trainSft({ model: STORIES, data: rows, out, rank: 8, alpha: 16, lr: 3e-3, epochs: 4, batch: 8, seed: 1, threads: 1, warmupRatio: 0 });
  t.true(r.history.at(-1)!.loss < r.history[0]!.loss);
  const m = await loadModel(STORIES);
  try {
    const lora = await m.loadLora(out);
    const prompts = things.map((x) => `Once upon a time there was a ${x}.`);
    const samples = await m.sample(prompts, { temperature: 0, maxTokens: 12, lora, threads: 1 });
    const texts = samples.map((s) => s.text);
    t.log(texts.map((s) => JSON.stringify(s)).join(' '));
    // Trained on " Name saw …": answers start with exactly one space, never two.
    for (const s of texts) t.notRegex(s, /^\s\s/);
    t.true(texts.filter((s) => /^ [A-Z][a-z]+ saw/.test(s)).length >= 4, 'the adapter learned the pattern');
  } finally {
    m.dispose();
  }
});

test('text a vocabulary cannot encode is a typed error naming the character (and the row in training data)', async (t) => {
  // stories260K without its 256 byte tokens: llama.cpp's SentencePiece tokenizer throws std::out_of_range on
  // any character outside the remaining pieces (the crash node-llama-cpp has on such models).
  const meta = await readGgufMetadata(STORIES);
  const types = meta.values.get('tokenizer.ggml.token_type') as number[];
  const keep = types.map((ty) => ty !== 6);
  const strip = new Set(['tokenizer.ggml.token_type', 'tokenizer.ggml.tokens', 'tokenizer.ggml.scores']);
  const file = path.join(dir, 'no-bytes.gguf');
  await writeGguf(file, meta.kv.map((e) => (strip.has(e.key) ? { ...e, value: (e.value as unknown[]).filter((_, i) => keep[i]) } : e)) as typeof meta.kv, []);
  const m = await loadModel(file, { vocabOnly: true });
  try {
    t.true(m.tokenize('hello').length > 0);
    t.throws(() => m.tokenize('hello 😀'), { instanceOf: InvalidArgumentError, message: /cannot encode U\+1F600 '😀' at byte 6/ });
    t.throws(() => tokenizeSft(m, [{ prompt: 'hi', response: ' ok' }, { prompt: 'hi', response: ' 😀' }], 64),
      { instanceOf: InvalidArgumentError, message: /^row 2: .*cannot encode U\+1F600/ });
  } finally {
    m.dispose();
  }
});
