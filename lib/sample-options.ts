// Options of Model.sample(): documented defaults (mirrored by the native request struct, checked in a
// test), validation, and the translation into the native request.
import os from 'node:os';
import { ContextOverflowError, InvalidArgumentError } from './errors.js';
import { certainlyLonger } from './model/token-bound.js';
import type { LoraAdapter, Model, ModelInfo } from './model.js';
import type { AttentionOption } from './model/attention.js';
import type { NativeAdapterRef, NativeSampleProgress, NativeSampleRequest } from './native.js';
import { threadsOption } from './threads.js';
import * as v from './validate.js';

/** An adapter to apply, with its scale (1 = as trained). */
export interface AdapterUse {
  adapter: LoraAdapter;
  scale?: number;
}

export interface SampleOptions {
  /** Samples per prompt. Defaults to 1. */
  n?: number;
  /** Softmax temperature; 0 = greedy (argmax). Defaults to 1. */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1]; 1 = off. Defaults to 1. */
  topP?: number;
  /** Keep only the k most likely tokens; 0 = off. Defaults to 0. */
  topK?: number;
  /** Seed of the per-sample random streams (integer, 0 … 2^53 − 1). Defaults to 0. */
  seed?: number;
  /** New tokens per sample at most. Defaults to 256. */
  maxTokens?: number;
  /** A sample ends before the first occurrence of any of these strings (finishReason `stop`). Defaults to none. */
  stop?: readonly string[];
  /**
   * Sequences decoded together (continuous batching). Defaults to as many as the work has, at most 64,
   * and no more than fit an F16 KV cache of min(4 GiB, RAM / 4) at maxTokens + 256 positions each.
   */
  parallel?: number;
  /** Positions one sequence may use (prompt + generated). Defaults to the model's training context. */
  contextSize?: number;
  /**
   * KV cells for the whole job, split evenly between its sequences (each has its own stream); 0 = sized
   * from the work (the longest prompt + maxTokens per sequence). Defaults to 0.
   */
  kvCells?: number;
  /** Tokens per llama_decode call. Defaults to 512. */
  batchSize?: number;
  /** CPU threads. Defaults to a count measured once per machine and model size (lib/thread-calibration.ts). */
  threads?: number;
  /** LoRA adapter(s) to apply on top of the base model. */
  lora?: LoraAdapter | readonly (LoraAdapter | AdapterUse)[];
  /** Parse special-token text such as `</s>` in prompts as tokens. Defaults to false. */
  parseSpecial?: boolean;
  /**
   * F32 KV cache and no flash attention (twice the KV memory). Logits then match scoring and training to
   * ~1e-6, so sampled text no longer drifts with batch composition (`parallel`). Defaults to false (F16 KV).
   */
  highPrecision?: boolean;
  /** Return each sample's token ids (`Sample.tokenIds`). Defaults to false. */
  tokenIds?: boolean;
  /** Return the log-prob of each sampled token (`Sample.logprobs`, with `tokenIds`). Defaults to false. */
  logprobs?: boolean;
  /**
   * When every prompt starts with the same 32 or more tokens (weak-ICL's demonstrations, a chat system
   * prompt), decode them once and give each prompt a copy, so only each prompt's own suffix is decoded.
   * Results are the same up to batch-shape rounding; false decodes every prompt whole. Defaults to true.
   */
  sharePrefix?: boolean;
  /**
   * The attention kernel: 'flash' (llama.cpp's flash attention), 'plain' (matrix products and a softmax),
   * or 'auto': flash attention, except on the CPU where a head is smaller than the F16 vector step ggml's
   * CPU flash attention works in, or leaves a tail of it while the windows fill most of their padding
   * (lib/model/attention.ts; e.g. 32-wide heads on AVX-512 ran 2.8× faster plain). `model.attention()` tells which one a job gets. Both read the same F16
   * KV cache; `highPrecision` always runs plain attention. Defaults to 'auto'.
   */
  attention?: AttentionOption;
  /** Called with the running totals after every decode step (coalesced when the event loop is busy). */
  onProgress?: (p: NativeSampleProgress) => void;
  signal?: AbortSignal;
}

export interface Sample {
  promptIndex: number;
  sampleIndex: number;
  /** Generated text, without the stop string or EOS. */
  text: string;
  /** Generated tokens, EOS not counted. */
  tokens: number;
  finishReason: 'stop' | 'length' | 'eos';
  /**
   * With `tokenIds` (or `logprobs`): the ids of the generated tokens whose text starts inside `text`, EOS
   * excluded. A stop string's tokens are dropped; a token that straddles the stop's start is kept, so
   * detokenizing can then give more than `text`.
   */
  tokenIds?: number[];
  /**
   * With `logprobs`: for each of `tokenIds`, log p(token) in nats under the model's raw distribution
   * (softmax of its logits at temperature 1, before top-k / top-p), computed in the same pass: no second
   * scoring pass is needed. Equals `score()` on the same tokens within the F16 KV cache's rounding.
   */
  logprobs?: number[];
}

/** Documented defaults of SampleOptions (a test checks they equal the native struct's). */
export const SAMPLE_DEFAULTS = { n: 1, temperature: 1, topP: 1, topK: 0, maxTokens: 256, batchSize: 512 } as const;

/** Most samples per prompt (the method draws 10; values past this are typing mistakes). */
export const MAX_SAMPLES_PER_PROMPT = 1 << 16;
/** Most samples per sample() call, prompts × n: results are kept in memory until the call returns. */
export const MAX_SAMPLES_PER_CALL = 1 << 22;

/** Upper bound of the default `parallel`: beyond 64 sequences a CPU decode step gains little. */
export const MAX_DEFAULT_PARALLEL = 64;

/**
 * Default sequences in flight: wide batches amortize reading the weights (measured on a 25M model, 2 cores:
 * 64 sequences give 1.3× the tokens/s of 16), bounded by the KV memory they would need. Every sequence has
 * its own KV stream of (longest prompt + maxTokens) cells rounded up to 256 (native/core/batch_sampler.cpp),
 * F16 K and V per layer; the budget is min(4 GiB, RAM / 4).
 */
export function defaultParallel(info: Pick<ModelInfo, 'nLayer' | 'nEmbd' | 'nHead' | 'nHeadKv'>, total: number, maxTokens: number, longestPrompt = 256): number {
  const kvBytesPerCell = 2 * info.nLayer * (info.nEmbd / info.nHead) * info.nHeadKv * 2;
  const cellsPerSequence = Math.ceil((longestPrompt + maxTokens) / 256) * 256;
  const budget = Math.min(4 * 2 ** 30, os.totalmem() / 4);
  const byMemory = Math.floor(budget / (kvBytesPerCell * cellsPerSequence));
  return Math.max(1, Math.min(MAX_DEFAULT_PARALLEL, total, byMemory));
}

export function adapterRefs(lora: SampleOptions['lora'], model: Model): NativeAdapterRef[] {
  if (lora === undefined) return [];
  const list = Array.isArray(lora) ? lora : [lora];
  return list.map((entry, i) => {
    const use: AdapterUse = 'adapter' in entry ? (entry as AdapterUse) : { adapter: entry as LoraAdapter };
    if (!use.adapter || typeof use.adapter.nativeHandle !== 'function') {
      throw InvalidArgumentError.expected('LoraAdapter from model.loadLora()', `lora[${i}]`, entry);
    }
    if (use.adapter.model !== model) {
      throw new InvalidArgumentError(`lora[${i}] (${use.adapter.path}) was loaded for ${use.adapter.model.path}, not for ${model.path}`);
    }
    const scale = v.numberIn(`lora[${i}].scale`, use.scale ?? 1, -100, 100);
    return { lora: use.adapter.nativeHandle(), scale };
  });
}

/** Tokens of the longest prompt (by bytes), for sizing: one tokenization, not one per prompt. */
function longestPromptTokens(prompts: readonly string[], model: Model): number {
  let longest = '';
  for (const p of prompts) if (typeof p === 'string' && p.length > longest.length) longest = p;
  if (longest.length > 1 << 20) return Number.MAX_SAFE_INTEGER; // refused below as too long anyway
  try {
    return model.tokenize(longest, { addSpecial: true }).length;
  } catch {
    return 256; // tokenization errors are reported by the job itself
  }
}

export function normalizeSampleOptions(prompts: readonly string[], o: SampleOptions, info: ModelInfo, model: Model) {
  v.stringArray('prompts', prompts, true);
  const n = v.integer('n', o.n ?? SAMPLE_DEFAULTS.n, 1, MAX_SAMPLES_PER_PROMPT);
  const total = prompts.length * n;
  if (total > MAX_SAMPLES_PER_CALL) {
    // Every sample's text is held until the call returns: beyond this the process runs out of memory.
    throw new InvalidArgumentError(`Expected at most ${MAX_SAMPLES_PER_CALL} samples per call but received ${prompts.length} prompts × n ${n} = ${total}; ` +
      'split the prompts into several calls');
  }
  const maxTokens = v.positiveInt('maxTokens', o.maxTokens ?? SAMPLE_DEFAULTS.maxTokens);
  const longestPrompt = longestPromptTokens(prompts, model);
  const highPrecision = Boolean(o.highPrecision);
  const request: NativeSampleRequest = {
    prompts: [...prompts],
    n,
    temperature: v.numberIn('temperature', o.temperature ?? SAMPLE_DEFAULTS.temperature, 0, 100),
    topP: v.numberIn('topP', o.topP ?? SAMPLE_DEFAULTS.topP, 0, 1, true),
    topK: v.nonNegativeInt('topK', o.topK ?? SAMPLE_DEFAULTS.topK),
    seed: v.integer('seed', o.seed ?? 0, 0),
    maxTokens,
    stops: v.stringArray('stop', o.stop ?? []),
    parallel: v.integer('parallel', o.parallel ?? defaultParallel(info, total, maxTokens, longestPrompt), 1, 128),
    contextSize: v.contextSizeOption(o.contextSize, info.nCtxTrain, info.path),
    kvCells: v.integer('kvCells', o.kvCells ?? 0, 0, 1 << 26),
    batchSize: v.integer('batchSize', o.batchSize ?? SAMPLE_DEFAULTS.batchSize, 1, 1 << 16),
    threads: threadsOption(o.threads),
    adapters: adapterRefs(o.lora, model),
    parseSpecial: Boolean(o.parseSpecial),
    highPrecision,
    tokenIds: v.optionalBoolean('tokenIds', o.tokenIds) || v.optionalBoolean('logprobs', o.logprobs),
    logprobs: v.optionalBoolean('logprobs', o.logprobs),
    sharePrefix: v.optionalBoolean('sharePrefix', o.sharePrefix, true),
    flashAttention: model.attention(o.attention, { promptTokens: longestPrompt, maxTokens, highPrecision }).mode === 'flash',
  };
  // A prompt of megabytes is refused by its size, before the native side spends seconds tokenizing it.
  prompts.forEach((p, i) => {
    if (certainlyLonger(p, request.contextSize - 1, model.maxTokenBytes)) {
      throw new ContextOverflowError(`prompt ${i} (${Buffer.byteLength(p)} bytes) has more tokens than the context of ${request.contextSize} tokens holds`);
    }
  });
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw InvalidArgumentError.expected('function', 'onProgress', o.onProgress);
  return { request, signal: v.abortSignal('signal', o.signal), onProgress: o.onProgress };
}
