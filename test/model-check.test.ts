// The metadata gate (lib/model/check.ts) and the trainer's own checks: valid-looking GGUFs with one bad value
// are refused with a typed error naming the key, in loadModel, model.loadLora, trainSft and the native
// trainer, instead of a GGML_ASSERT aborting the process. Loads run in a child process (an abort must fail
// the test, not kill ava).
import test from 'ava';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdapterError, UnsupportedModelError } from '../lib/errors.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { GgufValueType } from '../lib/gguf/types.js';
import { checkAdapterMetadata, checkModelMetadata, LLAMA_MAX_LAYERS } from '../lib/model/check.js';
import { describeChildEnd, runLoadChild, type ChildAction, type ChildCase } from './helpers/child-runner.js';
import { editGguf, type GgufEdits } from './helpers/gguf-edit.js';
import { writeRandomLora } from './helpers/lora.js';
import { TMP, tinyModel } from './helpers/models.js';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/models');
const STORIES = path.join(SHARED, 'stories260K.gguf');
const VOCABS = ['deepseek-llm', 'falcon', 'gpt-2', 'llama-spm', 'phi-3', 'starcoder'].map((n) => path.join(SHARED, 'vocab', `ggml-vocab-${n}.gguf`));
const f32 = (value: number) => ({ value, type: GgufValueType.FLOAT32 });

let n = 0;
const variant = (src: string, edits: GgufEdits) => editGguf(src, path.join(TMP, `bad-${n++}.gguf`), edits);

interface Expect {
  cls: 'UnsupportedModelError' | 'AdapterError';
  message: RegExp;
}
interface BadCase {
  id: string;
  file: () => Promise<{ model: string; lora?: string }>;
  actions: readonly ChildAction[];
  expect: Expect | Partial<Record<ChildAction, Expect>>;
  timeoutMs?: number;
}

const um = (message: RegExp): Expect => ({ cls: 'UnsupportedModelError', message });
const ad = (message: RegExp): Expect => ({ cls: 'AdapterError', message });
const model = (edits: GgufEdits, config = {}) => async () => ({ model: await variant(await tinyModel(config), edits) });
// tiny llama: 2 layers, n_embd 64, 4 heads of 16, 2 KV heads, n_ff 128.
const LOADS = ['sample', 'score'] as const;
const ALL = ['sample', 'score', 'train', 'native-train'] as const;

const CASES: BadCase[] = [
  ...[0, 513, 1000].map((v) => ({
    id: `block_count ${v}`, file: model({ kv: { 'llama.block_count': v } }), actions: ALL,
    expect: { sample: um(new RegExp(`llama\\.block_count is ${v}, expected an integer in \\[1, 512\\]`)), score: um(/llama\.block_count is/), train: um(/llama\.block_count is/), 'native-train': um(/llama\.block_count is \d+, expected an integer in \[1, 512\].*cannot be trained/) },
  })),
  ...[Number.NaN, -1].map((v) => ({
    id: `rms epsilon ${v}`, file: model({ kv: { 'llama.attention.layer_norm_rms_epsilon': f32(v) } }), actions: ALL,
    expect: um(new RegExp(`llama\\.attention\\.layer_norm_rms_epsilon is ${v}`, 'i')),
  })),
  { id: 'qwen2 rms epsilon NaN', file: model({ kv: { 'qwen2.attention.layer_norm_rms_epsilon': f32(Number.NaN) } }, { arch: 'qwen2' }), actions: ALL, expect: um(/qwen2\.attention\.layer_norm_rms_epsilon is NaN/i) },
  ...[0, 2 ** 31].map((v) => ({
    id: `context_length ${v}`, file: model({ kv: { 'llama.context_length': v } }), actions: LOADS,
    expect: um(new RegExp(`llama\\.context_length is ${v}, expected an integer in \\[1, 2147483647\\]; the file is damaged or was converted wrongly`)),
  })),
  ...[0, 17, 1000, 8].map((v) => ({
    // The native trainer accepts a partial rope (8 of 16); llama.cpp does not for llama, so the gate refuses it.
    id: `rope.dimension_count ${v}`, file: model({ kv: { 'llama.rope.dimension_count': v } }), actions: v === 8 ? (['sample', 'score', 'train'] as const) : ALL, timeoutMs: 60_000,
    expect: {
      sample: um(/llama\.rope\.dimension_count is/), score: um(/llama\.rope\.dimension_count is/), train: um(/llama\.rope\.dimension_count is/),
      'native-train': um(/llama\.rope\.dimension_count is \d+.*cannot be trained/),
    },
  })),
  { id: 'head_count_kv 3 of 4', file: model({ kv: { 'llama.attention.head_count_kv': 3 } }), actions: ALL, expect: um(/llama\.attention\.head_count_kv is 3/) },
  { id: 'head_count_kv 0', file: model({ kv: { 'llama.attention.head_count_kv': 0 } }), actions: ALL, expect: um(/llama\.attention\.head_count_kv is 0/) },
  { id: 'architecture not a string', file: model({ kv: { 'general.architecture': { value: 7, type: GgufValueType.UINT32 } } }), actions: ['score', 'train', 'native-train'], expect: { score: um(/general\.architecture is 7, expected a string/), train: um(/general\.architecture is 7/), 'native-train': um(/unsupported architecture ''/) } },
  { id: 'block_count 3, tensors for 2', file: model({ kv: { 'llama.block_count': 3 } }), actions: LOADS, expect: um(/llama\.block_count is 3 but the file has no tensors for layer 2/) },
  // Tensors: llama.cpp checks shapes itself (a typed error); the trainer has its own checks.
  { id: 'zero-dim attn_k', file: model({ shapes: { 'blk.0.attn_k.weight': [64, 0] } }), actions: ALL, expect: um(/blk\.0\.attn_k\.weight has shape \[64, 0\] with a zero dimension/) },
  ...([
    ['blk.0.attn_q.weight', [64, 48], /blk\.0\.attn_q\.weight has shape \[64, 48\], expected \[64, 64\]/],
    ['blk.1.attn_v.weight', [64, 64], /blk\.1\.attn_v\.weight has shape \[64, 64\], expected \[64, 32\]/],
    ['blk.1.attn_output.weight', [32, 64], /blk\.1\.attn_output\.weight has shape \[32, 64\], expected \[64, 64\]/],
    ['blk.0.ffn_down.weight', [64, 128], /blk\.0\.ffn_down\.weight has shape \[64, 128\], expected \[128, 64\]/],
    ['blk.0.ffn_gate.weight', [64, 96], /blk\.0\.ffn_gate\.weight has shape \[64, 96\], expected \[64, 128\]/],
    ['blk.0.attn_norm.weight', [32], /blk\.0\.attn_norm\.weight has shape \[32\], expected \[64\]/],
    ['output_norm.weight', [64, 2], /output_norm\.weight has shape \[64, 2\], expected \[64\]/],
    ['output.weight', [32, 1000], /output\.weight has shape \[32, 1000\]/],
  ] as const).map(([name, ne, message]) => ({
    id: `shape ${name} [${ne.join(', ')}]`, file: model({ shapes: { [name]: [...ne] } }), actions: ['score', 'train', 'native-train'] as const,
    expect: { train: um(message), 'native-train': um(message) },
  })),
  // Integer and activation-only types have no matmul: a crash in ggml, not an error.
  { id: 'ffn_up stored as I32', file: model({ types: { 'blk.0.ffn_up.weight': 26 } }), actions: ['score', 'train', 'native-train'], expect: { score: um(/blk\.0\.ffn_up\.weight has type I32, which ggml cannot multiply with/), train: um(/has type I32/), 'native-train': um(/frozen weights of type i32 cannot be trained/) } },
  { id: 'ffn_up stored as Q8_K', file: model({ types: { 'blk.0.ffn_up.weight': 15 } }, { embd: 256, heads: 4, kvHeads: 2, ff: 256 }), actions: ['score', 'native-train'], expect: { score: um(/has type Q8_K/), 'native-train': um(/frozen weights of type q8_K cannot be trained/) } },
  // F16/BF16 norm vectors abort llama.cpp's CPU ggml_mul (F32 × F16); the trainer widens them (see below).
  { id: 'attn_norm stored as F16', file: model({ types: { 'blk.0.attn_norm.weight': 1 } }), actions: ['score', 'train'], expect: um(/tensor blk\.0\.attn_norm\.weight is a vector stored as F16; llama\.cpp needs vectors \(norms, biases\) in F32/) },
  { id: 'qwen2 q bias [32]', file: model({ shapes: { 'blk.0.attn_q.bias': [32] } }, { arch: 'qwen2' }), actions: ['score', 'train'], expect: { train: um(/blk\.0\.attn_q\.bias has shape \[32\], expected \[64\]/) } },
  { id: 'qwen3 k norm [8]', file: model({ shapes: { 'blk.1.attn_k_norm.weight': [8] } }, { arch: 'qwen3' }), actions: ['score', 'train'], expect: { train: um(/blk\.1\.attn_k_norm\.weight has shape \[8\], expected \[16\]/) } },
  // Adapters.
  ...(['lora', 'train', 'native-train', 'merge'] as const).map((action) => ({
    id: `rank-0 adapter (${action})`, actions: [action],
    file: async () => {
      const base = await tinyModel();
      return { model: base, lora: await writeRandomLora(base, path.join(TMP, `rank0-${action}.gguf`), { targets: { 0: ['attn_q'], 1: ['ffn_up'] }, rank: 0 }) };
    },
    expect: { lora: ad(/lora_a has shape \[64, 0\] with a zero dimension/), train: ad(/zero dimension/), merge: ad(/zero dimension/), 'native-train': ad(/rank 0 \(zero-size lora_a\/lora_b\)/) },
  })),
  {
    id: 'adapter with mixed ranks (train)', actions: ['train', 'native-train'],
    file: async () => {
      const base = await tinyModel();
      const good = await writeRandomLora(base, path.join(TMP, 'mixed-a.gguf'), { targets: { 0: ['attn_q'], 1: ['attn_q'] }, rank: 4 });
      return { model: base, lora: await editGguf(good, path.join(TMP, 'mixed.gguf'), { shapes: { 'blk.1.attn_q.weight.lora_a': [64, 2], 'blk.1.attn_q.weight.lora_b': [2, 64] } }) };
    },
    expect: { train: ad(/blk\.1\.attn_q\.weight\.lora_a has rank 2 but blk\.0\.attn_q\.weight\.lora_a has rank 4/), 'native-train': ad(/has rank 2 but .* has rank 4; training continues an adapter of one rank/) },
  },
  {
    id: 'adapter lora_b missing', actions: ['lora', 'native-train'],
    file: async () => {
      const base = await tinyModel();
      const good = await writeRandomLora(base, path.join(TMP, 'nob-a.gguf'), { targets: { 0: ['attn_q', 'attn_k'] } });
      return { model: base, lora: await editGguf(good, path.join(TMP, 'nob.gguf'), { shapes: { 'blk.0.attn_k.weight.lora_b': null } }) };
    },
    expect: { lora: ad(/blk\.0\.attn_k\.weight\.lora_a has no matching blk\.0\.attn_k\.weight\.lora_b/), 'native-train': ad(/has no blk\.0\.attn_k\.weight\.lora_b/) },
  },
  {
    id: 'adapter ranks of a and b disagree', actions: ['lora', 'native-train'],
    file: async () => {
      const base = await tinyModel();
      const good = await writeRandomLora(base, path.join(TMP, 'ab-a.gguf'), { targets: { 0: ['attn_q'] }, rank: 4 });
      return { model: base, lora: await editGguf(good, path.join(TMP, 'ab.gguf'), { shapes: { 'blk.0.attn_q.weight.lora_b': [3, 64] } }) };
    },
    expect: { lora: ad(/disagree on the rank \(4 vs 3\)/), 'native-train': ad(/has rank 4 but .*lora_b has 3 rows/) },
  },
  {
    id: 'adapter alpha NaN / not f32', actions: ['lora', 'native-train'],
    file: async () => {
      const base = await tinyModel();
      const good = await writeRandomLora(base, path.join(TMP, 'alpha-a.gguf'), { targets: { 0: ['attn_q'] } });
      return { model: base, lora: await editGguf(good, path.join(TMP, 'alpha.gguf'), { kv: { 'adapter.lora.alpha': { value: 8, type: GgufValueType.UINT32 } } }) };
    },
    expect: { lora: ad(/adapter\.lora\.alpha is 8, expected a finite FLOAT32 \(it is stored as UINT32\)/), 'native-train': ad(/adapter\.lora\.alpha is not a finite FLOAT32/) },
  },
];

function expectationFor(c: BadCase, action: ChildAction): Expect | undefined {
  const e = c.expect as Expect & Partial<Record<ChildAction, Expect>>;
  return e.cls ? e : e[action];
}

test('valid-looking files with one bad value are refused with a typed error naming the key, never an abort or a hang', async (t) => {
  const cases: ChildCase[] = [];
  const byId = new Map<string, Expect | undefined>();
  for (const c of CASES) {
    const f = await c.file();
    for (const action of c.actions) {
      const id = `${c.id} / ${action}`;
      cases.push({ id, action, model: f.model, ...(f.lora ? { lora: f.lora } : {}), outDir: TMP, ...(c.timeoutMs ? { timeoutMs: c.timeoutMs } : {}) });
      byId.set(id, expectationFor(c, action));
    }
  }
  const run = await runLoadChild(cases, TMP, 240_000);
  t.log(`${cases.length} loads in ${(run.ms / 1000).toFixed(1)} s`);
  t.is(run.code, 0, describeChildEnd(run));
  // Every mismatch at once (one line per case), rather than ava's first failed assertion.
  const problems: string[] = [];
  for (const c of cases) {
    const r = run.results.get(c.id);
    const e = byId.get(c.id);
    if (!r) problems.push(`${c.id}: no result`);
    else if (r.ok) problems.push(`${c.id}: loaded/trained without an error`);
    // Cases without an expectation (shape errors llama.cpp reports itself) need only a typed error.
    else if (!r.typed) problems.push(`${c.id}: untyped ${r.name}: ${r.message}`);
    else if (e && (r.name !== e.cls || !e.message.test(r.message!))) problems.push(`${c.id}: ${r.name}: ${r.message} (expected ${e.cls} ${e.message})`);
  }
  t.deepEqual(problems, []);
});

test('the unmodified models, stories260K, an adapter and the vocab-only files still load, sample and train', async (t) => {
  const llama = await tinyModel();
  const qwen2 = await tinyModel({ arch: 'qwen2' });
  const qwen3 = await tinyModel({ arch: 'qwen3' });
  const lora = await writeRandomLora(llama, path.join(TMP, 'good.lora.gguf'), { targets: { 0: ['attn_q', 'ffn_down'], 1: ['attn_v'] } });
  const cases: ChildCase[] = [
    ...[llama, qwen2, qwen3, STORIES].flatMap((m, i) => (['sample', 'score'] as const).map((action) => ({ id: `good ${i} ${action}`, action, model: m }))),
    ...[llama, qwen2, STORIES].map((m, i) => ({ id: `good ${i} train`, action: 'train' as const, model: m, outDir: TMP })),
    { id: 'good lora', action: 'lora', model: llama, lora },
    { id: 'good lora train', action: 'train', model: llama, lora, outDir: TMP },
    { id: 'good lora merge', action: 'merge', model: llama, lora, outDir: TMP },
    ...VOCABS.map((m) => ({ id: `vocab ${path.basename(m)}`, action: 'vocab' as const, model: m })),
    // The trainer reads F16/BF16 vectors as F32 (the gate still refuses them for llama.cpp's sake).
    { id: 'F16 and BF16 norms (native trainer)', action: 'native-train', model: await variant(llama, { types: { 'blk.0.attn_norm.weight': 1, 'output_norm.weight': 30 } }) },
  ];
  const run = await runLoadChild(cases, TMP, 240_000);
  t.is(run.code, 0, describeChildEnd(run));
  for (const c of cases) {
    const r = run.results.get(c.id);
    t.true(r?.ok, `${c.id}: ${r?.name}: ${r?.message}`);
  }
  t.log(`${cases.length} good loads in ${(run.ms / 1000).toFixed(1)} s`);
});

test('the gate itself: exact messages, and what real models write is accepted', async (t) => {
  const llama = await tinyModel();
  const meta = await readGgufMetadata(llama);
  t.notThrows(() => checkModelMetadata(meta, llama));
  const stories = await readGgufMetadata(STORIES);
  t.notThrows(() => checkModelMetadata(stories, STORIES));
  for (const v of VOCABS) {
    const vocab = await readGgufMetadata(v);
    t.notThrows(() => checkModelMetadata(vocab, v, 'vocab'), v);
  }

  const with_ = async (edits: GgufEdits, config = {}) => readGgufMetadata(await variant(await tinyModel(config), edits));
  const ctx0 = await with_({ kv: { 'llama.context_length': 0 } });
  t.throws(() => checkModelMetadata(ctx0, 'model.gguf'), {
    instanceOf: UnsupportedModelError,
    message: 'model.gguf: llama.context_length is 0, expected an integer in [1, 2147483647]; the file is damaged or was converted wrongly (convert it again or download it again)',
  });
  // Vocab-only loads skip the tensor checks and the required keys llama.cpp does not read for them.
  const noLayers = await with_({ kv: { 'llama.block_count': null } });
  t.notThrows(() => checkModelMetadata(noLayers, 'v.gguf', 'vocab'));
  t.throws(() => checkModelMetadata(noLayers, 'v.gguf'), { message: /llama\.block_count is missing/ });
  t.is(LLAMA_MAX_LAYERS, 512);
  const max = await with_({ kv: { 'llama.block_count': 512 } });
  t.throws(() => checkModelMetadata(max, 'm.gguf'), { message: /block_count is 512 but the file has no tensors for layer 2/ });
  // What converters write for attention-free or FFN-free models (Mamba: head_count 0, feed_forward_length 0).
  const dense = Object.fromEntries([0, 1].flatMap((i) => ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((p) => [`blk.${i}.${p}.weight`, null])));
  const mambaKv = { 'general.architecture': 'mamba', 'mamba.block_count': 2, 'mamba.attention.head_count': 0, 'mamba.feed_forward_length': 0, 'mamba.embedding_length': 64, 'mamba.context_length': 1 << 20 };
  const mamba = await with_({ kv: mambaKv, shapes: dense });
  t.notThrows(() => checkModelMetadata(mamba, 'mamba.gguf'));
  const withFfn = await with_({ kv: mambaKv });
  t.throws(() => checkModelMetadata(withFfn, 'm.gguf'), { message: /mamba\.feed_forward_length is 0, expected a positive integer \(the layers have feed-forward weights\)/ });
  // Per-layer KV head arrays with 0 for recurrent layers (hybrid models).
  const hybrid = await with_({ kv: { 'llama.attention.head_count_kv': { value: [0, 2], type: GgufValueType.ARRAY, itemType: GgufValueType.UINT32 } as never } });
  t.notThrows(() => checkModelMetadata(hybrid, 'hybrid.gguf'));
  // A partial rope is fine where llama.cpp supports it (phi2-style), not for llama.
  const partial = await with_({ kv: { 'general.architecture': 'phi2', 'phi2.block_count': 2, 'phi2.embedding_length': 64, 'phi2.attention.head_count': 4, 'phi2.rope.dimension_count': 8 } });
  t.notThrows(() => checkModelMetadata(partial, 'phi2.gguf'));
  const rope8 = await with_({ kv: { 'llama.rope.dimension_count': 8 } });
  t.throws(() => checkModelMetadata(rope8, 'm.gguf'), { message: /llama\.rope\.dimension_count is 8, expected 16, the head size/ });
  const scaling = await with_({ kv: { 'llama.rope.scaling.type': 'foo' } });
  t.throws(() => checkModelMetadata(scaling, 'm.gguf'), { message: /rope\.scaling\.type is "foo", expected one of none, linear, yarn, longrope/ });
  const experts = await with_({ kv: { 'llama.expert_count': 4, 'llama.expert_used_count': 0 } });
  t.throws(() => checkModelMetadata(experts, 'm.gguf'), { message: /expert_used_count is 0/ });
  // A split model's first file holds only some layers.
  const split = await with_({ kv: { 'llama.block_count': 4, 'split.count': { value: 2, type: GgufValueType.UINT16 } } });
  t.notThrows(() => checkModelMetadata(split, 'm-00001-of-00002.gguf'));
  // An adapter passed as a model, and a model passed as an adapter.
  const lora = await writeRandomLora(llama, path.join(TMP, 'gate.lora.gguf'), { targets: { 0: ['attn_q'] } });
  const loraMeta = await readGgufMetadata(lora);
  t.notThrows(() => checkAdapterMetadata(loraMeta, lora));
  t.throws(() => checkModelMetadata(loraMeta, lora), { instanceOf: UnsupportedModelError, message: /is a LoRA adapter/ });
  t.throws(() => checkAdapterMetadata(meta, llama), { instanceOf: AdapterError, message: /general\.type is "model", not "adapter"/ });
});
