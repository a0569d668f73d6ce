// The default thread count of sample() and score(), measured instead of assumed. On shared or virtual
// machines a second ggml thread can make a job 10–20× slower (its workers spin at every graph node's
// barrier while the other core is descheduled), and on tiny models it gains little even when the machine
// is quiet (README, "The embedded demo"). So the first job on a model without an explicit `threads` runs a
// short probe (1 thread against every physical core, alternating, the best of two each) and keeps the
// faster count, which must win by 15% to be chosen over one thread. The choice is cached per machine (CPU
// model and counts) and model size (file size rounded to a power of two) in
// <cache>/thread-calibration.json, so later processes skip the probe. An explicit `threads` always wins.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cacheRoot } from '../scripts/cache-paths.mjs';
import { writeFileAtomic } from './io/atomic.js';
import { loadedCpuSource } from './native.js';
import { physicalCores } from './threads.js';

/** What a probe measured (seconds of the best run per thread count) and what it chose. */
export interface ThreadCalibration {
  threads: number;
  seconds: Record<string, number>;
  measuredAt: string;
  /** Whether it came from the cache file rather than a probe in this process. */
  cached: boolean;
}

/** A probe runner: one small sampling job with `threads` threads (the model's own, through the compute queue). */
export type ProbeJob = (threads: number) => Promise<void>;

/** Bumped when the probe (Model.calibrateThreads) changes: older measurements are not reused. */
const PROBE_VERSION = 3;

/** More threads must be this much faster than one to be the default. */
const MARGIN = 1.15;

export const cacheDir = (): string => cacheRoot();
const cacheFile = () => path.join(cacheDir(), 'thread-calibration.json');

/**
 * The cache key: this machine (CPU model, logical and physical counts), the CPU backend loaded (one built here
 * runs other kernels than the prebuilt variants) and the model's size class.
 */
export function calibrationKey(modelBytes: number): string {
  const size = `2^${Math.round(Math.log2(Math.max(1, modelBytes)))}B`;
  const backend = loadedCpuSource() ?? 'unloaded';
  return `probe ${PROBE_VERSION}|${os.cpus()[0]?.model ?? 'unknown'}|${os.availableParallelism()} cpus|${physicalCores()} cores|cpu backend ${backend}|${size}`;
}

function readCache(): Record<string, Omit<ThreadCalibration, 'cached'>> {
  try {
    const data = JSON.parse(fs.readFileSync(cacheFile(), 'utf8')) as unknown;
    return data && typeof data === 'object' && !Array.isArray(data) ? data as Record<string, Omit<ThreadCalibration, 'cached'>> : {};
  } catch {
    return {}; // missing or damaged: measure again and rewrite it
  }
}

const inProcess = new Map<string, Promise<ThreadCalibration>>();

/** Whether calibration applies here: more than one core, and not switched off (W2S_THREAD_CALIBRATION=0). */
export function calibrationEnabled(): boolean {
  return physicalCores() > 1 && process.env.W2S_THREAD_CALIBRATION !== '0';
}

/**
 * The calibrated default for a model of `modelBytes`: cached when this machine measured that size before,
 * else measured now with `probe`. Without calibration (one core, or switched off) it is the physical cores.
 */
export function calibratedThreads(modelBytes: number, probe: ProbeJob): Promise<ThreadCalibration> {
  const cores = physicalCores();
  if (!calibrationEnabled()) return Promise.resolve({ threads: cores, seconds: {}, measuredAt: '', cached: false });
  const key = calibrationKey(modelBytes);
  let p = inProcess.get(key);
  if (!p) {
    p = measure(key, cores, probe);
    inProcess.set(key, p);
    // A failed probe (an aborted job) is not remembered: the next job measures again.
    p.catch(() => inProcess.delete(key));
  }
  return p;
}

async function measure(key: string, cores: number, probe: ProbeJob): Promise<ThreadCalibration> {
  const hit = readCache()[key];
  if (hit && Number.isInteger(hit.threads) && hit.threads >= 1 && hit.threads <= cores) return { ...hit, cached: true };
  const best: Record<number, number> = {};
  await probe(1); // warm-up: page in the weights, first-call allocations
  for (let round = 0; round < 2; round++) {
    for (const t of round === 0 ? [1, cores] : [cores, 1]) {
      const start = performance.now();
      await probe(t);
      best[t] = Math.min(best[t] ?? Infinity, (performance.now() - start) / 1000);
    }
  }
  const threads = best[cores]! * MARGIN < best[1]! ? cores : 1;
  const entry = { threads, seconds: { '1': best[1]!, [String(cores)]: best[cores]! }, measuredAt: new Date().toISOString() };
  try {
    fs.mkdirSync(cacheDir(), { recursive: true });
    await writeFileAtomic(cacheFile(), JSON.stringify({ ...readCache(), [key]: entry }, null, 2) + '\n');
  } catch {
    // A read-only home: the choice holds for this process only.
  }
  return { ...entry, cached: false };
}

/** Forgets this process's calibrations (tests). */
export function resetThreadCalibration(): void {
  inProcess.clear();
}
