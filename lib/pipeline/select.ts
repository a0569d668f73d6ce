// Stage I final-answer consistency (method.md §4.3): keep q iff pred_weak(q) !== '' and pred_weak(q) ===
// pred_icl(q); build the weak / icl / hybrid SFT sets and selection statistics. Owns no generation.

import { InvalidArgumentError } from '../errors.js';
import type { Id } from '../data/datasets.js';
import type { SftRecord } from '../data/formats.js';

/** One scored greedy generation (a `ResultRecord` fits). `pred` and `gold` are normalized (answer.ts). */
export interface Generation {
  id: Id;
  /** The zero-shot prompt of the question: every training set uses it, also for ICL responses. */
  prompt: string;
  response: string;
  pred: string;
  /** Verdict against gold, when known. Used only for statistics, never for selection. */
  result?: boolean;
  /** Normalized gold, when known (used for statistics when `result` is absent). */
  gold?: string;
  /** The response's generated ids and tokenizer (lib/pipeline/token-ids.ts), carried into the SFT records. */
  token_ids?: number[];
  tokenizer?: string;
}

/** The token fields of a generation, only when present (records without them stay the paper's bytes). */
const tokenFields = (g: Generation) => (g.token_ids && g.tokenizer ? { token_ids: g.token_ids, tokenizer: g.tokenizer } : {});

export interface SelectOptions {
  /**
   * Keep questions whose (equal) answers are both empty. Defaults to false, the stated rule; true
   * reproduces the released GSM8K sets, which kept 8 (round 1) and 11 (round 2) such questions.
   */
  keepEmpty?: boolean;
}

export interface SelectionStats {
  /** Questions considered (= weak generations). */
  total: number;
  kept: number;
  /** Dropped because the weak answer is empty. */
  droppedEmpty: number;
  /** Dropped because the two answers differ. */
  droppedDisagree: number;
  /** Kept questions whose weak answer is correct, or null when correctness is unknown for some. */
  keptCorrect: number | null;
  /** keptCorrect / kept (null when unknown or nothing kept): the paper's "precision". */
  precision: number | null;
  /** Accuracy of all weak generations, or null when unknown for some. */
  weakAccuracy: number | null;
}

export interface Selection {
  weak: SftRecord[];
  icl: SftRecord[];
  /** Both, interleaved: weak then icl for each kept question. */
  hybrid: SftRecord[];
  /** Kept ids in weak order. */
  ids: Id[];
  stats: SelectionStats;
}

function correctness(g: Generation): boolean | undefined {
  if (typeof g.result === 'boolean') return g.result;
  return g.gold === undefined ? undefined : g.pred === g.gold;
}

/** Count of `true`, or null when any value is unknown. */
function countTrue(values: Array<boolean | undefined>): number | null {
  return values.some((v) => v === undefined) ? null : values.filter(Boolean).length;
}

/**
 * Apply final-answer consistency between two generations of the same questions (round 1: the weak model
 * zero-shot vs the strong model with weak ICL demos; round 2: the weak-trained vs the icl-trained strong
 * model). Output follows the order of `weak`; every weak id needs exactly one ICL generation.
 */
export function selectConsistent(weak: readonly Generation[], icl: readonly Generation[], options: SelectOptions = {}): Selection {
  const iclById = new Map<Id, Generation>();
  for (const g of icl) {
    if (iclById.has(g.id)) throw new InvalidArgumentError(`Expected unique ids in the ICL generations but ${JSON.stringify(g.id)} repeats`);
    iclById.set(g.id, g);
  }
  const out: Omit<Selection, 'stats'> = { weak: [], icl: [], hybrid: [], ids: [] };
  const seen = new Set<Id>();
  let droppedEmpty = 0;
  let droppedDisagree = 0;
  const keptCorrectness: Array<boolean | undefined> = [];
  for (const w of weak) {
    if (seen.has(w.id)) throw new InvalidArgumentError(`Expected unique ids in the weak generations but ${JSON.stringify(w.id)} repeats`);
    seen.add(w.id);
    const c = iclById.get(w.id);
    if (c === undefined) throw new InvalidArgumentError(`Expected an ICL generation for id ${JSON.stringify(w.id)}`);
    if (w.pred === '' && !options.keepEmpty) {
      droppedEmpty++;
      continue;
    }
    if (w.pred !== c.pred) {
      droppedDisagree++;
      continue;
    }
    const weakRecord: SftRecord = { id: w.id, content: w.prompt, output: w.response, ...tokenFields(w) };
    const iclRecord: SftRecord = { id: w.id, content: w.prompt, output: c.response, ...tokenFields(c) };
    out.weak.push(weakRecord);
    out.icl.push(iclRecord);
    out.hybrid.push({ ...weakRecord }, { ...iclRecord }); // own objects, as the paper's deepcopy
    out.ids.push(w.id);
    keptCorrectness.push(correctness(w));
  }
  const keptCorrect = countTrue(keptCorrectness);
  const allCorrect = countTrue(weak.map(correctness));
  const stats: SelectionStats = {
    total: weak.length,
    kept: out.ids.length,
    droppedEmpty,
    droppedDisagree,
    keptCorrect,
    precision: keptCorrect === null || out.ids.length === 0 ? null : keptCorrect / out.ids.length,
    weakAccuracy: allCorrect === null || weak.length === 0 ? null : allCorrect / weak.length,
  };
  return { ...out, stats };
}
