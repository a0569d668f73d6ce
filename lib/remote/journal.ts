// The partial-results file of a long generation: one JSON header line naming the request (prompts' hash and
// every option that changes a draw), then one line per finished sample, appended as each arrives. A crash or
// Ctrl-C loses only the requests in flight; a re-run with the same request reads it and asks only for the
// rest. A torn last line (killed mid-write) is cut off; a lock file keeps two writers apart.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { GeneratedSample } from '../generate/generator.js';
import { isLiveProcess } from '../io/stale-temp.js';
import { PartialResultsError } from './errors.js';

/** One row: the same shape as `w2s sample`'s output rows. */
export interface SampleRow {
  prompt_index: number;
  sample_index: number;
  text: string;
  tokens: number;
  finish_reason: GeneratedSample['finishReason'];
  logprobs?: number[];
  /** Local sampling with `tokenIds` / `logprobs` (Sample.tokenIds). */
  token_ids?: number[];
}

export function toRow(s: GeneratedSample): SampleRow {
  return {
    prompt_index: s.promptIndex, sample_index: s.sampleIndex, text: s.text, tokens: s.tokens, finish_reason: s.finishReason,
    ...(s.logprobs ? { logprobs: s.logprobs } : {}),
    ...('tokenIds' in s && Array.isArray(s.tokenIds) ? { token_ids: s.tokenIds } : {}),
  };
}

export function fromRow(r: SampleRow): GeneratedSample {
  return { promptIndex: r.prompt_index, sampleIndex: r.sample_index, text: r.text, tokens: r.tokens, finishReason: r.finish_reason, ...(r.logprobs ? { logprobs: r.logprobs } : {}) };
}

/** Hash of the prompts, for identities (the prompts themselves can be megabytes). */
export function promptsHash(prompts: readonly string[]): string {
  const h = crypto.createHash('sha256');
  for (const p of prompts) h.update(`${Buffer.byteLength(p)}:`).update(p);
  return h.digest('hex');
}

export interface JournalIdentity {
  /** Prompts of the request (hash) and their count. */
  prompts: string;
  promptCount: number;
  n: number;
  [option: string]: unknown;
}

const FINISH = new Set(['stop', 'length', 'eos']);

function isRow(r: unknown, id: JournalIdentity): r is SampleRow {
  const x = r as SampleRow;
  return typeof x === 'object' && x !== null && Number.isInteger(x.prompt_index) && x.prompt_index >= 0 && x.prompt_index < id.promptCount &&
    Number.isInteger(x.sample_index) && x.sample_index >= 0 && x.sample_index < id.n && typeof x.text === 'string' &&
    Number.isInteger(x.tokens) && FINISH.has(x.finish_reason);
}

export class SampleJournal {
  readonly #fd: number;
  readonly #lock: string;
  readonly #known = new Map<number, GeneratedSample>();
  #lastSync = Date.now();
  #closed = false;

  private constructor(readonly file: string, readonly identity: JournalIdentity, fd: number, lock: string, rows: SampleRow[]) {
    this.#fd = fd;
    this.#lock = lock;
    for (const r of rows) if (!this.#known.has(this.#key(r.prompt_index, r.sample_index))) this.#known.set(this.#key(r.prompt_index, r.sample_index), fromRow(r));
  }

  #key(p: number, s: number): number {
    return p * this.identity.n + s;
  }

  /** Samples read back from an earlier run (count). */
  get size(): number {
    return this.#known.size;
  }

  /** For GenerationOptions.known. */
  readonly known = (p: number, s: number): GeneratedSample | undefined => this.#known.get(this.#key(p, s));

  /**
   * Opens (or creates) the file for this request. Throws PartialResultsError when it belongs to another
   * request, is damaged before its last line, or another live process holds its lock.
   */
  static open(file: string, identity: JournalIdentity): SampleJournal {
    const lock = `${file}.lock`;
    SampleJournal.#takeLock(lock, file);
    try {
      const header = JSON.stringify({ w2s: 'partial-samples', version: 1, identity });
      let rows: SampleRow[] = [];
      let keep = 0; // bytes of the file that are whole lines to keep
      let text: string | undefined;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (text !== undefined && text.length > 0) {
        const lines = text.split('\n');
        const head = SampleJournal.#parse(lines[0]!);
        const tornHeader = head === undefined && lines.length === 1;
        if (!tornHeader) {
          const had = (head as { identity?: JournalIdentity } | undefined)?.identity;
          if (!had || (head as { w2s?: unknown }).w2s !== 'partial-samples') throw new PartialResultsError(`${file} is not a partial-results file of w2s; remove it or choose another output`);
          const differ = [...new Set([...Object.keys(had), ...Object.keys(identity)])].filter((k) => JSON.stringify(had[k]) !== JSON.stringify(identity[k]));
          if (differ.length) {
            throw new PartialResultsError(`${file} holds results of another request (differs in ${differ.join(', ')}): delete it to start over, or re-run with the options it was made with`);
          }
          keep = Buffer.byteLength(lines[0]!) + 1;
          for (let i = 1; i < lines.length; i++) {
            const line = lines[i]!;
            const last = i === lines.length - 1;
            if (line === '' && last) break;
            const r = SampleJournal.#parse(line);
            if (!isRow(r, identity)) {
              // Only the last line may be torn (the writer died in the middle of it); anything else is damage.
              if (last) break;
              throw new PartialResultsError(`${file}: line ${i + 1} is not a sample row of this request; delete the file to start over`);
            }
            rows.push(r);
            keep += Buffer.byteLength(line) + 1;
          }
        } else rows = [];
      }
      const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o644);
      if (keep === 0) {
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, `${header}\n`);
        fs.fsyncSync(fd);
      } else if (keep < Buffer.byteLength(text!)) {
        fs.ftruncateSync(fd, keep);
      }
      return new SampleJournal(file, identity, fd, lock, rows);
    } catch (err) {
      fs.rmSync(lock, { force: true });
      throw err;
    }
  }

  static #parse(line: string): unknown {
    try {
      return JSON.parse(line);
    } catch {
      return undefined;
    }
  }

  static #takeLock(lock: string, file: string): void {
    for (let tries = 0; tries < 2; tries++) {
      try {
        fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number(fs.readFileSync(lock, 'utf8').trim());
        if (isLiveProcess(pid) && pid !== process.pid) {
          throw new PartialResultsError(`${file} is being written by another process (pid ${pid}); wait for it, or remove ${lock} if that process is not w2s`);
        }
        fs.rmSync(lock, { force: true });
      }
    }
    throw new PartialResultsError(`cannot lock ${file}`);
  }

  /** Appends one finished sample (one write call per line; fsync at most once a second). */
  append(s: GeneratedSample): void {
    if (this.#closed) return;
    const k = this.#key(s.promptIndex, s.sampleIndex);
    if (this.#known.has(k)) return;
    this.#known.set(k, s);
    fs.writeSync(this.#fd, `${JSON.stringify(toRow(s))}\n`);
    if (Date.now() - this.#lastSync > 1000) {
      fs.fsyncSync(this.#fd);
      this.#lastSync = Date.now();
    }
  }

  /** Flushes and releases the file; it stays for a later run. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.fsyncSync(this.#fd);
    } finally {
      fs.closeSync(this.#fd);
      fs.rmSync(this.#lock, { force: true });
    }
  }

  /** Closes and deletes the file (once the complete output is safely written). */
  remove(): void {
    this.close();
    fs.rmSync(this.file, { force: true });
  }
}
