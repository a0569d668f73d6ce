// Output paths checked before any work starts: an output never names an input (or another output), its
// folder exists and is writable, and it is a regular file, absent, or a device/FIFO written in place.
// Identity is by (device, inode) after following links, so `./a/../a/f`, symlinks and hard links all alias.
import fs from 'node:fs';
import path from 'node:path';
import { OutputError } from '../errors.js';

/** A path the command reads or writes, with the name the user gave it (`--out`, `model`, …). */
export interface NamedPath {
  name: string;
  path: string;
  /** Refuse devices and FIFOs too (files written by temp + rename, such as GGUF outputs). */
  regularFile?: boolean;
}

interface Resolved extends NamedPath {
  /** `dev:ino` of an existing file, else undefined. */
  id?: string;
  /** Canonical absolute path: the real path of the file, or of its folder plus the base name. */
  canonical: string;
}

const idOf = (s: fs.Stats) => `${s.dev}:${s.ino}`;

async function statOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fs.promises.stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function resolveInput(p: NamedPath): Promise<Resolved | undefined> {
  const s = await statOrUndefined(p.path).catch(() => undefined);
  if (!s) return undefined; // a missing input is its reader's error, with its own message
  return { ...p, id: idOf(s), canonical: await fs.promises.realpath(p.path) };
}

async function resolveOutput(p: NamedPath): Promise<Resolved & { stat?: fs.Stats }> {
  const abs = path.resolve(p.path);
  let s: fs.Stats | undefined;
  try {
    s = await statOrUndefined(abs);
  } catch (err) {
    throw new OutputError(`Cannot use ${p.path} for ${p.name}: ${(err as Error).message}`, { cause: err });
  }
  if (s) {
    if (s.isDirectory()) throw new OutputError(`${p.name} ${p.path} is a folder; give a file path inside it`);
    if (!s.isFile() && (p.regularFile || (!s.isCharacterDevice() && !s.isFIFO()))) {
      throw new OutputError(`${p.name} ${p.path} is not a regular file; give a file path`);
    }
    return { ...p, id: idOf(s), canonical: await fs.promises.realpath(abs), stat: s };
  }
  const dir = path.dirname(abs);
  const ds = await statOrUndefined(dir).catch(() => undefined);
  if (!ds) throw new OutputError(`The folder of ${p.name} ${p.path} does not exist; create ${dir} first`);
  if (!ds.isDirectory()) throw new OutputError(`The folder of ${p.name} ${p.path} (${dir}) is not a folder`);
  return { ...p, canonical: path.join(await fs.promises.realpath(dir), path.basename(abs)) };
}

async function assertWritable(o: Resolved & { stat?: fs.Stats }): Promise<void> {
  // Regular files are replaced by rename, which needs the folder writable; devices and FIFOs are written in place.
  const target = o.stat && !o.stat.isFile() ? o.canonical : path.dirname(o.canonical);
  try {
    await fs.promises.access(target, fs.constants.W_OK);
  } catch {
    throw new OutputError(`Cannot write ${o.name} ${o.path}: ${target} is not writable by this user; choose another path or fix its permissions`);
  }
}

/**
 * Throws OutputError when an output would overwrite an input or another output, or cannot be written.
 * Run it before the work, so a bad path costs nothing. Inputs that do not exist are skipped.
 */
export async function checkOutputPaths(outputs: readonly NamedPath[], inputs: readonly NamedPath[]): Promise<void> {
  const ins = (await Promise.all(inputs.map(resolveInput))).filter((r): r is Resolved => r !== undefined);
  const outs: Resolved[] = [];
  for (const p of outputs) {
    const o = await resolveOutput(p);
    const input = ins.find((i) => (o.id !== undefined && i.id === o.id) || i.canonical === o.canonical);
    if (input) {
      throw new OutputError(`${o.name} ${o.path} is the same file as ${input.name} ${input.path}; writing it would destroy the input: choose another output path`);
    }
    const other = outs.find((q) => (o.id !== undefined && q.id === o.id) || q.canonical === o.canonical);
    if (other && !(o.stat && !o.stat.isFile())) {
      throw new OutputError(`${o.name} ${o.path} and ${other.name} ${other.path} are the same file; give each output its own path`);
    }
    await assertWritable(o);
    outs.push(o);
  }
}
