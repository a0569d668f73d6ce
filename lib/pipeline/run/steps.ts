// Steps of a run folder: each step writes into a temporary folder, records a manifest (inputs' hash,
// options, its files' hashes, its statistics) and is renamed into place only when complete, so a crash
// never leaves an artifact a later run would trust. A step whose manifest matches its inputs and whose
// files are intact is skipped. Up to `jobs` steps run at once; which waiting step goes next is decided by
// its priority (lowest first), so with one job the steps run in exactly their priority order.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AbortError } from '../../errors.js';

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
  /** Notes the device a model or trainer of this step ran on; recorded as `stats.device` (report.json). */
  noteDevice(device: string): void;
}

export interface StepDef {
  name: string;
  /** Everything the result depends on (options, upstream hashes); JSON-serialisable. */
  inputs: unknown;
  /**
   * Lower runs first when several steps wait for a free job; also the step's place in `RunFolder.steps`.
   * Defaults to the order in which `run` was called.
   */
  priority?: number;
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

export interface RunFolderOptions {
  /** Steps that may run at once (default 1). Cached steps never wait for a job. */
  jobs?: number;
}

export class RunFolder {
  /** Finished steps (run or cached), in priority order. */
  readonly steps: StepOutcome[] = [];
  private readonly priorities = new Map<StepOutcome, number>();
  private readonly jobs: number;
  private active = 0;
  private readonly waiting: { priority: number; start: () => void }[] = [];
  private granting = false;
  private calls = 0;

  constructor(readonly root: string, private readonly events: StepEvents, private readonly signal?: AbortSignal, o: RunFolderOptions = {}) {
    this.jobs = Math.max(1, Math.floor(o.jobs ?? 1));
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

  private record(o: StepOutcome, priority: number): StepOutcome {
    this.priorities.set(o, priority);
    let i = this.steps.length;
    while (i > 0 && this.priorities.get(this.steps[i - 1]!)! > priority) i--;
    this.steps.splice(i, 0, o);
    return o;
  }

  /**
   * Waits for a free job. Grants are decided on a later turn of the event loop, not at once: steps that
   * become ready because the one before them finished (promise continuations) queue up first, so the
   * lowest priority among all ready steps goes next, and one job reproduces the sequential order.
   */
  private acquire(priority: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push({ priority, start: resolve });
      this.grant();
    });
  }

  private release(): void {
    this.active--;
    this.grant();
  }

  private grant(): void {
    if (this.granting) return;
    this.granting = true;
    setImmediate(() => {
      this.granting = false;
      while (this.active < this.jobs && this.waiting.length > 0) {
        let best = 0;
        for (let i = 1; i < this.waiting.length; i++) if (this.waiting[i]!.priority < this.waiting[best]!.priority) best = i;
        const [w] = this.waiting.splice(best, 1);
        this.active++;
        w!.start();
      }
    });
  }

  async run(def: StepDef): Promise<StepOutcome> {
    const priority = def.priority ?? this.calls;
    this.calls++;
    const dir = path.join(this.root, def.name);
    const inputsHash = sha256(JSON.stringify(def.inputs));
    const done = this.valid(dir, inputsHash);
    if (done) {
      this.events.start(def.name, true);
      this.events.end(def.name, done, true);
      return this.record(this.outcome(dir, done, true), priority);
    }
    await this.acquire(priority);
    try {
      return await this.execute(def, dir, inputsHash, priority);
    } finally {
      this.release();
    }
  }

  private async execute(def: StepDef, dir: string, inputsHash: string, priority: number): Promise<StepOutcome> {
    // A step that waited for a job while another failed (the run's signal aborted) never starts.
    if (this.signal?.aborted) throw new AbortError();
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
      const devices = new Set<string>();
      const stats = await def.run({
        dir: tmp, signal: this.signal, progress: (d, t, x) => this.events.progress(def.name, d, t, x),
        scratch: () => {
          fs.mkdirSync(scratch, { recursive: true });
          return scratch;
        },
        noteDevice: (d) => void devices.add(d),
      });
      if (devices.size && stats.device === undefined) stats.device = [...devices].join('; ');
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
      return this.record(this.outcome(dir, manifest, false), priority);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }
}
