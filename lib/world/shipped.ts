// The world models that ship in the package (worlds/): a manifest names, per preset and seed, the two
// pretrained models, how they were built (command, code version, host, threads, time), their pretraining
// statistics, their quality-gate figures and each file's sha256. `w2s demo` copies them into its world
// cache after checking the hashes, so the default run starts at the method; `--rebuild-world` trains them
// here instead. This file reads, checks and writes that folder; it does not train or measure anything.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../io/atomic.js';
import { sha256 } from '../pipeline/run/steps.js';
import { W2sError } from '../errors.js';
import { simdFlags } from '../threads.js';
import type { GateFigures } from './gate.js';

export const MANIFEST = 'manifest.json';

export interface ShippedFile {
  /** Relative to the worlds folder. */
  path: string;
  sha256: string;
  bytes: number;
}

export interface ShippedWorld {
  preset: string;
  seed: number;
  /** sha256 of what the models depend on (lib/world/build.ts worldKey): a changed preset never matches stale models. */
  worldKey: string;
  files: { weak: ShippedFile; strong: ShippedFile };
  build: {
    command: string;
    /** Package version and `git describe --always --dirty` of the tree that built them (null outside a clone). */
    version: string;
    git: string | null;
    /** `simd`: the CPU's vector extensions that ggml uses (from /proc/cpuinfo; empty where unreadable). */
    host: { cpu: string; cpus: number; simd: string[]; platform: string; node: string };
    threads: number | null;
    builtAt: string;
    /** Pretraining wall clock of each model. */
    seconds: { weak: number; strong: number };
    /**
     * Set on worlds pretrained before models were stored as Q8_0 (lib/world/build.ts WORLD_FORMAT 4) and
     * converted afterwards: the sha256 of the F32 files the Q8_0 ones were rounded from (by the same rounding a
     * rebuild applies after its merge, lib/lora/merge.ts).
     */
    stored?: { as: 'q8_0'; from: { weak: string; strong: string } };
  };
  /** The pretraining steps' statistics (documents, steps, first and last loss, parameters). */
  stats: { weak: Record<string, unknown>; strong: Record<string, unknown> };
  /** The quality gate's figures on this host when they were built. */
  gate: GateFigures;
}

export interface WorldsManifest {
  format: 1;
  about: string;
  worlds: ShippedWorld[];
}

/** The package root: the nearest folder above this file whose package.json names weak2strong. */
function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === 'weak2strong') return dir;
    if (path.dirname(dir) === dir) throw new W2sError('ERR_W2S_WORLD_INTEGRITY', `weak2strong: no package.json above ${here}`);
  }
}

/** The worlds folder that ships with the package. */
export function shippedWorldsDir(): string {
  return path.join(packageRoot(), 'worlds');
}

const ABOUT = 'Pretrained toy-world models of `w2s demo` (README, "The embedded demo"). Each entry says how it was built; ' +
  'rebuild with `w2s demo --rebuild-world --seed N`. A rebuilt world must pass the same quality gate, not reproduce these bytes.';

export function readWorldsManifest(dir: string): WorldsManifest {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) return { format: 1, about: ABOUT, worlds: [] };
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as WorldsManifest;
  if (m.format !== 1 || !Array.isArray(m.worlds)) throw new W2sError('ERR_W2S_WORLD_INTEGRITY', `${file}: not a worlds manifest of format 1`);
  return m;
}

export function findShippedWorld(dir: string, worldKey: string, seed: number): ShippedWorld | undefined {
  return readWorldsManifest(dir).worlds.find((w) => w.worldKey === worldKey && w.seed === seed);
}

/** The absolute path of a shipped model after checking its size and sha256 against the manifest. */
export function verifiedShippedFile(dir: string, f: ShippedFile): string {
  const file = path.join(dir, f.path);
  const hint = 'the package is damaged or was edited; reinstall it, or rebuild the world with `w2s demo --rebuild-world`';
  if (!fs.existsSync(file)) throw new W2sError('ERR_W2S_WORLD_INTEGRITY', `Shipped world model ${file} is missing: ${hint}`);
  const data = fs.readFileSync(file);
  const got = sha256(data);
  if (data.length !== f.bytes || got !== f.sha256) {
    throw new W2sError('ERR_W2S_WORLD_INTEGRITY', `Shipped world model ${file} does not match ${path.join(dir, MANIFEST)} ` +
      `(sha256 ${got.slice(0, 12)}…, ${data.length} bytes; expected ${f.sha256.slice(0, 12)}…, ${f.bytes} bytes): ${hint}`);
  }
  return file;
}

/** `git describe --always --dirty` of the package's tree, or null outside a git clone. */
function gitVersion(root: string): string | null {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null;
  } catch {
    return null;
  }
}

export interface SaveWorldInput {
  preset: string;
  seed: number;
  worldKey: string;
  weakModel: string;
  strongModel: string;
  command: string;
  threads: number | null;
  seconds: { weak: number; strong: number };
  stats: ShippedWorld['stats'];
  gate: GateFigures;
}

/**
 * Copies a built world's two models into `dir` (`<preset>-seed<N>/weak.gguf`, `strong.gguf`) and adds or
 * replaces its manifest entry (the manifest is rewritten atomically, entries sorted by preset and seed).
 */
export async function saveWorld(dir: string, w: SaveWorldInput): Promise<ShippedWorld> {
  const root = packageRoot();
  const sub = `${w.preset}-seed${w.seed}`;
  fs.mkdirSync(path.join(dir, sub), { recursive: true });
  const put = (from: string, name: string): ShippedFile => {
    const rel = `${sub}/${name}`;
    fs.copyFileSync(from, path.join(dir, rel));
    const data = fs.readFileSync(path.join(dir, rel));
    return { path: rel, sha256: sha256(data), bytes: data.length };
  };
  const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const entry: ShippedWorld = {
    preset: w.preset, seed: w.seed, worldKey: w.worldKey,
    files: { weak: put(w.weakModel, 'weak.gguf'), strong: put(w.strongModel, 'strong.gguf') },
    build: {
      command: w.command, version, git: gitVersion(root),
      host: { cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.availableParallelism(), simd: simdFlags(), platform: `${process.platform}-${process.arch}`, node: process.version },
      threads: w.threads, builtAt: new Date().toISOString(), seconds: w.seconds,
    },
    stats: w.stats, gate: w.gate,
  };
  const m = readWorldsManifest(dir);
  const worlds = [...m.worlds.filter((x) => !(x.preset === w.preset && x.seed === w.seed)), entry]
    .sort((a, b) => a.preset.localeCompare(b.preset) || a.seed - b.seed);
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify({ format: 1, about: ABOUT, worlds }, null, 2) + '\n');
  return entry;
}
