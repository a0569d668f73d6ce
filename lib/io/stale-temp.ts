// Removal of temp files that a killed writer left beside an output: `<file>.tmp-<pid>` (native
// write_gguf_atomic, lib/gguf/writer.ts) and `.<name>.tmp-<pid>-<ms>` (lib/io/atomic.ts writeFileAtomic).
// Only names of exactly those shapes, for the given outputs, whose writer process is gone.
import fs from 'node:fs';
import path from 'node:path';

/** True unless `pid` surely names no running process (kill(pid, 0) fails with ESRCH). */
export function isLiveProcess(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // 0 and negatives address process groups: never "dead"
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'; // EPERM: alive, another user's
  }
}

/** The writer's PID if `name` is a temp name of output `base` (see the file comment), else undefined. */
export function tempOwnerPid(base: string, name: string): number | undefined {
  let rest: string;
  if (name.startsWith(`${base}.tmp-`)) {
    rest = name.slice(base.length + 5);
    if (!/^[1-9]\d{0,9}$/.test(rest)) return undefined;
  } else if (name.startsWith(`.${base}.tmp-`)) {
    rest = name.slice(base.length + 6);
    const m = /^([1-9]\d{0,9})-\d{1,16}$/.exec(rest);
    if (!m) return undefined;
    rest = m[1]!;
  } else return undefined;
  return Number(rest);
}

/**
 * Removes the temp files of `outputs` left by processes that no longer run; returns the paths removed.
 * Files named in `keep` (the run's inputs, e.g. a resume file that happens to have a temp's name) stay.
 * Regular files only (no links, folders); a folder that cannot be listed is skipped, as is a file that
 * vanished or cannot be removed: this is clean-up and must never stop the run.
 */
export async function removeStaleTemps(outputs: readonly string[], keep: readonly (string | undefined)[] = []): Promise<string[]> {
  const kept = new Set(keep.filter((k): k is string => k !== undefined).map((k) => path.resolve(k)));
  const byDir = new Map<string, Set<string>>();
  for (const file of outputs) {
    const abs = path.resolve(file);
    const dir = path.dirname(abs);
    if (!byDir.has(dir)) byDir.set(dir, new Set());
    byDir.get(dir)!.add(path.basename(abs));
  }
  const removed: string[] = [];
  for (const [dir, bases] of byDir) {
    let names: string[];
    try {
      names = await fs.promises.readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (bases.has(name)) continue; // an output itself, even one named like a temp
      const pid = [...bases].map((b) => tempOwnerPid(b, name)).find((p) => p !== undefined);
      if (pid === undefined || isLiveProcess(pid)) continue;
      const file = path.join(dir, name);
      if (kept.has(file)) continue;
      try {
        if (!(await fs.promises.lstat(file)).isFile()) continue;
        await fs.promises.rm(file);
        removed.push(file);
      } catch {
        // gone already, or not ours to remove
      }
    }
  }
  return removed;
}
