// Chooses the default CPU thread count: one thread per physical core, never more threads than cores
// (ggml's threads spin-wait, so oversubscribing a 2-core machine is dramatically slower).
import fs from 'node:fs';
import os from 'node:os';
import { InvalidArgumentError } from './errors.js';

let cached: number | undefined;

/** Physical cores available to this process (Linux topology when readable, else logical CPUs). */
export function physicalCores(): number {
  if (cached !== undefined) return cached;
  const logical = Math.max(1, os.availableParallelism());
  let physical = logical;
  try {
    const cores = new Set<string>();
    for (const cpu of fs.readdirSync('/sys/devices/system/cpu').filter((d) => /^cpu\d+$/.test(d))) {
      const base = `/sys/devices/system/cpu/${cpu}/topology`;
      if (!fs.existsSync(`${base}/core_id`)) continue;
      cores.add(`${fs.readFileSync(`${base}/physical_package_id`, 'utf8').trim()}:${fs.readFileSync(`${base}/core_id`, 'utf8').trim()}`);
    }
    // The topology lists every CPU of the machine, the affinity mask may allow fewer: take the smaller.
    if (cores.size > 0) physical = Math.min(cores.size, logical);
  } catch {
    // Not Linux or no sysfs: logical CPUs it is.
  }
  cached = physical;
  return physical;
}

/** Default threads for decoding and training: every physical core. */
export function defaultThreads(): number {
  return physicalCores();
}

/**
 * Validates a thread count: 1 to the logical CPUs this process may use. More would only spin-wait (ggml's
 * workers busy-poll), turning a 1.5 s job into minutes, so it is an error rather than a silent slowdown.
 */
export function threadsOption(value: unknown): number {
  if (value === undefined) return defaultThreads();
  const max = Math.max(1, os.availableParallelism());
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(`Expected integer in [1, ${max}] for threads (this machine lets the process use ${max} CPU${max === 1 ? '' : 's'}) ` +
      `but received ${String(value)} of type ${typeof value}`);
  }
  return value;
}

/** The vector extensions ggml's CPU backend picks kernels by, as /proc/cpuinfo lists them. */
export function simdFlags(): string[] {
  try {
    const flags = new Set(/^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
    return ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vnni', 'avx512_bf16', 'amx_tile'].filter((f) => flags.has(f));
  } catch {
    return [];
  }
}
