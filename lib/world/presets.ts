// The toy world's settings: problem difficulty, the two models and their pretraining, the split sizes and
// the options of the method's run. `full` is the README's demo (shows the method working, ~10 min on a
// 2-core CPU); `quick` runs every step on a smaller world in a couple of minutes (CI), with no claim
// about the resulting accuracies. Every value here was chosen by measurement: README § "The embedded demo".
import type { ProblemOptions } from './problems.js';

export interface WorldModelSpec {
  layers: number;
  embd: number;
  heads: number;
  kvHeads: number;
  ff: number;
  /** Pretraining problems (documents). */
  corpus: number;
  epochs: number;
  /** Pretraining is LoRA of this rank on a random base, merged into the weights afterwards. */
  rank: number;
  lr: number;
  batch: number;
}

export interface WorldSpec {
  problems: Required<ProblemOptions>;
  weak: WorldModelSpec;
  strong: WorldModelSpec & { fewShotFraction: number; maxShots: number };
  splits: { train1: number; train2: number; test: number };
  /** Options of the method's run (the `w2s run` config keys `train`, `stage1`, `stage2`, `generation`). */
  run: Record<string, unknown>;
}

// Method training: the paper's SFT learning rate (2e-4) for the strong model, a faster one for the weak
// model's SFT (it starts from a model that already knows the style). Stage II is DPO at lr 1e-5 (the middle
// of the paper's range), two epochs: on these near-perfect pairs ORPO's loss starts near 0 and it degraded
// the model, more so at higher learning rates (docs/demo.md).
const methodTrain = { rank: 16, alpha: 16, lr: 2e-4, epochs: 2, batch: 16, maxLen: 256 };

const FULL: WorldSpec = {
  problems: { steps: [1, 2], maxNumber: 9, maxValue: 20, anyOrder: false },
  weak: { layers: 1, embd: 96, heads: 4, kvHeads: 2, ff: 256, corpus: 5000, epochs: 3, rank: 32, lr: 3e-3, batch: 16 },
  strong: { layers: 4, embd: 128, heads: 4, kvHeads: 2, ff: 384, corpus: 3000, epochs: 3, rank: 64, lr: 3e-3, batch: 16, fewShotFraction: 0.5, maxShots: 4 },
  splits: { train1: 500, train2: 1000, test: 1000 },
  run: {
    generation: { maxTokens: 48 },
    train: { weak: { ...methodTrain, lr: 1e-3 }, strong: methodTrain, preference: { ...methodTrain, lr: 1e-5 } },
    stage2: { samples: 10, algorithm: 'dpo' },
  },
};

/** The full world with smaller models, corpora and splits: only the differences are written out. */
const QUICK: WorldSpec = {
  ...FULL,
  weak: { ...FULL.weak, embd: 64, ff: 192, corpus: 2000 },
  strong: { ...FULL.strong, layers: 3, embd: 96, ff: 256, corpus: 1500, epochs: 2, rank: 32 },
  splits: { train1: 100, train2: 200, test: 100 },
  run: {
    ...FULL.run,
    // Short training needs a higher learning rate to pick up the answer format at all.
    train: { weak: { ...methodTrain, lr: 1e-3 }, strong: { ...methodTrain, lr: 1e-3 }, preference: { ...methodTrain, epochs: 1, lr: 5e-5 } },
    // Below T = 1 so that the barely trained strong model's votes can reach the pair thresholds.
    stage2: { ...(FULL.run.stage2 as object), samples: 4, temperature: 0.7 },
  },
};

export const WORLD_PRESETS: Record<'full' | 'quick', WorldSpec> = { full: FULL, quick: QUICK };
