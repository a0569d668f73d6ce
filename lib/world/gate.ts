// The toy world's quality gate: held-out accuracies of its two pretrained models, checked against the
// preset's bands. Shipped and rebuilt worlds pass the same gate, not the same bytes (pretraining is
// reproducible on one host, not across CPUs). It does not judge the method, only that the world is the one
// the README describes: a weak model that is right some of the time, and a strong model whose arithmetic is
// latent (0% under the `####` checker zero-shot) but shows in its own phrase and in few-shot prompts.
import { check } from '../data/answer.js';
import { buildFewShotPrompt, formatPrompt, postprocessResponse } from '../data/datasets.js';
import { loadModel } from '../model.js';
import { solutionText, STRONG_MARKER } from './corpus.js';
import type { WorldProblem } from './problems.js';

/** What the gate measures, each a fraction of held-out questions answered correctly (greedy). */
export const GATE_MEASURES = {
  weak: 'weak model, zero-shot, graded by `####`',
  strongZeroShot: 'strong model, zero-shot, graded by `####` (latent: should be ~0)',
  strongOwnPhrase: 'strong model, zero-shot, graded by its own phrase "So the result is"',
  strongFewShot: 'strong model, 4 gold examples closed by `####`, graded by `####`',
} as const;
export type GateMeasure = keyof typeof GATE_MEASURES;
export type GateFigures = Record<GateMeasure, number>;

export interface WorldGate {
  /** Held-out questions per measurement (plus 4 more as the few-shot examples). */
  questions: number;
  /** Tokens per answer (the method's generation.maxTokens). */
  maxTokens: number;
  /** Allowed [min, max] of each measure (fractions, inclusive). */
  bands: Record<GateMeasure, readonly [number, number]>;
}

export interface GateOptions {
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

const STOP = ['Question', 'Answer'];

/** Greedy answers of `prompts` by the model at `file`. */
async function answers(file: string, prompts: string[], maxTokens: number, o: GateOptions, progress: (done: number) => void): Promise<string[]> {
  const model = await loadModel(file);
  try {
    const out = await model.sample(prompts, {
      n: 1, temperature: 0, maxTokens, stop: STOP, threads: o.threads, signal: o.signal,
      onProgress: (p) => progress(p.finished),
    });
    const texts: string[] = new Array(prompts.length).fill('');
    for (const s of out) texts[s.promptIndex] = postprocessResponse(s.text);
    return texts;
  } finally {
    model.dispose();
  }
}

/**
 * Measures both models on held-out problems (`gate.questions` to answer, then 4 few-shot examples): the
 * figures the bands are checked against.
 */
export async function measureWorld(weakModel: string, strongModel: string, problems: readonly WorldProblem[], gate: WorldGate, o: GateOptions = {}): Promise<GateFigures> {
  const qs = problems.slice(0, gate.questions);
  const demos = problems.slice(gate.questions, gate.questions + 4).map((p) => ({ question: p.question, answer: solutionText(p, '####') }));
  if (qs.length < gate.questions || demos.length < 4) throw new Error(`measureWorld needs ${gate.questions + 4} held-out problems, got ${problems.length}`);
  const zeroShot = qs.map((p) => formatPrompt(p.question));
  const total = 3 * qs.length;
  let before = 0;
  const progress = (done: number) => o.onProgress?.(before + done, total);
  const share = (texts: string[], key: string) => texts.filter((t, i) => check(t, String(qs[i]!.final), key).correct).length / qs.length;

  const weak = await answers(weakModel, zeroShot, gate.maxTokens, o, progress);
  before += qs.length;
  const strong = await answers(strongModel, zeroShot, gate.maxTokens, o, progress);
  before += qs.length;
  const fewShot = await answers(strongModel, qs.map((p) => buildFewShotPrompt(p.question, demos)), gate.maxTokens, o, progress);
  return {
    weak: share(weak, '####'),
    strongZeroShot: share(strong, '####'),
    strongOwnPhrase: share(strong, STRONG_MARKER),
    strongFewShot: share(fewShot, '####'),
  };
}

/** The measures outside their bands, as lines a person can act on (empty: the gate passed). */
export function gateFailures(figures: GateFigures, gate: WorldGate): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return (Object.keys(GATE_MEASURES) as GateMeasure[]).flatMap((k) => {
    const [lo, hi] = gate.bands[k];
    const v = figures[k];
    return typeof v === 'number' && v >= lo && v <= hi ? [] : [`${GATE_MEASURES[k]}: ${typeof v === 'number' ? pct(v) : 'not measured'}, allowed ${pct(lo)} … ${pct(hi)}`];
  });
}
