// The byte bound that judges megabyte rows without tokenizing them (lib/model/token-bound.ts), checked against
// llama.cpp's real tokenizers (SPM and BPE vocabularies nobody here wrote), and the trainers' use of it.
import path from 'node:path';
import test from 'ava';
import { loadModel, type Model } from '../lib/model.js';
import { certainlyLonger, prefixForTokens } from '../lib/model/token-bound.js';
import { tokenizeSft } from '../lib/train/sft-data.js';
import { tokenizePairs } from '../lib/train/preference-data.js';
import { ContextOverflowError, InvalidArgumentError } from '../lib/errors.js';
import { tinyModel } from './helpers/models.js';

const VOCABS = ['llama-spm', 'phi-3', 'gpt-2', 'deepseek-llm', 'falcon', 'starcoder']
  .map((n) => path.resolve('../shared/models/vocab', `ggml-vocab-${n}.gguf`));

/** Seeded texts mixing ASCII words, digits, spaces, punctuation, accents, CJK and emoji (surrogate pairs). */
function texts(seed: number, count: number): string[] {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const pieces = ['the', ' cat', ' 12', '345', '  ', '\n', '!', ' é', 'ü', '漢字', '😀', ' Question:', '####', '\t', 'aaaa', '  x'];
  return Array.from({ length: count }, () => {
    const n = 1 + Math.floor(rand() * 300);
    return Array.from({ length: n }, () => pieces[Math.floor(rand() * pieces.length)]).join('');
  });
}

test('certainlyLonger never claims more tokens than a real tokenizer gives; prefixForTokens keeps the first tokens', async (t) => {
  for (const file of VOCABS) {
    const vocab = await loadModel(file, { vocabOnly: true });
    try {
      const bound = vocab.maxTokenBytes;
      t.true(bound !== undefined && bound >= 1, `${path.basename(file)} has a bound`);
      let claims = 0;
      let worst = Infinity; // smallest tokens / (bytes / bound) seen: must stay >= 1
      for (const text of texts(7, 150)) {
        const n = vocab.tokenize(text).length;
        worst = Math.min(worst, n / (Buffer.byteLength(text) / bound!));
        for (const k of [1, 5, 20, 80]) {
          if (certainlyLonger(text, k, bound)) {
            claims++;
            t.true(n > k, `${path.basename(file)}: ${JSON.stringify(text.slice(0, 40))} has ${n} tokens, claimed > ${k}`);
          }
        }
        for (const k of [2, 8, 32]) {
          const prefix = prefixForTokens(text, k, bound);
          t.deepEqual(vocab.tokenize(prefix).slice(0, k), vocab.tokenize(text).slice(0, k));
        }
      }
      t.log(`${path.basename(file)}: max token bytes ${bound}, tokens ≥ ${worst.toFixed(2)} × bytes/bound, ${claims} too-long claims checked`);
      t.true(worst >= 1);
    } finally {
      vocab.dispose();
    }
  }
});

/** A vocabulary whose tokenize calls are recorded, to see how much text the trainers hand the tokenizer. */
async function recordingVocab(): Promise<{ vocab: Model; longest: () => number; dispose: () => void }> {
  const vocab = await loadModel(await tinyModel(), { vocabOnly: true });
  let longest = 0;
  const inner = vocab.tokenize.bind(vocab);
  vocab.tokenize = (text: string, o?: { addSpecial?: boolean; parseSpecial?: boolean }) => {
    longest = Math.max(longest, text.length);
    return inner(text, o);
  };
  return { vocab, longest: () => longest, dispose: () => vocab.dispose() };
}

test('SFT and preference data: a row of megabytes is skipped or cut by its size, not tokenized whole', async (t) => {
  const huge = 'Question: how many? '.repeat(2_500_000); // 50 MB
  const r = await recordingVocab();
  try {
    const sft = tokenizeSft(r.vocab, [
      { prompt: huge, response: ' 1' },
      { prompt: 'Question: 1 + 1?\nAnswer:', response: huge },
      { prompt: 'Question: 2 + 2?\nAnswer:', response: ' 4' },
    ], 64);
    t.is(sft.skippedPromptTooLong, 1);
    t.is(sft.truncated, 1);
    t.is(sft.examples.length, 2);
    t.is(sft.examples[0]!.tokens.length, 64);
    const pairs = tokenizePairs(r.vocab, [
      { prompt: huge, chosen: ' 1', rejected: ' 2' },
      { prompt: 'Q:', chosen: huge, rejected: ' 2' },
    ], 64);
    t.is(pairs.skippedPromptTooLong, 1);
    t.is(pairs.pairs.length, 1);
    t.true(r.longest() < 100_000, `longest text tokenized: ${r.longest()} characters of ${huge.length}`);
  } finally {
    r.dispose();
  }
});

test('sample and score refuse a prompt of megabytes by its size; bad n and threads are typed errors', async (t) => {
  const model = await loadModel(await tinyModel());
  try {
    const huge = 'word '.repeat(10_000_000);
    await t.throwsAsync(async () => model.sample([huge], { maxTokens: 2, threads: 1 }), { instanceOf: ContextOverflowError, message: /prompt 0 \(50000000 bytes\) has more tokens than the context of 512 tokens holds/ });
    await t.throwsAsync(async () => model.score([{ prompt: 'Hi', completion: huge }], { threads: 1 }), { instanceOf: ContextOverflowError, message: /item 0/ });
    await t.throwsAsync(async () => model.sample(['Hi'], { n: 2 ** 31, threads: 1 }), { instanceOf: InvalidArgumentError, message: /Expected integer in \[1, 65536\] for n but received 2147483648/ });
    await t.throwsAsync(async () => model.sample(['Hi'], { n: 2 ** 32 + 1, threads: 1 }), { instanceOf: InvalidArgumentError, message: /for n but received 4294967297/ });
    await t.throwsAsync(async () => model.sample(Array(100).fill('Hi'), { n: 60_000, threads: 1 }), { instanceOf: InvalidArgumentError, message: /100 prompts × n 60000 = 6000000; split the prompts/ });
    await t.throwsAsync(async () => model.sample(['Hi'], { threads: 1000 }), { instanceOf: InvalidArgumentError, message: /Expected integer in \[1, \d+\] for threads \(this machine lets the process use \d+ CPUs?\) but received 1000/ });
    await t.throwsAsync(async () => model.score([{ prompt: 'Hi', completion: ' x' }], { threads: 0 }), { instanceOf: InvalidArgumentError, message: /for threads/ });
  } finally {
    model.dispose();
  }
});
