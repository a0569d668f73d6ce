// Learning-rate schedules: linear warmup, then cosine or linear decay to minLrRatio·lr, or constant.
export type ScheduleKind = 'cosine' | 'linear' | 'constant';

/** Learning rate of optimizer step `step` (0-based) out of `total`. */
export function learningRate(step: number, total: number, lr: number, warmupSteps: number, kind: ScheduleKind, minLrRatio = 0): number {
  if (warmupSteps > 0 && step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  if (kind === 'constant') return lr;
  const span = Math.max(1, total - warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - warmupSteps) / span));
  const floor = lr * minLrRatio;
  const shape = kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return floor + (lr - floor) * shape;
}
