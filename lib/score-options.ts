// Options of Model.score(): defaults, validation and the translation into the native request.
import { ContextOverflowError, InvalidArgumentError } from './errors.js';
import { certainlyLonger } from './model/token-bound.js';
import type { Model, ModelInfo } from './model.js';
import type { NativeScoreRequest } from './native.js';
import { adapterRefs, type SampleOptions } from './sample-options.js';
import { threadsOption } from './threads.js';
import * as v from './validate.js';

export interface ScoreItem {
  prompt: string;
  completion: string;
}

export interface ScoreOptions {
  /** Sequences decoded together. Defaults to 16. */
  parallel?: number;
  /** Tokens per llama_decode call. Defaults to 512. */
  batchSize?: number;
  /** Longest prompt + completion in tokens. Defaults to the model's training context. */
  contextSize?: number;
  /** CPU threads. Defaults to a count measured once per machine and model size (lib/thread-calibration.ts). */
  threads?: number;
  lora?: SampleOptions['lora'];
  /** Parse special-token text in prompts and completions. Defaults to false. */
  parseSpecial?: boolean;
  onProgress?: (p: { done: number; total: number }) => void;
  signal?: AbortSignal;
}

export interface ScoreResult {
  /** Natural-log probability of each completion token given everything before it. */
  logprobs: Float32Array;
  /** Sum of `logprobs` (accumulated in double precision). */
  sum: number;
  /** Completion tokens scored. */
  tokens: number;
  /** Prompt tokens (BOS included when the model adds one), not scored. */
  promptTokens: number;
}

export function normalizeScoreOptions(items: readonly ScoreItem[], o: ScoreOptions, info: ModelInfo, model: Model) {
  if (!Array.isArray(items)) throw InvalidArgumentError.expected('array of {prompt, completion}', 'items', items);
  items.forEach((it, i) => {
    if (typeof it !== 'object' || it === null) throw InvalidArgumentError.expected('{prompt, completion} object', `items[${i}]`, it);
    if (typeof it.prompt !== 'string') throw InvalidArgumentError.expected('string', `items[${i}].prompt`, it.prompt);
    if (typeof it.completion !== 'string') throw InvalidArgumentError.expected('string', `items[${i}].completion`, it.completion);
  });
  const request: NativeScoreRequest = {
    items: items.map((it) => ({ prompt: it.prompt, completion: it.completion })),
    parallel: v.integer('parallel', o.parallel ?? 16, 1, 256),
    batchSize: v.integer('batchSize', o.batchSize ?? 512, 1, 1 << 16),
    contextSize: v.contextSizeOption(o.contextSize, info.nCtxTrain, info.path),
    threads: threadsOption(o.threads),
    adapters: adapterRefs(o.lora, model),
    parseSpecial: Boolean(o.parseSpecial),
  };
  // Items of megabytes are refused by their size, before the native side spends seconds tokenizing them.
  items.forEach((it, i) => {
    if (certainlyLonger(it.prompt + it.completion, request.contextSize, model.maxTokenBytes)) {
      throw new ContextOverflowError(`item ${i} (${Buffer.byteLength(it.prompt) + Buffer.byteLength(it.completion)} bytes) has more tokens than the context of ${request.contextSize} tokens holds`);
    }
  });
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw InvalidArgumentError.expected('function', 'onProgress', o.onProgress);
  return { request, signal: v.abortSignal('signal', o.signal), onProgress: o.onProgress };
}
