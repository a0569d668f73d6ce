// Generation passes of the method: prompts in, scored responses out (the paper's result records). Greedy
// for deterministic passes, sampled (T = 1) for Stage II and pass@k. Gold is only used to score, never to
// select.
import { check, checkSymbolic } from '../data/answer.js';
import { postprocessResponse, type Problem } from '../data/datasets.js';
import type { ResultRecord } from '../data/formats.js';
import { LocalGenerator, type GenerationProgress, type Generator } from '../generate/generator.js';
import { sampleResumable } from '../generate/resumable.js';
import type { Model } from '../model.js';
import type { SampleOptions } from '../sample-options.js';
import { responseIds } from './token-ids.js';

export interface GenerateOptions {
  /** Answer key: `####` (GSM8K) or `The answer is:` (MATH). */
  key: string;
  /** Samples per prompt. Defaults to 1. */
  n?: number;
  /** 0 = greedy. Defaults to 0. */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Defaults to 1024 (the paper's GSM8K setting). */
  maxTokens?: number;
  /** Defaults to the paper's ['Question', 'Answer']. */
  stop?: readonly string[];
  parallel?: number;
  threads?: number;
  /** The local sampler's attention kernel (SampleOptions.attention). Defaults to 'auto'. */
  attention?: SampleOptions['attention'];
  lora?: SampleOptions['lora'];
  /** LaTeX-aware equivalence instead of the paper's string equality. Defaults to false. */
  symbolic?: boolean;
  onProgress?: (p: GenerationProgress) => void;
  signal?: AbortSignal;
  /** Partial-results file: samples are appended as they arrive and a re-run resumes from it (lib/generate/resumable.ts). */
  partial?: string;
  /** Request identity beside the options, for the partial file (e.g. the adapter's hash). */
  identity?: Record<string, unknown>;
  /** Parse control-token text in the prompts (chat-template prompts need it). Defaults to false. */
  parseSpecial?: boolean;
  /**
   * The local model's tokenizerFingerprint: records then carry the response's generated ids (`token_ids`,
   * trimmed to the stored response by responseIds) and this fingerprint (`tokenizer`), for training on what
   * was generated (lib/pipeline/token-ids.ts). Ignored for other generators (a server returns text only).
   */
  tokenizer?: string;
}

/**
 * Answers every problem with `n` samples of `prompts[i]`; returns, per problem, its samples as result
 * records whose `prompt` is `recordPrompts[i]` (the zero-shot prompt, also for few-shot generations, as the
 * training sets use it). `source` is a local model (with `lora`, `parallel`, `threads`) or any Generator
 * (e.g. a RemoteGenerator; those three options are then the generator's business).
 */
export async function generate(source: Model | Generator, problems: readonly Problem[], prompts: readonly string[], recordPrompts: readonly string[],
  o: GenerateOptions): Promise<ResultRecord[][]> {
  const n = o.n ?? 1;
  const remote = 'description' in source && typeof (source as Generator).sample === 'function' && !('tokenize' in source);
  const model = remote ? undefined : source as Model;
  const withIds = model !== undefined && o.tokenizer !== undefined;
  const gen: Generator = model === undefined
    ? source as Generator
    : new LocalGenerator(model, { parallel: o.parallel, threads: o.threads, attention: o.attention, lora: o.lora, ...(o.parseSpecial ? { parseSpecial: true } : {}), ...(withIds ? { tokenIds: true } : {}) });
  const options = {
    n, temperature: o.temperature ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0, maxTokens: o.maxTokens ?? 1024,
    stop: o.stop ?? ['Question', 'Answer'], onProgress: o.onProgress, signal: o.signal,
  };
  let samples;
  if (o.partial) {
    const r = await sampleResumable(gen, prompts, { ...options, partial: o.partial, identity: o.identity });
    samples = r.samples;
    // The caller's step folder holds the records once it completes; the step's scratch (and this file) goes then.
  } else {
    samples = await gen.sample(prompts, options);
  }
  const out: ResultRecord[][] = problems.map(() => []);
  for (const s of samples) {
    const p = problems[s.promptIndex]!;
    const response = postprocessResponse(s.text);
    const scored = o.symbolic ? await checkSymbolic(response, p.gold ?? '', o.key) : check(response, p.gold ?? '', o.key);
    // The ids of exactly the stored response; a response no run of whole tokens gives is stored as text only.
    const ids = withIds && s.tokenIds ? responseIds(model, response, s.tokenIds) : undefined;
    out[s.promptIndex]!.push({
      id: p.id, prompt: recordPrompts[s.promptIndex]!, response, pred: scored.pred, gold: scored.gold,
      result: p.gold !== undefined && scored.correct, num_tokens: s.tokens, finish_reason: s.finishReason,
      ...(ids ? { token_ids: ids, tokenizer: o.tokenizer } : {}),
    });
  }
  return out;
}
