// Import/export of the paper's released formats (method.md §9): SFT sets, preference pairs, generation
// results. JSON array or JSONL is auto-detected on read; writing reproduces the paper's bytes.

import { readFile, writeFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { DataFormatError } from './errors.js';
import type { Id } from './datasets.js';
import { parseRecordEntries, pyJsonDumps, toJsonl } from './json.js';

/**
 * SFT example: `content` is the zero-shot prompt, `output` the target response. `w2s run` adds, beyond the
 * paper's fields, `token_ids` (the generated ids of `output`) and `tokenizer` (the generating model's
 * tokenizer fingerprint) where the response was generated; records without them are read as text.
 */
export interface SftRecord { id: Id; content: string; output: string; token_ids?: number[]; tokenizer?: string }

/**
 * Preference pair (LLaMA-Factory layout): `output[0]` is chosen, `output[1]` rejected; `input` is `''`.
 * `token_ids` / `tokenizer` (optional, `w2s run`): per side as in SftRecord, null for a side without ids.
 */
export interface PairRecord {
  id: Id; instruction: string; input: string; output: [chosen: string, rejected: string];
  token_ids?: [number[] | null, number[] | null]; tokenizer?: [string | null, string | null];
}

/** One generation scored by answer.ts: `pred` and `gold` are normalized, `result` is the verdict. */
export interface ResultRecord {
  id: Id; prompt: string; response: string; pred: string; gold: string; result: boolean;
  /** `w2s run`: the response's generated ids and the generating model's tokenizer fingerprint (when local). */
  token_ids?: number[]; tokenizer?: string;
  /** Extra fields (e.g. `num_tokens`) are kept as read. */
  [extra: string]: unknown;
}

export type FileFormat = 'json' | 'jsonl';

type Kind = 'SFT' | 'pair' | 'result';
const FIELDS: Record<Kind, Record<string, 'string' | 'boolean' | 'pair'>> = {
  SFT: { content: 'string', output: 'string' },
  pair: { instruction: 'string', input: 'string', output: 'pair' },
  result: { prompt: 'string', response: 'string', pred: 'string', gold: 'string', result: 'boolean' },
};

/** Validate records (fields are kept as read, so a read/write round trip is lossless). */
function validate<T>(entries: Array<{ value: unknown; line?: number }>, kind: Kind, file: string | undefined): T[] {
  return entries.map(({ value, line }, i) => {
    const where = { file, line };
    const what = `${kind} record ${i} (0-based)`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new DataFormatError(`Expected an object for ${what}`, where);
    }
    const r = value as Record<string, unknown>;
    const id = r['id'];
    if (!(typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)))) {
      throw new DataFormatError(`Expected a string or integer "id" in ${what} but found ${JSON.stringify(id)}`, where);
    }
    for (const [name, type] of Object.entries(FIELDS[kind])) {
      const v = r[name];
      const ok = type === 'pair' ? Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'string') : typeof v === type;
      if (ok) continue;
      const want = type === 'pair' ? 'an array [chosen, rejected] of two strings' : `a ${type}`;
      const found = v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 80);
      throw new DataFormatError(`Expected ${want} for field "${name}" in ${what} (id ${JSON.stringify(id)}) but found ${found}`, where);
    }
    return value as T;
  });
}

export function parseSft(text: string, file?: string): SftRecord[] {
  return validate<SftRecord>(parseRecordEntries(text, file), 'SFT', file);
}
export function parsePairs(text: string, file?: string): PairRecord[] {
  return validate<PairRecord>(parseRecordEntries(text, file), 'pair', file);
}
export function parseResults(text: string, file?: string): ResultRecord[] {
  return validate<ResultRecord>(parseRecordEntries(text, file), 'result', file);
}

/** JSON array with indent 4 (the paper's `json.dump(data, f, indent=4)`) or JSONL. */
export function serializeRecords(records: readonly unknown[], format: FileFormat): string {
  if (format === 'json') return pyJsonDumps(records, 4);
  if (format === 'jsonl') return toJsonl(records);
  throw InvalidArgumentError.expected('"json" or "jsonl"', 'format', format);
}

export const readSft = async (path: string) => parseSft(await readFile(path, 'utf8'), path);
export const readPairs = async (path: string) => parsePairs(await readFile(path, 'utf8'), path);
export const readResults = async (path: string) => parseResults(await readFile(path, 'utf8'), path);

/** Paper defaults: SFT and pair sets as JSON arrays, results as JSONL. */
export const writeSft = (path: string, records: readonly SftRecord[], format: FileFormat = 'json') =>
  writeFile(path, serializeRecords(records, format));
export const writePairs = (path: string, records: readonly PairRecord[], format: FileFormat = 'json') =>
  writeFile(path, serializeRecords(records, format));
export const writeResults = (path: string, records: readonly ResultRecord[], format: FileFormat = 'jsonl') =>
  writeFile(path, serializeRecords(records, format));
