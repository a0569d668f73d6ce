// A seeded generator of GSM8K-like problems for the embedded toy world: multi-step arithmetic word
// problems whose worked solutions use GSM8K's calculator annotations and end in `#### <answer>`, so the
// method's loaders and the paper-faithful answer checker apply unchanged. Difficulty: steps and number range.
import { InvalidArgumentError } from '../errors.js';
import { createRng, type Rng } from '../pipeline/random.js';

export interface WorldProblem {
  id: string;
  question: string;
  /** GSM8K-style solution: one line per step with `<<a op b=c>>`, then `#### answer`. */
  answer: string;
  /** The final answer alone. */
  final: number;
  steps: number;
}

export interface ProblemOptions {
  /** Arithmetic steps per problem, inclusive range. Defaults to [1, 3]. */
  steps?: readonly [number, number];
  /** Largest starting quantity. Defaults to 20. */
  maxNumber?: number;
}

const NAMES = ['Ava', 'Ben', 'Cleo', 'Dan', 'Eve', 'Finn', 'Gia', 'Hugo', 'Ivy', 'Jack', 'Kai', 'Lena', 'Mia', 'Noah', 'Owen', 'Pia'];
const ITEMS = ['apples', 'marbles', 'stickers', 'books', 'coins', 'pencils', 'shells', 'cards', 'eggs', 'stamps'];

type Op = { kind: '+' | '-' | '*'; verb: (n: string, k: number, item: string) => string };
const OPS: Op[] = [
  { kind: '+', verb: (n, k, item) => `${n} finds ${k} more ${item}.` },
  { kind: '+', verb: (n, k, item) => `A friend gives ${n} ${k} ${item}.` },
  { kind: '-', verb: (n, k, item) => `${n} gives away ${k} ${item}.` },
  { kind: '-', verb: (n, k, item) => `${n} loses ${k} ${item}.` },
  { kind: '*', verb: (n, k, item) => `Then the number of ${item} ${n} has becomes ${k} times as many.` },
];

function one(rng: Rng, index: number, o: Required<ProblemOptions>): WorldProblem {
  const name = NAMES[rng.int(NAMES.length)]!;
  const item = ITEMS[rng.int(ITEMS.length)]!;
  const steps = o.steps[0] + rng.int(o.steps[1] - o.steps[0] + 1);
  let value = 2 + rng.int(o.maxNumber - 1);
  const story = [`${name} has ${value} ${item}.`];
  const lines: string[] = [];
  for (let s = 0; s < steps; s++) {
    // Keep quantities positive and small: no subtraction below 1, products only of small numbers.
    const candidates = OPS.filter((op) => (op.kind !== '-' || value > 2) && (op.kind !== '*' || value <= 30));
    const op = candidates[rng.int(candidates.length)]!;
    const k = op.kind === '-' ? 1 + rng.int(value - 1) : op.kind === '*' ? 2 + rng.int(2) : 1 + rng.int(o.maxNumber);
    const next = op.kind === '+' ? value + k : op.kind === '-' ? value - k : value * k;
    story.push(op.verb(name, k, item));
    lines.push(`${name} has ${value} ${op.kind} ${k} = <<${value}${op.kind}${k}=${next}>>${next} ${item}.`);
    value = next;
  }
  story.push(`How many ${item} does ${name} have now?`);
  return { id: `world_${index}`, question: story.join(' '), answer: `${lines.join('\n')}\n#### ${value}`, final: value, steps };
}

/** `count` problems from `seed`; the same seed and options always give the same problems. */
export function generateProblems(count: number, seed: number, options: ProblemOptions = {}): WorldProblem[] {
  const o: Required<ProblemOptions> = { steps: options.steps ?? [1, 3], maxNumber: options.maxNumber ?? 20 };
  if (!Number.isInteger(count) || count < 0) throw InvalidArgumentError.expected('non-negative integer', 'count', count);
  const [lo, hi] = o.steps;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi < lo) throw InvalidArgumentError.expected('integer range [lo, hi] with 1 <= lo <= hi', 'steps', o.steps);
  if (!Number.isInteger(o.maxNumber) || o.maxNumber < 2) throw InvalidArgumentError.expected('integer >= 2', 'maxNumber', o.maxNumber);
  const rng = createRng(seed);
  return Array.from({ length: count }, (_, i) => one(rng, i, o));
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
