// The metadata gate: checks a parsed GGUF's hyperparameters and tensor table before llama.cpp or the trainer
// sees the file, because there a bad value is a GGML_ASSERT that aborts the whole process. It does not check
// tensor shapes against the hyperparameters: llama.cpp does that (as an error) and so does the trainer.
import { AdapterError, UnsupportedModelError } from '../errors.js';
import type { GgufMetadata } from '../gguf/reader.js';
import { GGML_TYPE_INFO, GgufValueType, type GgufKv, type GgufScalar } from '../gguf/types.js';

/**
 * What the file is loaded as: a model (weights), a vocabulary-only load (no tensors needed), an adapter for
 * llama.cpp, or an adapter the trainer continues (one rank for every pair).
 */
export type GgufPurpose = 'model' | 'vocab' | 'adapter' | 'train-adapter';

/** llama.cpp src/llama-hparams.h LLAMA_MAX_LAYERS / LLAMA_MAX_EXPERTS: load_hparams asserts below them. */
export const LLAMA_MAX_LAYERS = 512;
export const LLAMA_MAX_EXPERTS = 1024;
// llama_model_n_ctx_train() returns int32: a larger u32 context length comes back negative.
const MAX_CONTEXT = 0x7fffffff;
// Sanity bounds far above any released model, so that products of them stay exact and allocatable.
const MAX_EMBD = 1 << 20;
const MAX_FF = 1 << 24;
const MAX_HEADS = 1 << 16;

/**
 * Architectures whose llama.cpp graph asserts n_rot == head_dim_k == head_dim_v (an active
 * GGML_ASSERT(n_embd_head == n_rot) in src/models/<arch>.cpp, mapped through the factory in llama-model.cpp):
 * a partial rope there is an abort, not an error. ROPE_K_ARCHS assert only n_rot == head_dim_k.
 */
const FULL_ROPE_ARCHS = new Set([
  'apertus', 'arcee', 'arctic', 'baichuan', 'chameleon', 'codeshell', 'cogvlm', 'cohere2moe', 'dbrx', 'deci', 'deepseek',
  'dots1', 'dream', 'ernie4_5', 'ernie4_5-moe', 'exaone', 'falcon', 'granite', 'granite_swa', 'graniteswitch', 'grok',
  'grovemoe', 'hunyuan-moe', 'hunyuan_vl', 'hy_v3', 'internlm2', 'jais2', 'llada', 'llada-moe', 'llama', 'llama4',
  'maincoder', 'mellum', 'mistral3', 'olmo', 'olmo2', 'olmoe', 'orion', 'paddleocr', 'pangu-embedded', 'plamo',
  'pockettts', 'qwen2', 'qwen2moe', 'qwen2vl', 'qwen3', 'qwen3moe', 'qwen3vl', 'qwen3vlmoe', 'rnd1', 'seed_oss',
  'smallthinker', 'smollm3', 'starcoder2', 'xverse',
]);
const ROPE_K_ARCHS = new Set(['exaone-moe', 'exaone4', 'talkie']);
const ROPE_SCALING_TYPES = ['none', 'linear', 'yarn', 'longrope']; // llama-model.cpp LLAMA_ROPE_SCALING_TYPES

/**
 * ggml types the CPU backend has no dot product for (ggml-cpu.c type_traits_cpu without vec_dot): integer
 * data, F64, and the activation-only Q8_1 / Q8_K. A weight of one of them is a crash, not an error.
 */
const NOT_WEIGHT_TYPES = new Map([[9, 'Q8_1'], [15, 'Q8_K'], [24, 'I8'], [25, 'I16'], [26, 'I32'], [27, 'I64'], [28, 'F64']]);

const INTEGER_TYPES = new Set([
  GgufValueType.UINT8, GgufValueType.INT8, GgufValueType.UINT16, GgufValueType.INT16, GgufValueType.UINT32,
  GgufValueType.INT32, GgufValueType.UINT64, GgufValueType.INT64,
]);
const FLOAT_TYPES = new Set([GgufValueType.FLOAT32, GgufValueType.FLOAT64]);

function show(v: GgufScalar | ArrayLike<GgufScalar>): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'object') return `an array of ${v.length} values`;
  return String(v);
}

/** Reads typed values out of one file's KVs; every refusal names the file, the key and the value. */
class Gate {
  readonly kv: Map<string, GgufKv>;

  constructor(
    readonly meta: GgufMetadata,
    readonly file: string,
    private readonly make: (message: string) => Error,
    private readonly advice: string,
  ) {
    this.kv = new Map(meta.kv.map((e) => [e.key, e]));
  }

  fail(what: string): never {
    throw this.make(`${this.file}: ${what}; ${this.advice}`);
  }

  bad(key: string, value: GgufScalar | ArrayLike<GgufScalar>, expected: string): never {
    this.fail(`${key} is ${show(value)}, expected ${expected}`);
  }

  /** A string KV (other types make llama.cpp's gguf_get_val_str assert); undefined when absent. */
  string(key: string, required = false): string | undefined {
    const e = this.kv.get(key);
    if (!e) {
      if (required) this.fail(`${key} is missing`);
      return undefined;
    }
    if (e.type !== GgufValueType.STRING) this.bad(key, e.value, `a string (it is stored as ${GgufValueType[e.type]})`);
    return e.value as string;
  }

  /**
   * Integer values of `key` (one for a scalar, one per layer for an array), each in [min, max];
   * undefined when absent. `scalar` refuses arrays.
   */
  integers(key: string, min: number, max: number, scalar = false): number[] | undefined {
    const e = this.kv.get(key);
    if (!e) return undefined;
    const range = `an integer in [${min}, ${max}]`;
    const itemType = e.type === GgufValueType.ARRAY ? e.itemType : e.type;
    if (e.type === GgufValueType.ARRAY && scalar) this.bad(key, e.value, range);
    if (!INTEGER_TYPES.has(itemType)) this.bad(key, e.value, `${range} (it is stored as ${GgufValueType[itemType]})`);
    const items = e.type === GgufValueType.ARRAY ? Array.from(e.value) : [e.value];
    return items.map((raw, i) => {
      const v = typeof raw === 'bigint' ? (raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : Number.NaN) : Number(raw);
      if (!(v >= min && v <= max)) this.bad(e.type === GgufValueType.ARRAY ? `${key}[${i}]` : key, raw, range);
      return v;
    });
  }

  integer(key: string, min: number, max: number): number | undefined {
    return this.integers(key, min, max, true)?.[0];
  }

  /** Float values of `key` (scalar or array), each finite and inside (min, max) (open) or [min, max]. */
  floats(key: string, min: number, max: number, open: boolean): number[] | undefined {
    const e = this.kv.get(key);
    if (!e) return undefined;
    const range = open ? `a finite number in (${min}, ${max})` : `a finite number in [${min}, ${max}]`;
    const itemType = e.type === GgufValueType.ARRAY ? e.itemType : e.type;
    if (!FLOAT_TYPES.has(itemType)) this.bad(key, e.value, `${range} (it is stored as ${GgufValueType[itemType]})`);
    const items = e.type === GgufValueType.ARRAY ? Array.from(e.value) : [e.value];
    return items.map((raw, i) => {
      const v = raw as number;
      const inside = Number.isFinite(v) && (open ? v > min && v < max : v >= min && v <= max);
      if (!inside) this.bad(e.type === GgufValueType.ARRAY ? `${key}[${i}]` : key, raw, range);
      return v;
    });
  }
}

const MODEL_ADVICE = 'the file is damaged or was converted wrongly (convert it again or download it again)';
const ADAPTER_ADVICE = 'the adapter file is damaged or was written wrongly (export or convert it again)';

/**
 * Checks a model's metadata (and, unless `purpose` is 'vocab', its tensor table) against what llama.cpp can
 * load without aborting. Throws UnsupportedModelError naming the file, the key and the value.
 */
export function checkModelMetadata(meta: GgufMetadata, file: string, purpose: 'model' | 'vocab' = 'model'): void {
  const g: Gate = new Gate(meta, file, (m) => new UnsupportedModelError(m), MODEL_ADVICE);
  const arch = g.string('general.architecture', true)!;
  if (arch.length === 0) g.bad('general.architecture', arch, 'a non-empty architecture name');
  if (meta.values.get('general.type') === 'adapter') {
    throw new UnsupportedModelError(`${file} is a LoRA adapter (general.type is "adapter"), not a model; load the base model and pass this file to model.loadLora()`);
  }
  const full = purpose === 'model';
  const a = `${arch}.`;

  const blocks = g.integer(`${a}block_count`, 1, LLAMA_MAX_LAYERS);
  if (full && blocks === undefined) g.fail(`${a}block_count is missing`);
  if (blocks !== undefined) g.integer(`${a}nextn_predict_layers`, 0, blocks);
  g.integer(`${a}context_length`, 1, MAX_CONTEXT);
  const embd = g.integer(`${a}embedding_length`, 1, MAX_EMBD);
  const ff = g.integers(`${a}feed_forward_length`, 0, MAX_FF);
  const heads = g.integers(`${a}attention.head_count`, 0, MAX_HEADS);
  const kvHeads = g.integers(`${a}attention.head_count_kv`, 0, MAX_HEADS);
  const keyLength = g.integer(`${a}attention.key_length`, 1, MAX_HEADS);
  const valueLength = g.integer(`${a}attention.value_length`, 1, MAX_HEADS);
  // llama.cpp divides by the KV head count (n_gqa) and broadcasts K over Q heads: it must divide the heads.
  // Per-layer arrays may hold 0 for layers without attention (hybrid recurrent models).
  if (heads && kvHeads) {
    const n = Math.max(heads.length, kvHeads.length);
    for (let i = 0; i < n; i++) {
      const h = heads[Math.min(i, heads.length - 1)]!;
      const k = kvHeads[Math.min(i, kvHeads.length - 1)]!;
      const key = `${a}attention.head_count_kv${kvHeads.length > 1 ? `[${i}]` : ''}`;
      if (h > 0 && k === 0 && kvHeads.length === 1) g.bad(key, k, `an integer in [1, ${h}] (the model has ${h} attention heads)`);
      if (h > 0 && k > 0 && (k > h || h % k !== 0)) g.bad(key, k, `a divisor of ${a}attention.head_count (${h})`);
    }
  }
  // Head sizes and rope dimensions as llama.cpp's load_hparams derives them (from layer 0's head count).
  const h0 = heads?.[0] ?? 0;
  if (h0 > 0 && embd !== undefined) {
    const headK = keyLength ?? Math.floor(embd / h0);
    const headV = valueLength ?? Math.floor(embd / h0);
    const rope = g.integer(`${a}rope.dimension_count`, 0, MAX_HEADS);
    if (rope !== undefined && (rope === 0 || rope % 2 !== 0 || rope > headK)) {
      g.bad(`${a}rope.dimension_count`, rope, `an even number in [2, ${headK}] (the head size)`);
    }
    if (FULL_ROPE_ARCHS.has(arch) || ROPE_K_ARCHS.has(arch)) {
      if (FULL_ROPE_ARCHS.has(arch) && (headK === 0 || headK !== headV)) {
        g.fail(`the key head size ${headK} and value head size ${headV} (${a}attention.key_length / value_length, default ${a}embedding_length / head_count) differ, which ${arch} models cannot run`);
      }
      if (rope !== undefined && rope !== headK) g.bad(`${a}rope.dimension_count`, rope, `${headK}, the head size (${arch} models rotate whole heads)`);
    }
  } else {
    g.integer(`${a}rope.dimension_count`, 1, MAX_HEADS);
  }
  const scaling = g.string(`${a}rope.scaling.type`);
  if (scaling !== undefined && !ROPE_SCALING_TYPES.includes(scaling)) g.bad(`${a}rope.scaling.type`, scaling, `one of ${ROPE_SCALING_TYPES.join(', ')}`);
  if (g.kv.has(`${a}rope.freq_base`)) g.floats(`${a}rope.freq_base`, 0, Infinity, true);
  // Norm epsilons reach ggml_norm / ggml_rms_norm, which assert eps >= 0 (NaN fails too).
  for (const key of g.kv.keys()) {
    if (key.startsWith(a) && key.endsWith('_epsilon')) g.floats(key, 0, 1, true);
  }
  checkExperts(g, a);
  checkVocab(g);

  if (!full) return;
  const zero = meta.tensors.find((t) => t.ne.some((d) => d === 0));
  if (zero) g.fail(`tensor ${zero.name} has shape [${zero.ne.join(', ')}] with a zero dimension`);
  checkTensorTypes(g, true);
  // A split model (split.count > 1) holds the other layers in its other files.
  const splits = g.integer('split.count', 0, 0xffff);
  if (splits !== undefined && splits > 1) return;
  const layers = new Map<number, string[]>();
  for (const t of meta.tensors) {
    const m = /^blk\.(\d+)\.(.+)$/.exec(t.name);
    if (!m) continue;
    const i = Number(m[1]);
    const list = layers.get(i) ?? [];
    list.push(m[2]!);
    layers.set(i, list);
  }
  for (let i = 0; i < blocks!; i++) {
    if (!layers.has(i)) g.fail(`${a}block_count is ${blocks} but the file has no tensors for layer ${i} (blk.${i}.*)`);
  }
  // Zero is what converters write for "unused" (Mamba, RWKV): only wrong when the layers have the tensors.
  const has = (re: RegExp) => [...layers.values()].some((names) => names.some((n) => re.test(n)));
  if (ff?.includes(0) && ff.length === 1 && has(/^ffn_(up|gate|down)\.weight$/)) g.bad(`${a}feed_forward_length`, 0, 'a positive integer (the layers have feed-forward weights)');
  if (heads?.length === 1 && h0 === 0 && has(/^attn_(q|k|v|qkv)\.weight$/)) g.bad(`${a}attention.head_count`, 0, 'a positive integer (the layers have attention weights)');
}

function checkTensorTypes(g: Gate, vectorsF32: boolean): void {
  for (const t of g.meta.tensors) {
    const type = NOT_WEIGHT_TYPES.get(t.type);
    if (type && (t.name.endsWith('.weight') || /\.lora_[ab]$/.test(t.name))) {
      g.fail(`tensor ${t.name} has type ${type}, which ggml cannot multiply with (weights are F32, F16, BF16 or quantized)`);
    }
    // Norm gains and biases meet F32 activations in ggml_mul/ggml_add, which the CPU backend runs for F32
    // only (binary-ops.cpp aborts otherwise); converters write every vector as F32 for this reason.
    if (vectorsF32 && t.type !== 0 && t.ne.slice(1).every((d) => d === 1)) {
      g.fail(`tensor ${t.name} is a vector stored as ${GGML_TYPE_INFO.get(t.type)?.name ?? t.type}; llama.cpp needs vectors (norms, biases) in F32`);
    }
  }
}

/**
 * llama-vocab.cpp asserts that no two tokens have the same text (an empty one is named `[EMPTY_<id>]`).
 * The reader decodes lossily, so tokens holding U+FFFD (maybe invalid UTF-8 bytes) are not compared.
 */
function checkVocab(g: Gate): void {
  const e = g.kv.get('tokenizer.ggml.tokens');
  if (!e || e.type !== GgufValueType.ARRAY || e.itemType !== GgufValueType.STRING) return; // llama.cpp refuses those itself
  const seen = new Map<string, number>();
  const tokens = e.value as ArrayLike<string>;
  for (let i = 0; i < tokens.length; i++) {
    // llama.cpp reads each token as a C string, so text after a NUL byte is lost.
    const nul = tokens[i]!.indexOf('\0');
    const text = nul < 0 ? tokens[i]! : tokens[i]!.slice(0, nul);
    const word = text === '' ? `[EMPTY_${i}]` : text;
    if (word.includes('\uFFFD')) continue;
    const first = seen.get(word);
    if (first !== undefined) g.fail(`tokenizer.ggml.tokens[${i}] is ${show(word)}, the same text as token ${first} (llama.cpp needs every token's text to be unique)`);
    seen.set(word, i);
  }
}

/** llama.cpp's load_hparams asserts on mixture-of-experts counts; these are the same conditions. */
function checkExperts(g: Gate, a: string): void {
  const experts = g.integer(`${a}expert_count`, 0, LLAMA_MAX_EXPERTS) ?? 0;
  const used = g.integers(`${a}expert_used_count`, 0, experts);
  const usedMax = Math.max(0, ...(used ?? []));
  const groups = g.integer(`${a}expert_group_count`, 0, LLAMA_MAX_EXPERTS) ?? 0;
  const groupUsed = g.integer(`${a}expert_group_used_count`, 0, LLAMA_MAX_EXPERTS) ?? 0;
  if (experts === 0) {
    if (groups !== 0) g.bad(`${a}expert_group_count`, groups, `0 (${a}expert_count is 0)`);
    return;
  }
  if (usedMax === 0) g.bad(`${a}expert_used_count`, usedMax, `an integer in [1, ${experts}]`);
  if (groups >= experts) g.bad(`${a}expert_group_count`, groups, `fewer than ${a}expert_count (${experts})`);
  if (groups > 1) {
    if (experts % groups !== 0) g.bad(`${a}expert_group_count`, groups, `a divisor of ${a}expert_count (${experts})`);
    if (groupUsed <= 0 || groupUsed >= groups) g.bad(`${a}expert_group_used_count`, groupUsed, `an integer in [1, ${groups - 1}]`);
  }
}

/**
 * Checks a LoRA adapter file: the KVs llama.cpp reads with asserting getters, and every lora_a/lora_b pair
 * complete, 2-D and of one rank > 0 (per pair for llama.cpp, which scales each pair by alpha / its rank;
 * across the file for 'train-adapter', as the trainer keeps one rank). Throws AdapterError.
 */
export function checkAdapterMetadata(meta: GgufMetadata, file: string, purpose: 'adapter' | 'train-adapter' = 'adapter'): void {
  const g: Gate = new Gate(meta, file, (m) => new AdapterError(m), ADAPTER_ADVICE);
  const type = g.string('general.type', true)!;
  if (type !== 'adapter') {
    throw new AdapterError(`${file}: general.type is ${show(type)}, not "adapter": this is not a LoRA adapter file${type === 'model' ? ' (it is a model; load it with loadModel())' : ''}`);
  }
  const arch = g.string('general.architecture', true)!;
  if (arch.length === 0) g.bad('general.architecture', arch, 'the base model\'s architecture name');
  const adapterType = g.string('adapter.type', true)!;
  if (adapterType !== 'lora') g.bad('adapter.type', adapterType, '"lora"');
  // llama.cpp reads alpha with gguf_get_val_f32, which asserts the type.
  const alpha = g.kv.get('adapter.lora.alpha');
  if (alpha && (alpha.type !== GgufValueType.FLOAT32 || !Number.isFinite(alpha.value as number))) {
    g.bad('adapter.lora.alpha', alpha.value, `a finite FLOAT32 (it is stored as ${GgufValueType[alpha.type]})`);
  }

  checkTensorTypes(g, false);
  const byName = new Map(meta.tensors.map((t) => [t.name, t]));
  let fileRank: { rank: number; name: string } | undefined;
  for (const t of meta.tensors) {
    if (t.ne.some((d) => d === 0)) g.fail(`tensor ${t.name} has shape [${t.ne.join(', ')}] with a zero dimension (a rank-0 adapter?)`);
    const m = /^(.+)\.lora_([ab])$/.exec(t.name);
    if (!m) continue;
    const base = m[1]!;
    const other = byName.get(`${base}.lora_${m[2] === 'a' ? 'b' : 'a'}`);
    if (!other) g.fail(`tensor ${t.name} has no matching ${base}.lora_${m[2] === 'a' ? 'b' : 'a'}`);
    if (m[2] === 'b') continue;
    const [lb, la] = [other, t];
    for (const x of [la, lb]) {
      if (x.ne.length > 2 && x.ne.slice(2).some((d) => d !== 1)) g.fail(`tensor ${x.name} has shape [${x.ne.join(', ')}], expected a matrix`);
    }
    // lora_a [n_in, r], lora_b [r, n_out]; for token_embd llama.cpp flips them: A [r, n_vocab], B [r, n_embd].
    const rankA = base === 'token_embd.weight' ? la.ne[0]! : (la.ne[1] ?? 1);
    const rankB = lb.ne[0]!;
    if (rankA !== rankB) {
      g.fail(`${la.name} [${la.ne.join(', ')}] and ${lb.name} [${lb.ne.join(', ')}] disagree on the rank (${rankA} vs ${rankB})`);
    }
    if (purpose === 'train-adapter') {
      if (fileRank && fileRank.rank !== rankA) {
        g.fail(`${la.name} has rank ${rankA} but ${fileRank.name} has rank ${fileRank.rank}; training continues an adapter of one rank`);
      }
      fileRank ??= { rank: rankA, name: la.name };
    }
  }
}

/** The gate for `purpose`; without one, the file's general.type picks the adapter or the model checks. */
export function checkGgufMetadata(meta: GgufMetadata, file: string, purpose?: GgufPurpose): void {
  const p = purpose ?? (meta.values.get('general.type') === 'adapter' ? 'adapter' : 'model');
  if (p === 'adapter' || p === 'train-adapter') checkAdapterMetadata(meta, file, p);
  else checkModelMetadata(meta, file, p);
}
