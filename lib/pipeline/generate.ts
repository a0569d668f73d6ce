// Generation passes of the method: prompts in, scored responses out (the paper's result records). Greedy
// for deterministic passes, sampled (T = 1) for Stage II and pass@k. Gold is only used to score, never to
// select.
import { check, checkSymbolic } from '../data/answer.js';
import { postprocessResponse, type Problem } from '../data/datasets.js';
import type { ResultRecord } from '../data/formats.js';
import type { Model } from '../model.js';
import type { SampleOptions } from '../sample-options.js';

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
  lora?: SampleOptions['lora'];
  /** LaTeX-aware equivalence instead of the paper's string equality. Defaults to false. */
  symbolic?: boolean;
  onProgress?: SampleOptions['onProgress'];
  signal?: AbortSignal;
}

/**
 * Answers every problem with `n` samples of `prompts[i]`; returns, per problem, its samples as result
 * records whose `prompt` is `recordPrompts[i]` (the zero-shot prompt, also for few-shot generations, as the
 * training sets use it).
 */
export async function generate(model: Model, problems: readonly Problem[], prompts: readonly string[], recordPrompts: readonly string[],
  o: GenerateOptions): Promise<ResultRecord[][]> {
  const n = o.n ?? 1;
  const samples = await model.sample(prompts, {
    n, temperature: o.temperature ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0, maxTokens: o.maxTokens ?? 1024,
    stop: o.stop ?? ['Question', 'Answer'], parallel: o.parallel, threads: o.threads, lora: o.lora,
    onProgress: o.onProgress, signal: o.signal,
  });
  const out: ResultRecord[][] = problems.map(() => []);
  for (const s of samples) {
    const p = problems[s.promptIndex]!;
    const response = postprocessResponse(s.text);
    const scored = o.symbolic ? await checkSymbolic(response, p.gold ?? '', o.key) : check(response, p.gold ?? '', o.key);
    out[s.promptIndex]!.push({
      id: p.id, prompt: recordPrompts[s.promptIndex]!, response, pred: scored.pred, gold: scored.gold,
      result: p.gold !== undefined && scored.correct, num_tokens: s.tokens, finish_reason: s.finishReason,
    });
  }
  return out;
}
