import type { NativeTrainBatch, NativeTrainer } from '../../lib/native.js';

// Central finite differences against an analytic gradient, on the 6 largest gradient entries plus 10 spread
// over the parameter vector. The relative difference of each is |fd - g| / max(floor, |fd| + |g|): the floor
// keeps entries whose true gradient is ~0 from dividing noise by noise.
export const FD_STEP = 1e-2;

export async function finiteDifferenceCheck(
  p0: Float32Array, grad: Float32Array, loss: (p: Float32Array) => Promise<number>, floor: (gmax: number) => number,
): Promise<{ worst: number; n: number; gmax: number }> {
  const gmax = grad.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
  const picks = [...grad.keys()].sort((a, b) => Math.abs(grad[b]!) - Math.abs(grad[a]!)).slice(0, 6);
  for (let k = 0; k < 10; k++) picks.push((k * 7919 + 13) % p0.length);
  let worst = 0;
  for (const i of picks) {
    const plus = Float32Array.from(p0);
    plus[i] = p0[i]! + FD_STEP;
    const minus = Float32Array.from(p0);
    minus[i] = p0[i]! - FD_STEP;
    const fd = ((await loss(plus)) - (await loss(minus))) / (2 * FD_STEP);
    worst = Math.max(worst, Math.abs(fd - grad[i]!) / Math.max(floor(gmax), Math.abs(fd) + Math.abs(grad[i]!)));
  }
  return { worst, n: picks.length, gmax };
}

/** Fills the zero entries of `p` (a fresh LoRA's B) with seeded uniform values in ±scale/2, in place, so A's
 * gradients are not all zero. Returns `p`. */
export function randomizeZeros(p: Float32Array, seed = 7, scale = 0.1): Float32Array {
  let s = seed;
  for (let i = 0; i < p.length; i++) if (p[i] === 0) p[i] = (((s = (s * 16807) % 2147483647) / 2147483647) - 0.5) * scale;
  return p;
}

/**
 * The trainer's LoRA gradients of the SFT loss (Σ -log p over the batch's targets) at randomized parameters
 * against central finite differences of its own forward log-probs: the parameters, the analytic gradient and
 * the finite-difference result.
 */
export async function loraGradientCheck(tr: NativeTrainer, batch: NativeTrainBatch) {
  const p0 = randomizeZeros(tr.getParams());
  tr.setParams(p0);
  await tr.accumulate({ ...batch, lossScale: 1 });
  const grad = tr.getGrads();
  tr.clearGrads();
  const loss = async (p: Float32Array) => {
    tr.setParams(p);
    return -(await tr.logprobs({ ...batch, useLora: true })).reduce((a, b) => a + b, 0);
  };
  return { p0, grad, ...(await finiteDifferenceCheck(p0, grad, loss, () => 0.05)) };
}
