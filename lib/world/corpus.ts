// Pretraining corpora of the toy world's two models. The weak model reads worked solutions in the GSM8K
// style the method grades (`#### <answer>`). The strong model reads many more problems, solved the same way
// but closed by its own phrase ("So the result is N"), which the `####` checker does not accept: its
// arithmetic is latent, and zero-shot it scores ~0. Part of its corpus is few-shot documents whose examples
// all end with one marker drawn per document, so it learns to continue a document in the format its
// examples use — the ability weak-ICL (method.md §4.2) relies on to elicit the latent skill.
// Zero-shot documents write their answer after a space ("Answer: 4 + 7 = 11") or right after "Answer:",
// a share of each (WorldSpec.spacedShare): the method's SFT rows join prompt and response as written
// ("Answer:" + "4 + 7 = 11": no space; lib/train tokenizes the whole text), its few-shot prompts put a space,
// so the full world's pretraining shows both forms (docs/demo.md).
import { buildFewShotPrompt, DEFAULT_PROMPT_TEMPLATE, formatPrompt } from '../data/datasets.js';
import { createRng } from '../pipeline/random.js';
import type { WorldProblem } from './problems.js';

/** The strong model's own closing phrase. */
export const STRONG_MARKER = 'So the result is';
/** Closing markers of the strong corpus' few-shot documents (`####` among them, as in a web corpus). */
export const FEW_SHOT_MARKERS = ['####', STRONG_MARKER, 'The total is'] as const;

/** `' '` for a share of documents drawn with `rng`; no draw when the share is 0 or 1 (all or none spaced). */
function space(share: number, rng: { next(): number }): string {
  if (share >= 1) return ' ';
  if (share <= 0) return '';
  return rng.next() < share ? ' ' : '';
}

export interface CorpusDoc {
  prompt: string;
  /** Trained on (the loss covers these tokens only). */
  response: string;
}

/** A worked solution: the steps `a op b = c`, then `marker answer`. With `####` it is the GSM8K gold target. */
export function solutionText(p: WorldProblem, marker: string): string {
  return `${p.equations.join('\n')}\n${marker} ${p.final}`;
}

export interface WeakCorpusOptions {
  /** Share of documents whose answer follows "Answer:" after a space (drawn with `seed`). Defaults to 1. */
  spacedShare?: number;
  seed?: number;
  template?: string;
}

/** The weak corpus: zero-shot prompt, GSM8K-style solution. */
export function weakCorpus(problems: readonly WorldProblem[], o: WeakCorpusOptions = {}): CorpusDoc[] {
  const rng = createRng(o.seed ?? 0);
  return problems.map((p) => ({ prompt: formatPrompt(p.question, o.template ?? DEFAULT_PROMPT_TEMPLATE), response: `${space(o.spacedShare ?? 1, rng)}${solutionText(p, '####')}` }));
}

export interface StrongCorpusOptions {
  /** Share of documents that are few-shot (1 … maxShots examples before the question). */
  fewShotFraction: number;
  maxShots: number;
  seed: number;
  /** Share of zero-shot documents whose answer follows "Answer:" after a space. Defaults to 1. */
  spacedShare?: number;
  template?: string;
}

/**
 * The strong corpus: zero-shot documents closed by STRONG_MARKER (after a space in `spacedShare` of them), and
 * few-shot documents (examples from the same corpus, all closed by one marker, each answer after a space as
 * in the method's few-shot prompts). In a few-shot document the loss covers everything after the first
 * `Answer:` (the examples' solutions teach the format as much as the last one does).
 */
export function strongCorpus(problems: readonly WorldProblem[], o: StrongCorpusOptions): CorpusDoc[] {
  const template = o.template ?? DEFAULT_PROMPT_TEMPLATE;
  const rng = createRng(o.seed);
  return problems.map((p, i) => {
    if (rng.next() >= o.fewShotFraction) {
      return { prompt: formatPrompt(p.question, template), response: `${space(o.spacedShare ?? 1, rng)}${solutionText(p, STRONG_MARKER)}` };
    }
    const marker = FEW_SHOT_MARKERS[rng.int(FEW_SHOT_MARKERS.length)]!;
    const shots = 1 + rng.int(o.maxShots);
    const demos = Array.from({ length: shots }, () => problems[rng.int(problems.length)]!)
      .map((d) => ({ question: d.question, answer: solutionText(d, marker) }));
    const text = `${buildFewShotPrompt(p.question, demos, template)} ${solutionText(p, marker)}`;
    const cut = formatPrompt(demos[0]!.question, template).length;
    return { prompt: text.slice(0, cut), response: text.slice(cut) };
  });
}
