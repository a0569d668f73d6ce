// Reading JSON / JSONL record files with line-numbered errors, and writing them byte-for-byte as the
// paper's Python did (`json.dumps`, ensure_ascii). Owns no record schema: see formats.ts and datasets.ts.

import { readFile } from 'node:fs/promises';
import { FileNotFoundError } from '../errors.js';
import { DataFormatError } from './errors.js';

/** Parse JSONL into values with their 1-based line numbers (blank lines skipped, but counted). */
export function parseJsonlEntries(text: string, file?: string): Array<{ value: unknown; line: number }> {
  const out: Array<{ value: unknown; line: number }> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    try {
      out.push({ value: JSON.parse(line), line: i + 1 });
    } catch (err) {
      throw new DataFormatError(`Invalid JSON: ${(err as Error).message}`, { file, line: i + 1 });
    }
  }
  return out;
}

/** Parse JSONL: one JSON value per non-blank line. Errors name the 1-based line. */
export function parseJsonl(text: string, file?: string): unknown[] {
  return parseJsonlEntries(text, file).map((e) => e.value);
}

/** 1-based line of a character offset. */
function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * Offset of the first JSON syntax error in `text` (V8's messages do not always carry a position).
 * A plain recursive-descent scan, run only after JSON.parse has failed.
 */
function jsonErrorOffset(text: string): number {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++; };
  const fail = (): never => { throw i; };
  const lit = (word: string) => { if (text.startsWith(word, i)) i += word.length; else fail(); };
  const str = () => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail();
      const c = text.charCodeAt(i);
      if (c === 34) { i++; return; }
      if (c < 32) fail();
      if (c === 92) {
        i++;
        if (text[i] === 'u') { if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail(); i += 5; }
        else if ('"\\/bfnrt'.includes(text[i] ?? 'x')) i++;
        else fail();
      } else i++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++; ws();
      if (text[i] === close) { i++; return; }
      for (;;) {
        if (c === '{') { ws(); if (text[i] !== '"') fail(); str(); ws(); if (text[i] !== ':') fail(); i++; }
        value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === close) { i++; return; }
        fail();
      }
    }
    if (c === '"') return str();
    if (c === 't') return lit('true');
    if (c === 'f') return lit('false');
    if (c === 'n') return lit('null');
    const num = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (num === null) fail();
    i += num![0].length;
  };
  try {
    value(); ws();
    return i < text.length ? i : -1;
  } catch (at) {
    return at as number;
  }
}

/**
 * Parse a list of records from either a JSON array (first non-blank character `[`, as the paper's SFT
 * and preference sets) or JSONL (as its result files). JSONL entries carry their line; for a JSON array,
 * errors carry the line when V8 reports a position.
 */
export function parseRecordEntries(text: string, file?: string): Array<{ value: unknown; line?: number }> {
  const body = text.replace(/^\uFEFF/, '');
  if (!body.trimStart().startsWith('[')) return parseJsonlEntries(body, file);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    const at = jsonErrorOffset(body);
    throw new DataFormatError(`Invalid JSON: ${(err as Error).message}`, { file, line: at >= 0 ? lineOf(body, at) : undefined });
  }
  if (!Array.isArray(value)) throw new DataFormatError('Expected a JSON array of records', { file });
  return value.map((v) => ({ value: v }));
}

/** Reads a JSON-array or JSONL file of records ({@link parseRecordEntries}); a missing file is a FileNotFoundError naming `what`. */
export async function readRecordEntries(file: string, what: string): Promise<Array<{ value: unknown; line?: number }>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new FileNotFoundError(file, what);
  }
  return parseRecordEntries(text, file);
}

/** {@link parseRecordEntries} without the line numbers. */
export function parseRecordList(text: string, file?: string): unknown[] {
  return parseRecordEntries(text, file).map((e) => e.value);
}

/** Python's `json.dumps` string escaping with ensure_ascii=True (lowercase hex, UTF-16 surrogates). */
function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/**
 * Python's `json.dumps(value)` (no indent: `", "` and `": "` separators) or `json.dumps(value, indent=n)`.
 * Limits: JS numbers have no int/float distinction (`1.0` prints `1`), and integer-like object keys are
 * reordered by JS; neither occurs in the paper's files.
 */
export function pyJsonDumps(value: unknown, indent?: number): string {
  const nl = indent === undefined ? '' : '\n';
  const itemSep = indent === undefined ? ', ' : ',';
  const pad = (depth: number) => (indent === undefined ? '' : ' '.repeat(indent * depth));
  const walk = (v: unknown, depth: number): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return pyString(v);
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : v > 0 ? 'Infinity' : v < 0 ? '-Infinity' : 'NaN';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      const items = v.map((x) => pad(depth + 1) + walk(x, depth + 1));
      return `[${nl}${items.join(itemSep + nl)}${nl}${pad(depth)}]`;
    }
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return '{}';
    const items = entries.map(([k, x]) => `${pad(depth + 1)}${pyString(k)}: ${walk(x, depth + 1)}`);
    return `{${nl}${items.join(itemSep + nl)}${nl}${pad(depth)}}`;
  };
  return walk(value, 0);
}

/** JSONL text, one `json.dumps(record)` per line, each ending in `\n`. */
export function toJsonl(records: readonly unknown[]): string {
  return records.map((r) => pyJsonDumps(r) + '\n').join('');
}
