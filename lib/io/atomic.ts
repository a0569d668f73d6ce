// Atomic file output: write to a temp file in the same folder, fsync, then rename over the target, so a
// crash never leaves a half-written file under the final name. Devices and FIFOs (/dev/stdout, a pipe)
// are written in place: renaming over them would replace the node with a regular file.
import fs from 'node:fs';
import path from 'node:path';
import { OutputError } from '../errors.js';

const HINTS: Record<string, string> = {
  ENOSPC: 'the disk is full: free space or choose another folder',
  EDQUOT: 'the disk quota is exhausted: free space or choose another folder',
  EACCES: 'permission denied: choose another path or fix its permissions',
  EPERM: 'permission denied: choose another path or fix its permissions',
  EROFS: 'the file system is read-only: choose another folder',
  ENOENT: 'its folder does not exist: create it first',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder: give a file path',
};

/** The temp name beside `file` that writeFileAtomic uses (lib/io/stale-temp.ts removes dead ones). */
export function atomicTempName(file: string, pid = process.pid): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${pid}-${Date.now()}`);
}

function outputError(file: string, err: unknown): OutputError {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  const hint = HINTS[code] ?? (err as Error)?.message ?? String(err);
  return new OutputError(`Cannot write ${file}: ${hint}${code ? ` (${code})` : ''}`, { cause: err });
}

async function isDeviceOrFifo(file: string): Promise<boolean> {
  try {
    const s = await fs.promises.stat(file);
    return s.isCharacterDevice() || s.isFIFO() || s.isBlockDevice();
  } catch {
    return false;
  }
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  if (await isDeviceOrFifo(file)) {
    try {
      await fs.promises.writeFile(file, data);
    } catch (err) {
      throw outputError(file, err);
    }
    return;
  }
  const tmp = atomicTempName(file);
  try {
    const handle = await fs.promises.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw outputError(file, err);
  }
}

/** JSON lines (one object per line, trailing newline). */
export function toJsonl(rows: readonly unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
}
