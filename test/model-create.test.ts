// Tests for createModel: every arch x type loads in node-llama-cpp, tokenizes round-trip, gives finite varied
// logits close to the f32 model's; files are deterministic per seed; options are validated with exact messages.

import test from 'ava';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, LlamaVocabularyType, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { InvalidArgumentError } from '../lib/errors.js';
import { encode } from '../lib/gguf/quantize.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { GgmlType } from '../lib/gguf/types.js';
import { createModel, type CreateModelOptions, type ModelArch, type ModelInfo, type ModelTensorType } from '../lib/model/create.js';
import { baseVocabSize } from '../lib/model/tokenizer-vocab.js';

const TINY = { layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 256 } as const;
const ARCHS: ModelArch[] = ['llama', 'qwen2'];
const TYPES: ModelTensorType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
const GGML_OF: Record<ModelTensorType, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 };
const FILE_TYPE: Record<ModelTensorType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };
const THREADS = 2; // node-llama-cpp's default thread count is very slow on small CI machines

const ROUND_TRIP_TEXTS = [
  'Question: Tom has 12 apples and buys 7 more. How many apples does he have?\nAnswer: 12 + 7 = <<12+7=19>>19 apples.\n#### 19',
  ' leading space',
  '\nleading newline',
  'trailing  spaces  \n\n',
  'café, naïve, Ünïcödé — 🙂 ∑ 漢字 😀👍🏽',
  'tabs\tand\r\nCRLF',
  '<s> </s> <unk> <|endoftext|> <|im_end|> <0x41>',
  '   ',
  '',
  '0123456789 3.14159 -42 1e9 $5.50 50%',
  "don't won't it's they'll",
];

let llama: Llama;
let dir: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'w2s-model-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
});

test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function tinyOptions(arch: ModelArch, type: ModelTensorType, extra: Partial<CreateModelOptions> = {}): CreateModelOptions {
  return { arch, type, ...TINY, seed: 11, out: join(dir, `${arch}-${type}-${extra.seed ?? 11}-${extra.vocab ?? 0}.gguf`), ...extra };
}

interface Evaluated {
  info: ModelInfo;
  logits: Float64Array;
}

/** Logits after "Question: what is 2 + 3?" for one arch/type; memoised so the f32 reference is built once. */
const evaluated = new Map<string, Promise<Evaluated>>();
function evaluate(arch: ModelArch, type: ModelTensorType, check?: (model: LlamaModel, info: ModelInfo) => void): Promise<Evaluated> {
  const key = `${arch}/${type}`;
  if (!evaluated.has(key)) {
    evaluated.set(
      key,
      (async () => {
        const info = await createModel(tinyOptions(arch, type));
        const model = await llama.loadModel({ modelPath: info.path });
        try {
          check?.(model, info);
          const context = await model.createContext({ contextSize: 256, threads: THREADS });
          try {
            const tokens = model.tokenize('Question: what is 2 + 3?');
            const out = await context.getSequence().controlledEvaluate(
              tokens.map((tk, i) => (i === tokens.length - 1 ? [tk, { generateNext: { logits: true } }] : tk)),
            );
            const map = out.at(-1)?.next?.logits;
            if (!map) throw new Error('no logits returned');
            const logits = new Float64Array(info.nVocab).fill(NaN);
            for (const [tk, v] of map) logits[tk] = v;
            return { info, logits };
          } finally {
            await context.dispose();
          }
        } finally {
          await model.dispose();
        }
      })(),
    );
  }
  return evaluated.get(key)!;
}

function expectedTensorNames(arch: ModelArch, layers: number): string[] {
  const names = ['token_embd.weight', 'output_norm.weight'];
  if (arch === 'llama') names.push('output.weight');
  for (let i = 0; i < layers; i++) {
    for (const n of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down']) names.push(`blk.${i}.${n}.weight`);
    if (arch === 'qwen2') for (const n of ['attn_q', 'attn_k', 'attn_v']) names.push(`blk.${i}.${n}.bias`);
  }
  return names.sort();
}

function expectedParams(arch: ModelArch, nVocab: number): number {
  const { layers, embd, heads, kvHeads, ff } = TINY;
  const kvDim = (embd / heads) * kvHeads;
  const perLayer = 2 * embd + embd * embd * 2 + embd * kvDim * 2 + 3 * embd * ff + (arch === 'qwen2' ? embd + 2 * kvDim : 0);
  return nVocab * embd * (arch === 'llama' ? 2 : 1) + embd + layers * perLayer;
}

for (const arch of ARCHS) {
  for (const type of TYPES) {
    test.serial(`${arch} ${type}: loads in node-llama-cpp, round-trips text, logits finite, varied and close to f32`, async (t) => {
      const { info, logits } = await evaluate(arch, type, (model, info) => {
        t.is(model.vocabularyType, arch === 'llama' ? LlamaVocabularyType.spm : LlamaVocabularyType.bpe);
        t.is([...model.iterateAllTokens()].length, info.nVocab);
        t.is(model.trainContextSize, TINY.ctx);
        t.is(model.embeddingVectorSize, TINY.embd);
        t.deepEqual(model.getWarnings(), []);
        if (arch === 'llama') {
          t.is(model.tokens.bos, 1 as Token);
          t.is(model.tokens.eos, 2 as Token);
          t.true(model.tokens.shouldPrependBosToken);
        } else {
          t.is(model.tokens.eosString, '<|endoftext|>');
          t.false(model.tokens.shouldPrependBosToken);
        }
        for (const text of ROUND_TRIP_TEXTS) {
          const tokens = model.tokenize(text);
          t.is(model.detokenize(tokens), text, `round trip of ${JSON.stringify(text)} via [${tokens.join(',')}]`);
        }
        // merges reach whole words: "the" / " the" and "Question" are single tokens
        t.is(model.tokenize(arch === 'llama' ? 'the' : ' the').length, 1);
        t.is(model.tokenize('Question').length, 1);
      });

      t.is(info.params, expectedParams(arch, info.nVocab));
      t.is(info.nVocab, baseVocabSize(arch === 'llama' ? 'spm' : 'bpe'));
      t.is(info.tokenizer, arch === 'llama' ? 'spm' : 'bpe');
      t.is(info.bytes, (await readFile(info.path)).length);

      const md = await readGgufMetadata(info.path);
      t.is(md.values.get('general.architecture'), arch);
      t.is(md.values.get('general.file_type'), FILE_TYPE[type]);
      t.is(md.values.get(`${arch}.block_count`), TINY.layers);
      t.is(md.values.get(`${arch}.attention.head_count_kv`), TINY.kvHeads);
      t.deepEqual(md.tensors.map((x) => x.name).sort(), expectedTensorNames(arch, TINY.layers));
      for (const tensor of md.tensors) {
        t.is(tensor.type, tensor.ne.length === 1 ? GgmlType.F32 : GGML_OF[type], tensor.name);
      }

      t.true(logits.every(Number.isFinite), 'all logits finite');
      const mean = logits.reduce((a, b) => a + b, 0) / logits.length;
      const std = Math.sqrt(logits.reduce((a, b) => a + (b - mean) ** 2, 0) / logits.length);
      t.true(std > 0.3, `logit std ${std}`);

      // Same seed -> same underlying f32 weights: every 2-D tensor must hold exactly encode(type, f32 weights).
      const refEval = await evaluate(arch, 'f32');
      const [file, refFile] = await Promise.all([readFile(info.path), readFile(refEval.info.path)]);
      const refMd = await readGgufMetadata(refEval.info.path);
      for (const tensor of md.tensors) {
        const r = refMd.tensors.find((x) => x.name === tensor.name)!;
        const f32 = new Float32Array(refFile.buffer.slice(refFile.byteOffset + refMd.dataOffset + r.offset, refFile.byteOffset + refMd.dataOffset + r.offset + r.bytes));
        const stored = file.subarray(md.dataOffset + tensor.offset, md.dataOffset + tensor.offset + tensor.bytes);
        t.true(Buffer.from(encode(tensor.type, f32)).equals(stored), `${tensor.name} is the ${type} encoding of the f32 weights`);
      }

      // ...so quantized logits computed by llama.cpp must track the f32 model's.
      const ref = refEval.logits;
      const refMean = ref.reduce((a, b) => a + b, 0) / ref.length;
      let maxDiff = 0;
      let dot = 0;
      let n1 = 0;
      let n2 = 0;
      for (let i = 0; i < ref.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - ref[i]!));
        dot += (logits[i]! - mean) * (ref[i]! - refMean);
        n1 += (logits[i]! - mean) ** 2;
        n2 += (ref[i]! - refMean) ** 2;
      }
      const corr = dot / Math.sqrt(n1 * n2);
      t.log(`logit std ${std.toFixed(3)}, max |logit - f32 logit| ${maxDiff.toFixed(4)}, correlation ${corr.toFixed(5)}`);
      const bound = { f32: 0, f16: 0.02, q8_0: 0.15, q4_0: 1.2 }[type];
      t.true(maxDiff <= bound, `max diff ${maxDiff} > ${bound}`);
      t.true(corr > (type === 'q4_0' ? 0.9 : 0.995), `correlation ${corr}`);
    });
  }
}

test.serial('same seed gives a byte-identical file, a different seed a different one', async (t) => {
  const a = await createModel(tinyOptions('qwen2', 'q4_0', { seed: 5, out: join(dir, 'seed-a.gguf') }));
  const b = await createModel(tinyOptions('qwen2', 'q4_0', { seed: 5, out: join(dir, 'seed-b.gguf') }));
  const c = await createModel(tinyOptions('qwen2', 'q4_0', { seed: 6, out: join(dir, 'seed-c.gguf') }));
  const [fa, fb, fc] = await Promise.all([a, b, c].map((m) => readFile(m.path)));
  t.true(fa!.equals(fb!));
  t.false(fa!.equals(fc!));
  t.is(fa!.length, fc!.length);
  const md = await readGgufMetadata(a.path);
  const q = md.tensors.find((x) => x.name === 'blk.0.attn_q.weight')!;
  const at = md.dataOffset + q.offset;
  t.false(fa!.subarray(at, at + q.bytes).equals(fc!.subarray(at, at + q.bytes)), 'weights differ across seeds');
  t.false((await readdir(dir)).some((f) => f.includes('.tmp-')), 'no temp files left');
});

for (const arch of ARCHS) {
  test.serial(`${arch}: vocab 32000 gives exactly 32000 distinct tokens that llama.cpp can reach`, async (t) => {
    const base = await createModel(tinyOptions(arch, 'q8_0'));
    const info = await createModel(tinyOptions(arch, 'q8_0', { vocab: 32000 }));
    t.is(info.nVocab, 32000);
    const md = await readGgufMetadata(info.path);
    const tokens = md.values.get('tokenizer.ggml.tokens') as string[];
    t.is(tokens.length, 32000);
    t.is(new Set(tokens).size, 32000);
    t.is((md.values.get('tokenizer.ggml.token_type') as number[]).length, 32000);
    const tokenEmbd = md.tensors.find((x) => x.name === 'token_embd.weight')!;
    t.deepEqual(tokenEmbd.ne, [TINY.embd, 32000]);

    const small = await llama.loadModel({ modelPath: base.path });
    const model = await llama.loadModel({ modelPath: info.path });
    try {
      t.is([...model.iterateAllTokens()].length, 32000);
      // filler pieces are reachable by merges: "dog" is one filler token here, several in the base vocabulary
      const word = arch === 'llama' ? 'dog' : ' dog';
      t.is(model.tokenize(word).length, 1);
      t.true(small.tokenize(word).length > 1);
      for (const text of ROUND_TRIP_TEXTS) t.is(model.detokenize(model.tokenize(text)), text);
      const context = await model.createContext({ contextSize: 64, threads: THREADS });
      const tokensIn = model.tokenize('Answer: 42');
      const out = await context.getSequence().controlledEvaluate(
        tokensIn.map((tk, i) => (i === tokensIn.length - 1 ? [tk, { generateNext: { logits: true } }] : tk)),
      );
      const logits = out.at(-1)?.next?.logits;
      t.is(logits?.size, 32000);
      t.true([...logits!.values()].every(Number.isFinite));
      await context.dispose();
    } finally {
      await model.dispose();
      await small.dispose();
    }
  });
}

const base = () => tinyOptions('llama', 'q8_0', { out: join(dir, 'invalid.gguf') });
const INVALID: [string, Record<string, unknown>, string][] = [
  ['fractional layers', { layers: 1.5 }, 'Expected positive integer for layers but received 1.5 of type number'],
  ['string layers', { layers: '2' }, 'Expected positive integer for layers but received "2" of type string'],
  ['zero embd', { embd: 0 }, 'Expected positive integer for embd but received 0 of type number'],
  ['negative heads', { heads: -4 }, 'Expected positive integer for heads but received -4 of type number'],
  ['missing ff', { ff: undefined }, 'Expected positive integer for ff but received undefined of type undefined'],
  ['NaN ctx', { ctx: NaN }, 'Expected positive integer for ctx but received NaN of type number'],
  ['huge ctx', { ctx: 2 ** 40 }, 'Expected integer <= 2147483647 for ctx but received 1099511627776 of type number'],
  ['unknown arch', { arch: 'gpt2' }, "Expected one of 'llama', 'qwen2', 'qwen3', 'gemma', 'gemma2', 'phi3' for arch but received \"gpt2\" of type string"],
  ['sliding window on llama', { slidingWindow: 8 }, 'Expected no value (slidingWindow is for gemma2 and phi3) for slidingWindow but received 8 of type number'],
  ['soft-cap on llama', { attnSoftcap: 8 }, 'Expected no value (attnSoftcap is for gemma2) for attnSoftcap but received 8 of type number'],
  ['unknown type', { type: 'q5_0' }, "Expected one of 'f32', 'f16', 'q8_0', 'q4_0' for type but received \"q5_0\" of type string"],
  ['embd not divisible by heads', { embd: 66, type: 'f32' }, 'Expected multiple of heads (4) for embd but received 66 of type number'],
  ['kvHeads not dividing heads', { kvHeads: 3 }, 'Expected divisor of heads (4) for kvHeads but received 3 of type number'],
  ['odd head dim', { embd: 12, type: 'f32' }, 'Expected value giving an even head size embd/heads for rope (embd/heads = 3) for heads but received 4 of type number'],
  ['q8_0 embd not multiple of 32', { embd: 48 }, 'Expected multiple of 32 (q8_0 block size; rows of embd elements) for embd but received 48 of type number'],
  ['q4_0 ff not multiple of 32', { type: 'q4_0', ff: 100 }, 'Expected multiple of 32 (q4_0 block size; ffn_down rows of ff elements) for ff but received 100 of type number'],
  ['vocab below base', { vocab: 10 }, `Expected integer in [${baseVocabSize('spm')}, 1048576] (tokenizer base size to 2^20) for vocab but received 10 of type number`],
  ['negative seed', { seed: -1 }, 'Expected non-negative safe integer for seed but received -1 of type number'],
  ['fractional seed', { seed: 0.5 }, 'Expected non-negative safe integer for seed but received 0.5 of type number'],
  ['empty out', { out: '' }, 'Expected non-empty path string for out but received "" of type string'],
  ['zero ropeTheta', { ropeTheta: 0 }, 'Expected positive finite number for ropeTheta but received 0 of type number'],
  ['NaN rmsEps', { rmsEps: NaN }, 'Expected positive finite number for rmsEps but received NaN of type number'],
  ['misspelt option', { layer: 2 }, 'Expected one of arch, layers, embd, heads, kvHeads, ff, ctx, vocab, vocabFrom, ropeFreqs, type, seed, out, ropeTheta, rmsEps, name, slidingWindow, attnSoftcap, finalSoftcap for option name but received "layer" of type string'],
];

test('invalid options throw InvalidArgumentError with the exact message and write nothing', async (t) => {
  for (const [label, patch, message] of INVALID) {
    const options = { ...base(), ...patch };
    for (const key of Object.keys(patch)) if (patch[key] === undefined) delete (options as Record<string, unknown>)[key];
    const err = await t.throwsAsync(createModel(options as unknown as CreateModelOptions), { instanceOf: InvalidArgumentError }, label);
    t.is(err?.code, 'ERR_W2S_INVALID_ARGUMENT', label);
    t.is(err?.message, message, label);
  }
  const err = await t.throwsAsync(createModel(null as unknown as CreateModelOptions), { instanceOf: InvalidArgumentError });
  t.is(err?.message, 'Expected options object for options but received null of type null');
  t.false((await readdir(dir)).some((f) => f.startsWith('invalid.gguf')));
});

test('an unwritable output fails before writing and leaves neither the output nor a temp file', async (t) => {
  const out = join(dir, 'missing-subdir', 'model.gguf');
  await t.throwsAsync(createModel(tinyOptions('llama', 'f16', { out })), { code: 'ERR_W2S_OUTPUT', message: /folder of out .* does not exist/ });
  t.false((await readdir(dir)).some((f) => f.includes('.tmp-')));
});

// The three architectures added for real models, as the bundled converter writes them (conversion/gemma.py,
// conversion/phi.py): node-llama-cpp loads each without a warning and evaluates finite, varied logits.
const CONVERTER: Record<'gemma' | 'gemma2' | 'phi3', { keys: string[]; absent: string[]; tensors: string[]; noTensors: string[] }> = {
  gemma: { keys: ['gemma.attention.key_length', 'gemma.attention.value_length'], absent: ['gemma.rope.freq_base'], tensors: ['blk.0.ffn_gate.weight'], noTensors: ['output.weight'] },
  gemma2: {
    keys: ['gemma2.attn_logit_softcapping', 'gemma2.final_logit_softcapping', 'gemma2.attention.sliding_window'], absent: [],
    tensors: ['blk.1.post_attention_norm.weight', 'blk.1.post_ffw_norm.weight'], noTensors: ['output.weight'],
  },
  phi3: {
    keys: ['phi3.rope.scaling.original_context_length', 'phi3.attention.sliding_window', 'phi3.rope.dimension_count'], absent: [],
    tensors: ['blk.0.attn_qkv.weight', 'output.weight'], noTensors: ['blk.0.attn_q.weight', 'blk.0.ffn_gate.weight'],
  },
};
for (const [arch, want] of Object.entries(CONVERTER) as [keyof typeof CONVERTER, (typeof CONVERTER)[keyof typeof CONVERTER]][]) {
  test.serial(`${arch}: the converter's keys and tensor names; node-llama-cpp loads it without warnings and gives finite, varied logits`, async (t) => {
    const info = await createModel(tinyOptions(arch, 'q8_0'));
    const md = await readGgufMetadata(info.path);
    for (const k of want.keys) t.not(md.values.get(k), undefined, k);
    for (const k of want.absent) t.is(md.values.get(k), undefined, k);
    const names = md.tensors.map((x) => x.name);
    for (const n of want.tensors) t.true(names.includes(n), n);
    for (const n of want.noTensors) t.false(names.includes(n), n);
    if (arch === 'phi3') {
      const hd = TINY.embd / TINY.heads;
      t.deepEqual(md.tensors.find((x) => x.name === 'blk.0.attn_qkv.weight')!.ne, [TINY.embd, hd * (TINY.heads + 2 * TINY.kvHeads)]);
      t.deepEqual(md.tensors.find((x) => x.name === 'blk.0.ffn_up.weight')!.ne, [TINY.embd, 2 * TINY.ff]);
    }
    const model = await llama.loadModel({ modelPath: info.path });
    try {
      t.deepEqual(model.getWarnings(), []);
      const context = await model.createContext({ contextSize: 64, threads: THREADS });
      const tokensIn = model.tokenize('Question: what is 2 + 3?');
      const out = await context.getSequence().controlledEvaluate(tokensIn.map((tk, i) => (i === tokensIn.length - 1 ? [tk, { generateNext: { logits: true } }] : tk)));
      const logits = [...out.at(-1)!.next!.logits!.values()];
      const mean = logits.reduce((a, b) => a + b, 0) / logits.length;
      const std = Math.sqrt(logits.reduce((a, b) => a + (b - mean) ** 2, 0) / logits.length);
      t.log(`${arch}: ${info.params} parameters, logit std ${std.toFixed(3)}`);
      t.true(logits.every(Number.isFinite) && std > 0.3);
      await context.dispose();
    } finally {
      await model.dispose();
    }
  });
}
