// Per-request seeds for remote generation: a pure function of (seed, promptIndex, sampleIndex), so a re-run,
// a retry or a resumed run asks the server for the same draw. 31 bits: engines take int32 or uint32 seeds
// (llama-server reserves 0xFFFFFFFF for "random").
import crypto from 'node:crypto';

/** sampleIndex -1 stands for "all samples of the prompt" (one request with `n`). */
export function requestSeed(seed: number, promptIndex: number, sampleIndex: number): number {
  const h = crypto.createHash('sha256').update(`w2s-seed:${seed}:${promptIndex}:${sampleIndex}`).digest();
  return h.readUInt32BE(0) & 0x7fffffff;
}
