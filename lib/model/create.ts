// createModel: validates a small llama-family config and writes a deterministic random-initialised GGUF
// (weights, hyper-parameters, tokenizer) that llama.cpp loads like a converted checkpoint.

import { checkOutputPaths } from '../io/outputs.js';
import { checkGgufFile } from '../model.js';
import { InvalidArgumentError } from '../errors.js';
import { encodeInto, encodedBytes } from '../gguf/quantize.js';
import { GgmlType, GgufValueType, type GgufKv } from '../gguf/types.js';
import { writeGguf, type GgufTensorSource } from '../gguf/writer.js';
import { baseVocabSize, buildVocab, type TokenizerKind, type TokenizerVocab } from './tokenizer-vocab.js';

/**
 * llama (Llama 2/3, Mistral), qwen2 (q/k/v biases, tied embeddings), qwen3 (per-head q/k RMS norms, tied
 * embeddings), gemma (GELU, √n_embd embedding scale, tied), gemma2 (gemma + post-norms, attention and final
 * logit soft-capping, sliding-window layers), phi3 (fused attn_qkv and gate/up ffn_up). Tensor names and
 * metadata are those the bundled llama.cpp converter writes for each.
 */
export type ModelArch = 'llama' | 'qwen2' | 'qwen3' | 'gemma' | 'gemma2' | 'phi3';
export const MODEL_ARCHS: readonly ModelArch[] = ['llama', 'qwen2', 'qwen3', 'gemma', 'gemma2', 'phi3'];
export type ModelTensorType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

export interface CreateModelOptions {
  arch: ModelArch;
  /** Transformer blocks. */
  layers: number;
  /** Hidden size n_embd. */
  embd: number;
  /** Query heads; head dim = embd / heads (must be even for rope). */
  heads: number;
  /** Key/value heads (GQA); must divide heads. */
  kvHeads: number;
  /** FFN hidden size n_ff. */
  ff: number;
  /** Training context length written to <arch>.context_length, tokens. */
  ctx: number;
  /** Pad the tokenizer with filler pieces up to exactly this many tokens (default: base size, ~1k). */
  vocab?: number;
  /**
   * Copy the tokenizer (every `tokenizer.*` key) of this GGUF — a real model or one of llama.cpp's
   * vocabulary-only files — instead of writing the built-in one; the vocabulary size is then that file's.
   * Excludes `vocab`.
   */
  vocabFrom?: string;
  /** Storage type of 2-D weights; 1-D tensors (norms, biases) are always f32. */
  type: ModelTensorType;
  seed: number;
  /** Output path; written via `<out>.tmp-<pid>` and renamed. */
  out: string;
  /**
   * 'llama3': write Llama 3.1's rope frequency factors (`rope_freqs.weight`, [head_dim / 2]) as the bundled
   * converter computes them (factor 8, low/high frequency factors 1 and 4, original context 8192). llama only.
   */
  ropeFreqs?: 'llama3';
  /** rope.freq_base; default 10000 (llama) / 1000000 (qwen2). */
  ropeTheta?: number;
  /** RMSNorm epsilon; default 1e-5 (llama) / 1e-6 (qwen2). */
  rmsEps?: number;
  /** general.name; default derived from the config. */
  name?: string;
  /**
   * <arch>.attention.sliding_window, tokens (gemma2 and phi3 only): gemma2 slides on every other layer
   * (default 4096, as Gemma 2); phi3 declares one (Phi-3-mini: 2047) that llama.cpp ignores (default 0, as Phi-4).
   */
  slidingWindow?: number;
  /** gemma2.attn_logit_softcapping (default 50) and gemma2.final_logit_softcapping (default 30). */
  attnSoftcap?: number;
  finalSoftcap?: number;
}

export interface ModelInfo {
  path: string;
  arch: ModelArch;
  type: ModelTensorType;
  /** Parameter count (tied embeddings counted once). */
  params: number;
  /** File size, bytes. */
  bytes: number;
  nVocab: number;
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  nCtx: number;
  ropeTheta: number;
  rmsEps: number;
  seed: number;
  /** 'spm' or 'bpe' (the built-in tokenizers), or the copied file's tokenizer.ggml.model ('llama', 'gpt2', …). */
  tokenizer: string;
  tensorCount: number;
}

const OPTION_KEYS = ['arch', 'layers', 'embd', 'heads', 'kvHeads', 'ff', 'ctx', 'vocab', 'vocabFrom', 'ropeFreqs', 'type', 'seed', 'out', 'ropeTheta', 'rmsEps', 'name',
  'slidingWindow', 'attnSoftcap', 'finalSoftcap'] as const;
const TYPES: Record<ModelTensorType, { ggml: GgmlType; fileType: number }> = {
  f32: { ggml: GgmlType.F32, fileType: 0 }, // LLAMA_FTYPE_ALL_F32
  f16: { ggml: GgmlType.F16, fileType: 1 }, // LLAMA_FTYPE_MOSTLY_F16
  q4_0: { ggml: GgmlType.Q4_0, fileType: 2 }, // LLAMA_FTYPE_MOSTLY_Q4_0
  q8_0: { ggml: GgmlType.Q8_0, fileType: 7 }, // LLAMA_FTYPE_MOSTLY_Q8_0
};
const MAX_INT = 0x7fffffff;
const MAX_VOCAB = 1 << 20;

function positiveInt(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw InvalidArgumentError.expected('positive integer', key, v);
  if (v > MAX_INT) throw InvalidArgumentError.expected(`integer <= ${MAX_INT}`, key, v);
  return v;
}

function positiveNumber(o: Record<string, unknown>, key: string, fallback: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw InvalidArgumentError.expected('positive finite number', key, v);
  return v;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, allowed: readonly T[]): T {
  const v = o[key];
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw InvalidArgumentError.expected(`one of ${allowed.map((a) => `'${a}'`).join(', ')}`, key, v);
  }
  return v as T;
}

type ResolvedCreateOptions = Required<Omit<CreateModelOptions, 'vocabFrom' | 'ropeFreqs'>> & Pick<CreateModelOptions, 'vocabFrom' | 'ropeFreqs'>;
const GEMMA = (a: ModelArch) => a === 'gemma' || a === 'gemma2';

/** Validates and fills defaults; every failure is an InvalidArgumentError with the shared message shape. */
export function resolveCreateModelOptions(options: unknown): ResolvedCreateOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw InvalidArgumentError.expected('options object', 'options', options);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) throw InvalidArgumentError.expected(`one of ${OPTION_KEYS.join(', ')}`, 'option name', key);
  }
  const arch = oneOf(o, 'arch', MODEL_ARCHS);
  const layers = positiveInt(o, 'layers');
  const embd = positiveInt(o, 'embd');
  const heads = positiveInt(o, 'heads');
  const kvHeads = positiveInt(o, 'kvHeads');
  const ff = positiveInt(o, 'ff');
  const ctx = positiveInt(o, 'ctx');
  const type = oneOf(o, 'type', ['f32', 'f16', 'q8_0', 'q4_0'] as const);
  const seed = o.seed;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) throw InvalidArgumentError.expected('non-negative safe integer', 'seed', seed);
  if (typeof o.out !== 'string' || o.out.length === 0) throw InvalidArgumentError.expected('non-empty path string', 'out', o.out);
  const out = o.out;
  // llama.cpp keys Phi-3's special-token attributes on "phi3"/"phi-3" in general.name and then looks up Phi-3's
  // own special tokens, which the built-in vocabulary lacks: the default name avoids both spellings.
  const name = o.name === undefined ? `w2s-random-${arch === 'phi3' ? 'phi_3' : arch}-${layers}x${embd}-${type}-seed${seed}` : o.name;
  if (typeof name !== 'string' || name.length === 0) throw InvalidArgumentError.expected('non-empty string', 'name', name);
  // Defaults as the real models: Llama/Gemma/Phi-3 rope base 10000, Qwen 1e6; RMS epsilon 1e-5 (Llama, Phi-3) or 1e-6.
  const ropeTheta = positiveNumber(o, 'ropeTheta', arch.startsWith('qwen') ? 1e6 : 1e4);
  const rmsEps = positiveNumber(o, 'rmsEps', arch === 'llama' || arch === 'phi3' ? 1e-5 : 1e-6);
  for (const k of ['slidingWindow', 'attnSoftcap', 'finalSoftcap'] as const) {
    const allowed = k === 'slidingWindow' ? ['gemma2', 'phi3'] : ['gemma2'];
    if (o[k] !== undefined && !allowed.includes(arch)) throw InvalidArgumentError.expected(`no value (${k} is for ${allowed.join(' and ')})`, k, o[k]);
  }
  let slidingWindow = arch === 'gemma2' ? 4096 : 0;
  if (o.slidingWindow !== undefined) {
    const v = o.slidingWindow;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_INT) throw InvalidArgumentError.expected('non-negative integer', 'slidingWindow', v);
    slidingWindow = v;
  }
  const attnSoftcap = positiveNumber(o, 'attnSoftcap', 50);
  const finalSoftcap = positiveNumber(o, 'finalSoftcap', 30);

  const base = baseVocabSize(tokenizerFor(arch));
  let vocab = base;
  if (o.vocab !== undefined) {
    vocab = positiveInt(o, 'vocab');
    if (vocab < base || vocab > MAX_VOCAB) throw InvalidArgumentError.expected(`integer in [${base}, ${MAX_VOCAB}] (tokenizer base size to 2^20)`, 'vocab', vocab);
  }

  if (embd % heads !== 0) throw InvalidArgumentError.expected(`multiple of heads (${heads})`, 'embd', embd);
  if (heads % kvHeads !== 0) throw InvalidArgumentError.expected(`divisor of heads (${heads})`, 'kvHeads', kvHeads);
  if ((embd / heads) % 2 !== 0) {
    throw InvalidArgumentError.expected(`value giving an even head size embd/heads for rope (embd/heads = ${embd / heads})`, 'heads', heads);
  }
  if (type === 'q8_0' || type === 'q4_0') {
    // Quantized rows are ne[0] of each matrix: embd for q/k/v/o/gate/up/embeddings, ff for ffn_down.
    if (embd % 32 !== 0) throw InvalidArgumentError.expected(`multiple of 32 (${type} block size; rows of embd elements)`, 'embd', embd);
    if (ff % 32 !== 0) throw InvalidArgumentError.expected(`multiple of 32 (${type} block size; ffn_down rows of ff elements)`, 'ff', ff);
  }
  const vocabFrom = o.vocabFrom;
  if (vocabFrom !== undefined) {
    if (typeof vocabFrom !== 'string' || vocabFrom.length === 0) throw InvalidArgumentError.expected('non-empty path string', 'vocabFrom', vocabFrom);
    if (o.vocab !== undefined) throw new InvalidArgumentError('vocab and vocabFrom exclude each other: the copied vocabulary has its own size');
  }
  const ropeFreqs = o.ropeFreqs;
  if (ropeFreqs !== undefined && (ropeFreqs !== 'llama3' || arch !== 'llama')) {
    throw InvalidArgumentError.expected("'llama3' (llama arch only)", 'ropeFreqs', ropeFreqs);
  }
  return { arch, layers, embd, heads, kvHeads, ff, ctx, vocab, vocabFrom, ropeFreqs, type, seed, out, ropeTheta, rmsEps, name, slidingWindow, attnSoftcap, finalSoftcap };
}

function tokenizerFor(arch: ModelArch): TokenizerKind {
  return arch.startsWith('qwen') ? 'bpe' : 'spm';  // Gemma and Phi-3 ship SentencePiece vocabularies
}

// --- deterministic random numbers -------------------------------------------------------------

/** splitmix32 step: a well-mixed 32-bit output per increment of the state. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let t = x ^ (x >>> 16);
  t = Math.imul(t, 0x21f0aaad);
  t ^= t >>> 15;
  t = Math.imul(t, 0x735a2d97);
  return (t ^ (t >>> 15)) >>> 0;
}

/** Per-tensor stream seed from the model seed and the tensor name, so tensor order never changes values. */
function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5; // FNV-1a over the name
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return mix32(mix32(seed >>> 0) ^ mix32(Math.floor(seed / 0x100000000) + 0x6a09e667) ^ h);
}

/** Fills `out` with N(0, std^2) draws (Box-Muller on splitmix32 uniforms); returns the next state. */
function fillNormal(out: Float32Array, std: number, state: number): number {
  for (let i = 0; i < out.length; i += 2) {
    state = (state + 0x9e3779b9) | 0;
    const u1 = (mix32(state) + 1) / 4294967297; // (0, 1]: avoids log(0)
    state = (state + 0x9e3779b9) | 0;
    const u2 = mix32(state) / 4294967296;
    const r = std * Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return state;
}

// --- tensors --------------------------------------------------------------------------------

interface TensorPlan {
  name: string;
  ne: number[];
  type: GgmlType;
  /** 'ones' for RMSNorm gains; 'near-one' = 1 + N(0, 0.2) (q/k norm gains, so a missed gain shows); a normal std; or fixed values. */
  init: 'ones' | 'near-one' | number | Float32Array;
}

const CHUNK_ELEMENTS = 1 << 18; // ~1 MiB of f32 per generated chunk

function tensorSource(plan: TensorPlan, seed: number): GgufTensorSource {
  return {
    name: plan.name,
    ne: plan.ne,
    type: plan.type,
    *data() {
      const rowLen = plan.ne[0]!;
      const rows = plan.ne.slice(1).reduce((a, b) => a * b, 1);
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / rowLen));
      const values = new Float32Array(rowsPerChunk * rowLen);
      const bytes = new Uint8Array(encodedBytes(plan.type, values.length));
      let state = streamSeed(seed, plan.name);
      for (let r = 0; r < rows; r += rowsPerChunk) {
        const n = Math.min(rowsPerChunk, rows - r) * rowLen;
        const chunk = values.subarray(0, n);
        if (plan.init instanceof Float32Array) chunk.set(plan.init.subarray(r * rowLen, r * rowLen + n));
        else if (plan.init === 'ones') chunk.fill(1);
        else if (plan.init === 'near-one') {
          state = fillNormal(chunk, 0.2, state);
          for (let i = 0; i < chunk.length; i++) chunk[i]! += 1;
        } else state = fillNormal(chunk, plan.init, state);
        // The writer copies or writes each chunk before asking for the next, so both buffers are reused.
        yield bytes.subarray(0, encodeInto(plan.type, chunk, bytes, 0));
      }
    },
  };
}

/** Llama 3.1's rope frequency factors, as conversion/llama.py (generate_extra_tensors) computes them. */
export function llama3RopeFactors(headDim: number, base: number, factor = 8, lowFreq = 1, highFreq = 4, oldContext = 8192): Float32Array {
  const lowWavelen = oldContext / lowFreq;
  const highWavelen = oldContext / highFreq;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / base ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (oldContext / wavelen - lowFreq) / (highFreq - lowFreq);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

/**
 * Tensor list with ggml shapes (ne innermost first), as llama.cpp's llama/qwen2 loaders expect.
 * Init: matrices ~ N(0, 0.02); the output projection (or the tied qwen2 embedding) ~ N(0, 1/embd) so that
 * logits of the RMS-normalised final state have std ~1 (varied, neither flat nor saturated); norms = 1.
 */
function planTensors(o: ResolvedCreateOptions, nVocab: number): TensorPlan[] {
  const w = TYPES[o.type].ggml;
  const f32 = GgmlType.F32;
  const std = 0.02;
  const outStd = 1 / Math.sqrt(o.embd);
  const headDim = o.embd / o.heads;
  const kvDim = headDim * o.kvHeads;
  const gemma = GEMMA(o.arch);
  // Tied like Qwen2.5-0.5B / Qwen3-0.6B / every Gemma: no output.weight, llama.cpp reuses token_embd, whose std
  // is then the head's (Gemma's graph scales the inputs by √n_embd: ~unit entries, as in the real models).
  const tied = o.arch !== 'llama' && o.arch !== 'phi3';
  const embStd = tied ? outStd : std;
  // Gemma's converter stores 1 + w for its norms: random gains around 1 show a dropped or doubled offset.
  const norm = gemma ? 'near-one' : 'ones';
  const plans: TensorPlan[] = [{ name: 'token_embd.weight', ne: [o.embd, nVocab], type: w, init: embStd }];
  for (let i = 0; i < o.layers; i++) {
    const p = `blk.${i}.`;
    plans.push({ name: `${p}attn_norm.weight`, ne: [o.embd], type: f32, init: norm });
    if (o.arch === 'phi3') {
      // One matrix for q, k and v (rows q, then k, then v), as Phi-3's qkv_proj.
      plans.push({ name: `${p}attn_qkv.weight`, ne: [o.embd, headDim * o.heads + 2 * kvDim], type: w, init: std });
    } else {
      plans.push({ name: `${p}attn_q.weight`, ne: [o.embd, headDim * o.heads], type: w, init: std });
      if (o.arch === 'qwen2') plans.push({ name: `${p}attn_q.bias`, ne: [headDim * o.heads], type: f32, init: std });
      plans.push({ name: `${p}attn_k.weight`, ne: [o.embd, kvDim], type: w, init: std });
      if (o.arch === 'qwen2') plans.push({ name: `${p}attn_k.bias`, ne: [kvDim], type: f32, init: std });
      plans.push({ name: `${p}attn_v.weight`, ne: [o.embd, kvDim], type: w, init: std });
      if (o.arch === 'qwen2') plans.push({ name: `${p}attn_v.bias`, ne: [kvDim], type: f32, init: std });
    }
    if (o.arch === 'qwen3') {
      // Per-head RMS norms of q and k (ne = [head_dim]), applied before rope.
      plans.push({ name: `${p}attn_q_norm.weight`, ne: [headDim], type: f32, init: 'near-one' });
      plans.push({ name: `${p}attn_k_norm.weight`, ne: [headDim], type: f32, init: 'near-one' });
    }
    plans.push({ name: `${p}attn_output.weight`, ne: [headDim * o.heads, o.embd], type: w, init: std });
    if (o.arch === 'gemma2') plans.push({ name: `${p}post_attention_norm.weight`, ne: [o.embd], type: f32, init: norm });
    plans.push({ name: `${p}ffn_norm.weight`, ne: [o.embd], type: f32, init: norm });
    if (o.arch === 'phi3') {
      // gate_up_proj: gate rows first, then up (ggml_swiglu's split).
      plans.push({ name: `${p}ffn_up.weight`, ne: [o.embd, 2 * o.ff], type: w, init: std });
    } else {
      plans.push({ name: `${p}ffn_gate.weight`, ne: [o.embd, o.ff], type: w, init: std });
      plans.push({ name: `${p}ffn_up.weight`, ne: [o.embd, o.ff], type: w, init: std });
    }
    plans.push({ name: `${p}ffn_down.weight`, ne: [o.ff, o.embd], type: w, init: std });
    if (o.arch === 'gemma2') plans.push({ name: `${p}post_ffw_norm.weight`, ne: [o.embd], type: f32, init: norm });
  }
  plans.push({ name: 'output_norm.weight', ne: [o.embd], type: f32, init: norm });
  if (o.ropeFreqs === 'llama3') plans.push({ name: 'rope_freqs.weight', ne: [headDim / 2], type: f32, init: llama3RopeFactors(headDim, o.ropeTheta) });
  if (!tied) plans.push({ name: 'output.weight', ne: [o.embd, nVocab], type: w, init: outStd });
  return plans;
}

// --- metadata -------------------------------------------------------------------------------

const str = (key: string, value: string): GgufKv => ({ key, type: GgufValueType.STRING, value });
const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufValueType.UINT32, value });
const f32v = (key: string, value: number): GgufKv => ({ key, type: GgufValueType.FLOAT32, value });
const bool = (key: string, value: boolean): GgufKv => ({ key, type: GgufValueType.BOOL, value });

function tokenizerKv(v: TokenizerVocab): GgufKv[] {
  const kv: GgufKv[] = [str('tokenizer.ggml.model', v.model)];
  if (v.pre) kv.push(str('tokenizer.ggml.pre', v.pre));
  kv.push({ key: 'tokenizer.ggml.tokens', type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: v.tokens });
  if (v.scores) kv.push({ key: 'tokenizer.ggml.scores', type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value: v.scores });
  kv.push({ key: 'tokenizer.ggml.token_type', type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: v.tokenTypes });
  if (v.merges) kv.push({ key: 'tokenizer.ggml.merges', type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: v.merges });
  kv.push(u32('tokenizer.ggml.bos_token_id', v.bosId), u32('tokenizer.ggml.eos_token_id', v.eosId));
  if (v.unkId !== undefined) kv.push(u32('tokenizer.ggml.unknown_token_id', v.unkId));
  if (v.padId !== undefined) kv.push(u32('tokenizer.ggml.padding_token_id', v.padId));
  kv.push(bool('tokenizer.ggml.add_bos_token', v.addBos), bool('tokenizer.ggml.add_eos_token', v.addEos));
  if (v.addSpacePrefix !== undefined) kv.push(bool('tokenizer.ggml.add_space_prefix', v.addSpacePrefix));
  return kv;
}

/** The `tokenizer.*` pairs of a real GGUF, its vocabulary size and tokenizer model, checked like any model input. */
async function tokenizerFrom(file: string): Promise<{ kv: GgufKv[]; nVocab: number; model: string }> {
  const meta = await checkGgufFile(file, 'vocabulary file', 'vocab');
  const kv = meta.kv.filter((e) => e.key.startsWith('tokenizer.'));
  const tokens = meta.values.get('tokenizer.ggml.tokens');
  const model = meta.values.get('tokenizer.ggml.model');
  if (!Array.isArray(tokens) || tokens.length === 0 || typeof model !== 'string') {
    throw new InvalidArgumentError(`${file} has no tokenizer (tokenizer.ggml.model and tokenizer.ggml.tokens): give a GGUF model or vocabulary file`);
  }
  return { kv, nVocab: tokens.length, model };
}

function modelKv(o: ResolvedCreateOptions, nVocab: number): GgufKv[] {
  const a = o.arch;
  const headDim = o.embd / o.heads;
  // What each converter adds (conversion/gemma.py, conversion/phi.py): Gemma writes key/value lengths and
  // no rope keys; Gemma 2 its soft-caps and window; Phi-3 its original context and window.
  const extra: GgufKv[] = [];
  if (GEMMA(a)) extra.push(u32(`${a}.attention.key_length`, headDim), u32(`${a}.attention.value_length`, headDim));
  if (a === 'gemma2') {
    extra.push(f32v(`${a}.attn_logit_softcapping`, o.attnSoftcap), f32v(`${a}.final_logit_softcapping`, o.finalSoftcap),
      u32(`${a}.attention.sliding_window`, o.slidingWindow));
  }
  if (a === 'phi3') extra.push(u32(`${a}.rope.scaling.original_context_length`, o.ctx), u32(`${a}.attention.sliding_window`, o.slidingWindow));
  const rope = GEMMA(a) ? [] : [f32v(`${a}.rope.freq_base`, o.ropeTheta), u32(`${a}.rope.dimension_count`, headDim)];
  return [
    str('general.architecture', a),
    str('general.type', 'model'),
    str('general.name', o.name),
    u32('general.file_type', TYPES[o.type].fileType),
    u32('general.quantization_version', 2), // GGML_QNT_VERSION
    u32(`${a}.vocab_size`, nVocab),
    u32(`${a}.context_length`, o.ctx),
    u32(`${a}.embedding_length`, o.embd),
    u32(`${a}.block_count`, o.layers),
    u32(`${a}.feed_forward_length`, o.ff),
    u32(`${a}.attention.head_count`, o.heads),
    u32(`${a}.attention.head_count_kv`, o.kvHeads),
    f32v(`${a}.attention.layer_norm_rms_epsilon`, o.rmsEps),
    ...rope,
    ...extra,
    { key: 'w2s.random_init.seed', type: GgufValueType.UINT64, value: o.seed },
  ];
}

/**
 * Writes a random-initialised GGUF of one of MODEL_ARCHS to `options.out` (atomically, streaming tensor data) and
 * describes it. Same options (incl. seed) give a byte-identical file.
 */
export async function createModel(options: CreateModelOptions): Promise<ModelInfo> {
  const o = resolveCreateModelOptions(options);
  await checkOutputPaths([{ name: 'out', path: o.out, regularFile: true }], []);
  let tokenizer: { kv: GgufKv[]; nVocab: number; model: string };
  if (o.vocabFrom) tokenizer = await tokenizerFrom(o.vocabFrom);
  else {
    const vocab = buildVocab(tokenizerFor(o.arch), o.vocab);
    tokenizer = { kv: tokenizerKv(vocab), nVocab: vocab.tokens.length, model: tokenizerFor(o.arch) };
  }
  const nVocab = tokenizer.nVocab;
  const plans = planTensors(o, nVocab);
  const kv = [...modelKv(o, nVocab), ...tokenizer.kv];
  const written = await writeGguf(o.out, kv, plans.map((p) => tensorSource(p, o.seed)));
  const params = plans.reduce((sum, p) => sum + p.ne.reduce((a, b) => a * b, 1), 0);
  return {
    path: o.out,
    arch: o.arch,
    type: o.type,
    params,
    bytes: written.bytes,
    nVocab,
    nLayer: o.layers,
    nEmbd: o.embd,
    nHead: o.heads,
    nHeadKv: o.kvHeads,
    headDim: o.embd / o.heads,
    nFf: o.ff,
    nCtx: o.ctx,
    ropeTheta: o.ropeTheta,
    rmsEps: o.rmsEps,
    seed: o.seed,
    tokenizer: tokenizer.model,
    tensorCount: plans.length,
  };
}
