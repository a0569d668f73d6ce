// Generation that survives interruption: a Generator's samples go to a partial-results file
// (lib/remote/journal.ts) as they arrive, and a re-run of the same request asks only for what is missing.
// The caller writes its final output and then calls done() to delete the partial file.
import { SampleJournal, promptsHash, type JournalIdentity } from '../remote/journal.js';
import type { GeneratedSample, GenerationOptions, Generator } from './generator.js';

export interface ResumableOptions extends Omit<GenerationOptions, 'known' | 'onSample'> {
  /** The partial-results file. */
  partial: string;
  /** Everything else the draws depend on (model name, adapter, logprobs…); never a secret. */
  identity?: Record<string, unknown>;
  onSample?: GenerationOptions['onSample'];
}

export interface ResumableResult {
  samples: GeneratedSample[];
  /** Samples read back from the partial file instead of being generated. */
  resumed: number;
  /** Deletes the partial file: call it once the samples are safely stored elsewhere. */
  done(): void;
}

/** The identity of a request in a partial-results file. */
export function generationIdentity(prompts: readonly string[], o: GenerationOptions, extra: Record<string, unknown> = {}): JournalIdentity {
  return {
    prompts: promptsHash(prompts), promptCount: prompts.length, n: o.n ?? 1, temperature: o.temperature ?? 1, topP: o.topP ?? 1, topK: o.topK ?? 0,
    seed: o.seed ?? 0, maxTokens: o.maxTokens ?? 256, stop: [...(o.stop ?? [])], ...extra,
  };
}

export async function sampleResumable(gen: Generator, prompts: readonly string[], o: ResumableOptions): Promise<ResumableResult> {
  // A remote generator checks the server (model served, key accepted) first, so a bad request writes nothing.
  const withInfo = gen as Generator & { info?: (signal?: AbortSignal) => Promise<unknown> };
  if (typeof withInfo.info === 'function') await withInfo.info(o.signal);
  const { partial, identity, onSample, ...options } = o;
  const journal = SampleJournal.open(partial, generationIdentity(prompts, options, identity));
  const resumed = journal.size;
  try {
    const samples = await gen.sample(prompts, {
      ...options, known: journal.known,
      onSample: async (s) => {
        journal.append(s);
        await onSample?.(s);
      },
    });
    journal.close();
    return { samples, resumed, done: () => journal.remove() };
  } catch (err) {
    journal.close();
    throw err;
  }
}
