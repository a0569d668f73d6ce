// A tiny seeded PRNG (mulberry32) for every random choice of the pipeline: demonstrations, pair sides.
// Deterministic across platforms and Node versions; not Python's Mersenne Twister (the paper's exact draws
// cannot be reproduced anyway: its 10 sampled generations per question are not released).

import { InvalidArgumentError } from '../errors.js';

export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** k distinct elements chosen uniformly without replacement, in draw order (like Python's random.sample). */
  sample<T>(items: readonly T[], k: number): T[];
}

export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed)) throw InvalidArgumentError.expected('a safe integer', 'seed', seed);
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n <= 0) throw InvalidArgumentError.expected('a positive integer', 'n', n);
    return Math.floor(next() * n);
  };
  const sample = <T>(items: readonly T[], k: number): T[] => {
    if (!Number.isInteger(k) || k < 0 || k > items.length) {
      throw InvalidArgumentError.expected(`an integer in [0, ${items.length}]`, 'k', k);
    }
    const pool = items.slice();
    const out: T[] = [];
    for (let i = 0; i < k; i++) {
      const j = i + int(pool.length - i); // partial Fisher–Yates
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      out.push(pool[i]!);
    }
    return out;
  };
  return { next, int, sample };
}
