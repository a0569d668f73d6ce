// Steps of a run folder: each step writes into a temporary folder, records a manifest (inputs' hash,
// options, its files' hashes, its statistics) and is renamed into place only when complete, so a crash
// never leaves an artifact a later run would trust. A step whose manifest matches its inputs and whose
// files are intact is skipped.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface StepManifest {
  step: string;
  inputsHash: string;
  inputs: unknown;
  /** Relative path -> sha256 of every file the step wrote. */
  files: Record<string, string>;
  stats: Record<string, unknown>;
  seconds: number;
  completedAt: string;
}

export interface StepContext {
  /** Folder to write the step's files into (renamed to the step folder on success). */
  dir: string;
  progress(done: number, total: number, extra?: string): void;
  signal?: AbortSignal;
  /**
   * A folder that survives a failed or interrupted attempt of this step (same inputs), for partial results
   * a re-run resumes from (remote generation); created on first use, removed when the step completes.
   */
  scratch(): string;
}

export interface StepDef {
  name: string;
  /** Everything the result depends on (options, upstream hashes); JSON-serialisable. */
  inputs: unknown;
  run(ctx: StepContext): Promise<Record<string, unknown>>;
}

export interface StepOutcome {
  dir: string;
  manifest: StepManifest;
  skipped: boolean;
  /** Path of a file of this step. */
  file(name: string): string;
  /** Hash of a file of this step (for downstream inputs). */
  hash(name: string): string;
}

export function sha256(data: string | Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * Identity of an input file. Files up to 64 MiB are hashed whole; larger ones (models) by size plus the
 * hashes of their first and last MiB, so a re-run does not read gigabytes to decide it can skip.
 */
export function fileIdentity(file: string): string {
  const stat = fs.statSync(file);
  if (stat.size <= 64 * 2 ** 20) return sha256(fs.readFileSync(file));
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(2 ** 20);
    const tail = Buffer.alloc(2 ** 20);
    fs.readSync(fd, head, 0, head.length, 0);
    fs.readSync(fd, tail, 0, tail.length, stat.size - tail.length);
    return sha256(`${stat.size}:${sha256(head)}:${sha256(tail)}`);
  } finally {
    fs.closeSync(fd);
  }
}

function listFiles(dir: string, prefix = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(path.join(dir, e.name), path.join(prefix, e.name)) : e.name === 'manifest.json' ? [] : [path.join(prefix, e.name)]);
}

export interface StepEvents {
  start(name: string, skipped: boolean): void;
  progress(name: string, done: number, total: number, extra?: string): void;
  end(name: string, manifest: StepManifest, skipped: boolean): void;
}

export class RunFolder {
  readonly steps: StepOutcome[] = [];

  constructor(readonly root: string, private readonly events: StepEvents, private readonly signal?: AbortSignal) {
    fs.mkdirSync(root, { recursive: true });
    // Leftovers of crashed steps are never trusted: remove them.
    for (const e of fs.readdirSync(root)) if (e.startsWith('.tmp-')) fs.rmSync(path.join(root, e), { recursive: true, force: true });
  }

  private outcome(dir: string, manifest: StepManifest, skipped: boolean): StepOutcome {
    return {
      dir, manifest, skipped,
      file: (name) => path.join(dir, name),
      hash: (name) => {
        const h = manifest.files[name];
        if (!h) throw new Error(`step ${manifest.step} has no file ${name}`);
        return h;
      },
    };
  }

  /** The completed step's manifest if it is still valid for these inputs, else undefined. */
  private valid(dir: string, inputsHash: string): StepManifest | undefined {
    const file = path.join(dir, 'manifest.json');
    if (!fs.existsSync(file)) return undefined;
    try {
      const m = JSON.parse(fs.readFileSync(file, 'utf8')) as StepManifest;
      if (m.inputsHash !== inputsHash) return undefined;
      for (const [name, hash] of Object.entries(m.files)) {
        const p = path.join(dir, name);
        if (!fs.existsSync(p) || sha256(fs.readFileSync(p)) !== hash) return undefined;
      }
      return m;
    } catch {
      return undefined;
    }
  }

  async run(def: StepDef): Promise<StepOutcome> {
    const dir = path.join(this.root, def.name);
    const inputsHash = sha256(JSON.stringify(def.inputs));
    const done = this.valid(dir, inputsHash);
    if (done) {
      this.events.start(def.name, true);
      this.events.end(def.name, done, true);
      const o = this.outcome(dir, done, true);
      this.steps.push(o);
      return o;
    }
    this.events.start(def.name, false);
    const tmp = path.join(this.root, `.tmp-${def.name}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    const began = performance.now();
    // Scratch of an attempt with other inputs can never be resumed: drop it.
    const partialRoot = path.join(this.root, '.partial');
    const scratch = path.join(partialRoot, `${def.name}-${inputsHash.slice(0, 16)}`);
    if (fs.existsSync(partialRoot)) {
      for (const e of fs.readdirSync(partialRoot)) if (e.startsWith(`${def.name}-`) && path.join(partialRoot, e) !== scratch) fs.rmSync(path.join(partialRoot, e), { recursive: true, force: true });
    }
    try {
      const stats = await def.run({
        dir: tmp, signal: this.signal, progress: (d, t, x) => this.events.progress(def.name, d, t, x),
        scratch: () => {
          fs.mkdirSync(scratch, { recursive: true });
          return scratch;
        },
      });
      const files: Record<string, string> = {};
      for (const f of listFiles(tmp)) files[f] = sha256(fs.readFileSync(path.join(tmp, f)));
      const manifest: StepManifest = {
        step: def.name, inputsHash, inputs: def.inputs, files, stats,
        seconds: (performance.now() - began) / 1000, completedAt: new Date().toISOString(),
      };
      // The manifest is written last, then the folder takes the step's name in one rename.
      fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
      fs.rmSync(scratch, { recursive: true, force: true });
      this.events.end(def.name, manifest, false);
      const o = this.outcome(dir, manifest, false);
      this.steps.push(o);
      return o;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }
}
