// A seeded generator of GSM8K-like problems for the embedded toy world: short multi-step arithmetic word
// problems whose worked solutions use GSM8K's calculator annotations and end in `#### <answer>`, so the
// method's loaders and the paper-faithful answer checker apply unchanged. Difficulty: steps and number range.
// The wording uses words the random models' tokenizer has as single pieces (~35 tokens a question), because
// tokens are what a tiny model pays for on a CPU.
import { InvalidArgumentError } from '../errors.js';
import { createRng, type Rng } from '../pipeline/random.js';

export interface WorldProblem {
  id: string;
  question: string;
  /** GSM8K-style solution: one line per step `a op b = <<a op b=c>>c`, then `#### answer`. */
  answer: string;
  /** The steps without annotations, `a op b = c`, one per line of the solution. */
  equations: string[];
  /** The final answer alone. */
  final: number;
  steps: number;
}

export interface ProblemOptions {
  /** Arithmetic steps per problem, inclusive range. Defaults to [1, 2]. */
  steps?: readonly [number, number];
  /** Largest starting quantity and largest number added or taken away. Defaults to 9. */
  maxNumber?: number;
  /** No quantity ever exceeds this (keeps the facts a tiny model must learn few). Defaults to 20. */
  maxValue?: number;
  /**
   * Solve two-step additions and subtractions in any valid order (the story's, swapped, or both amounts
   * combined first), drawn per problem, as different authors would. Defaults to false (the story's order).
   * Several paths to one answer let a model's samples disagree on the way yet agree on the answer.
   */
  anyOrder?: boolean;
}

const PEOPLE: [string, string][] = [['Ava', 'she'], ['Ben', 'he'], ['Mia', 'she'], ['Sam', 'he'], ['Kim', 'she'], ['Tom', 'he']];
const ITEMS = ['apples', 'books', 'eggs', 'cookies', 'cars', 'boxes', 'bags', 'cups', 'pieces'];
const capital = (s: string) => s[0]!.toUpperCase() + s.slice(1);

function one(rng: Rng, pathRng: Rng, index: number, o: Required<ProblemOptions>): WorldProblem {
  const [name, pronoun] = PEOPLE[rng.int(PEOPLE.length)]!;
  const item = ITEMS[rng.int(ITEMS.length)]!;
  const steps = o.steps[0] + rng.int(o.steps[1] - o.steps[0] + 1);
  let value = 2 + rng.int(o.maxNumber - 1);
  const story = [`${name} has ${value} ${item}.`];
  const start = value;
  const ops: [Op, number][] = [];
  for (let s = 0; s < steps; s++) {
    // Quantities stay in 1 … maxValue; additions and subtractions twice as likely as products.
    const kinds = (['+', '+', '-', '-', '*'] as const).filter((k) => (k !== '+' || value < o.maxValue) && (k !== '-' || value > 2) && (k !== '*' || value * 2 <= o.maxValue));
    const kind: Op = kinds[rng.int(kinds.length)]!;
    let k: number;
    let next: number;
    if (kind === '+') {
      k = 1 + rng.int(Math.min(o.maxNumber, o.maxValue - value));
      next = value + k;
      story.push(`${capital(pronoun)} ${rng.int(2) ? 'buys' : 'gets'} ${k} more.`);
    } else if (kind === '-') {
      k = 1 + rng.int(Math.min(o.maxNumber, value - 1));
      next = value - k;
      story.push(`${capital(pronoun)} ${rng.int(2) ? 'sells' : 'gives away'} ${k}.`);
    } else {
      k = value * 3 <= o.maxValue ? 2 + rng.int(2) : 2;
      next = value * k;
      story.push(`Then ${pronoun} has ${k === 2 ? 'twice' : 'three times'} as many.`);
    }
    ops.push([kind, k]);
    value = next;
  }
  story.push(`How many ${item} does ${pronoun} have left?`);
  const paths = solutionPaths(start, ops, o.maxValue);
  // From a stream of its own: the problems are the same with or without varied orders.
  const path = o.anyOrder ? paths[pathRng.int(paths.length)]! : paths[0]!;
  const annotated = path.map(([a, op, b, c]) => `${a} ${op} ${b} = <<${a}${op}${b}=${c}>>${c}`);
  const equations = path.map(([a, op, b, c]) => `${a} ${op} ${b} = ${c}`);
  return { id: `world_${index}`, question: story.join(' '), answer: `${annotated.join('\n')}\n#### ${value}`, equations, final: value, steps };
}

type Op = '+' | '-' | '*';
type Step = [number, Op, number, number];
const apply = (a: number, op: Op, b: number) => (op === '+' ? a + b : op === '-' ? a - b : a * b);

/**
 * The valid solutions of `start op1 k1 op2 k2 …`, the story's order first. Two additions or subtractions
 * may also be swapped, or their amounts combined first (k1 + k2, then one step); every intermediate
 * quantity stays within 1 … maxValue.
 */
export function solutionPaths(start: number, ops: readonly [Op, number][], maxValue: number): Step[][] {
  const chain = (order: readonly [Op, number][]): Step[] => {
    let v = start;
    return order.map(([op, k]) => {
      const next = apply(v, op, k);
      const step: Step = [v, op, k, next];
      v = next;
      return step;
    });
  };
  const paths = [chain(ops)];
  if (ops.length !== 2 || ops.some(([op]) => op === '*')) return paths;
  const inRange = (p: Step[]) => p.every(([, , , c]) => c >= 1 && c <= maxValue);
  const swapped = chain([ops[1]!, ops[0]!]);
  if (inRange(swapped)) paths.push(swapped);
  const [[op1, k1], [op2, k2]] = ops as [[Op, number], [Op, number]];
  if (op1 === op2 && k1 + k2 <= maxValue) {
    const sum = k1 + k2;
    paths.push([[k1, '+', k2, sum], [start, op1, sum, apply(start, op1, sum)]]);
  }
  return paths;
}

function resolve(options: ProblemOptions): Required<ProblemOptions> {
  const o: Required<ProblemOptions> = {
    steps: options.steps ?? [1, 2], maxNumber: options.maxNumber ?? 9, maxValue: options.maxValue ?? 20, anyOrder: options.anyOrder ?? false,
  };
  const [lo, hi] = o.steps;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi < lo) throw InvalidArgumentError.expected('integer range [lo, hi] with 1 <= lo <= hi', 'steps', o.steps);
  if (!Number.isInteger(o.maxNumber) || o.maxNumber < 2) throw InvalidArgumentError.expected('integer >= 2', 'maxNumber', o.maxNumber);
  if (!Number.isInteger(o.maxValue) || o.maxValue < o.maxNumber + 1) throw InvalidArgumentError.expected('integer > maxNumber', 'maxValue', o.maxValue);
  if (typeof o.anyOrder !== 'boolean') throw InvalidArgumentError.expected('boolean', 'anyOrder', o.anyOrder);
  return o;
}

/** `count` problems from `seed`; the same seed and options always give the same problems. */
export function generateProblems(count: number, seed: number, options: ProblemOptions = {}): WorldProblem[] {
  if (!Number.isInteger(count) || count < 0) throw InvalidArgumentError.expected('non-negative integer', 'count', count);
  const o = resolve(options);
  const rng = createRng(seed);
  const pathRng = createRng(seed + 0x5eed);
  return Array.from({ length: count }, (_, i) => one(rng, pathRng, i, o));
}

/**
 * The first `count` problems of `seed`'s stream whose question is not in `exclude` (pretraining corpora that
 * never contain a split's question). The stream is prefix-stable, so drawing more never reorders the kept ones.
 */
export function generateProblemsExcluding(count: number, seed: number, options: ProblemOptions, exclude: ReadonlySet<string>): WorldProblem[] {
  for (let draw = count; ; draw = Math.ceil(draw * 1.5) + 1) {
    const kept = generateProblems(draw, seed, options).filter((p) => !exclude.has(p.question));
    if (kept.length >= count) return kept.slice(0, count);
    if (draw > 20 * count + 100) throw new InvalidArgumentError(`Only ${kept.length} of ${count} problems avoid the excluded questions: raise maxNumber or steps`);
  }
}

export interface WorldSplits {
  train1: WorldProblem[];
  train2: WorldProblem[];
  test: WorldProblem[];
}

/** Disjoint train_1 / train_2 / test splits (no question text repeats across splits). */
export function generateSplits(sizes: { train1: number; train2: number; test: number }, seed: number, options: ProblemOptions = {}): WorldSplits {
  const total = sizes.train1 + sizes.train2 + sizes.test;
  const seen = new Set<string>();
  const pool: WorldProblem[] = [];
  // Draw until enough distinct questions exist (duplicates are rare; the loop bounds the attempts).
  for (let round = 0; pool.length < total && round < 20; round++) {
    for (const p of generateProblems(total, seed + round * 7919, options)) {
      if (pool.length < total && !seen.has(p.question)) {
        seen.add(p.question);
        pool.push({ ...p, id: `world_${pool.length}` });
      }
    }
  }
  if (pool.length < total) throw new InvalidArgumentError(`Only ${pool.length} distinct problems for ${total} requested: raise maxNumber or steps`);
  return { train1: pool.slice(0, sizes.train1), train2: pool.slice(sizes.train1, sizes.train1 + sizes.train2), test: pool.slice(sizes.train1 + sizes.train2) };
}
