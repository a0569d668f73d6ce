// The Generator interface: prompts in, samples out, whoever computes them. The local sampler
// (Model.sample, through LocalGenerator) and the remote one (lib/remote/openai.ts) both implement it, so the
// CLI and the method's generation steps do not care where the tokens come from.
import type { LoraAdapter, Model } from '../model.js';
import type { Sample, SampleOptions } from '../sample-options.js';

export interface GenerationProgress {
  /** Generated tokens so far (of the samples finished or known). */
  tokens: number;
  /** Samples finished, known ones included. */
  finished: number;
  total: number;
}

/** A sample, plus what some generators add. */
export interface GeneratedSample extends Sample {
  /** Log-probability of each generated token, when asked for and the engine offers it. */
  logprobs?: number[];
}

/** The sampling options every generator takes, documented once on SampleOptions (same meanings and defaults). */
export interface GenerationOptions extends Pick<SampleOptions, 'n' | 'temperature' | 'topP' | 'topK' | 'seed' | 'maxTokens' | 'stop'> {
  onProgress?: (p: GenerationProgress) => void;
  /**
   * Called once per sample as soon as it is final (remote: on each answer; local: when the native job
   * returns), for incremental persistence. Not called for `known` samples.
   */
  onSample?: (s: GeneratedSample) => void | Promise<void>;
  /** Samples already computed (e.g. read from a partial-results file): returned as they are, never asked again. */
  known?: (promptIndex: number, sampleIndex: number) => GeneratedSample | undefined;
  signal?: AbortSignal;
}

export interface Generator {
  /** One line naming what generates (for logs and manifests; never holds a secret). */
  readonly description: string;
  /** Results are ordered by (promptIndex, sampleIndex). */
  sample(prompts: readonly string[], options?: GenerationOptions): Promise<GeneratedSample[]>;
}

/** Options of the local sampler that have no remote meaning (see SampleOptions). */
export type LocalGeneratorOptions = Pick<SampleOptions, 'parallel' | 'threads' | 'contextSize' | 'kvCells' | 'batchSize' | 'parseSpecial' | 'highPrecision' | 'tokenIds' | 'attention'> & {
  lora?: SampleOptions['lora'];
};

/**
 * Model.sample as a Generator. `known` works per prompt: greedy runs skip the prompts whose n samples are
 * all known. The native streams are seeded by a prompt's index *in the call*, so a sampled (T > 0) run
 * draws every prompt again and returns the known samples in place of the new ones: the draws stay those of
 * an uninterrupted run.
 */
export class LocalGenerator implements Generator {
  readonly description: string;

  constructor(readonly model: Model, readonly options: LocalGeneratorOptions = {}) {
    const lora = options.lora;
    const names = lora === undefined ? [] : (Array.isArray(lora) ? lora : [lora]).map((l) => ('adapter' in l ? l.adapter.path : (l as LoraAdapter).path));
    this.description = `local ${model.path}${names.length ? ` + ${names.join(', ')}` : ''}`;
  }

  async sample(prompts: readonly string[], o: GenerationOptions = {}): Promise<GeneratedSample[]> {
    const n = o.n ?? 1;
    const known = o.known;
    const todo: number[] = [];
    const kept: GeneratedSample[] = [];
    const greedy = (o.temperature ?? 1) === 0;
    prompts.forEach((_, p) => {
      const have = known ? Array.from({ length: n }, (_, s) => known(p, s)) : [];
      if (known && have.every((x) => x !== undefined)) kept.push(...(have as GeneratedSample[]));
      else todo.push(p);
    });
    if (!greedy && todo.length > 0 && kept.length > 0) {
      kept.length = 0;
      todo.splice(0, todo.length, ...prompts.map((_, p) => p));
    }
    const keptTokens = kept.reduce((a, s) => a + s.tokens, 0);
    const total = prompts.length * n;
    const fresh = todo.length === 0 ? [] : await this.model.sample(todo.map((p) => prompts[p]!), {
      n, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, maxTokens: o.maxTokens, stop: o.stop,
      ...this.options, signal: o.signal,
      onProgress: o.onProgress && ((p) => o.onProgress!({ tokens: p.tokens + keptTokens, finished: p.finished + kept.length, total })),
    });
    // The native job numbers the subset from 0: map back; known samples win over fresh ones.
    const out: GeneratedSample[] = [...kept];
    for (const s of fresh) {
      const sample = { ...s, promptIndex: todo[s.promptIndex]! };
      const had = known?.(sample.promptIndex, sample.sampleIndex);
      if (had) out.push(had);
      else {
        out.push(sample);
        await o.onSample?.(sample);
      }
    }
    return out.sort((a, b) => a.promptIndex - b.promptIndex || a.sampleIndex - b.sampleIndex);
  }
}
