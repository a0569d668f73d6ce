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
