// Chooses the default CPU thread count: one thread per physical core, never more threads than cores
// (ggml's threads spin-wait, so oversubscribing a 2-core machine is dramatically slower).
import fs from 'node:fs';
import os from 'node:os';

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
