// Dataset loaders (GSM8K, MATH, generic JSONL) into `Problem`s, the prompt template, few-shot prompts,
// demonstration choice and response post-processing (method.md §2). Owns no answer checking (answer.ts).

import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { DataFormatError } from './errors.js';
import { parseJsonlEntries } from './json.js';
import { pyFindallGroup1, pyStrip } from './pystr.js';
import { createRng } from '../pipeline/random.js';

export type Id = string | number;

export interface Problem {
  /** The record's `id` field when present, else its 0-based position in the file (the paper's ids). */
  id: Id;
  question: string;
  /** Gold training target (GSM8K: solution without `<<…>>`; MATH: `solution The answer is: answer`). */
  target?: string;
  /** Raw gold final answer (normalize with answer.ts before comparing). */
  gold?: string;
}

export interface LoadOptions {
  /** `'field'` (default): use the record's `id` field when present, else its index; `'index'`: always the index. */
  ids?: 'field' | 'index';
}

// ---- field access with line-numbered errors ----

interface Where { file: string | undefined; line: number }

function asRecord(value: unknown, where: Where): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DataFormatError(`Expected a JSON object per line but found ${Array.isArray(value) ? 'an array' : typeof value}`, where);
  }
  return value as Record<string, unknown>;
}

function stringField(rec: Record<string, unknown>, name: string, where: Where, numbersOk = false): string {
  const v = rec[name];
  if (typeof v === 'string') return v;
  if (numbersOk && typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (v === undefined) throw new DataFormatError(`Missing field "${name}"`, where);
  throw new DataFormatError(`Expected a string for field "${name}" but found ${JSON.stringify(v)} of type ${typeof v}`, where);
}

function idOf(rec: Record<string, unknown>, index: number, where: Where, options: LoadOptions, field?: string): Id {
  if (options.ids === 'index') return index;
  const v = rec[field ?? 'id'];
  if (v === undefined && field === undefined) return index; // no explicit id field: positions, as the paper
  if (typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v))) return v;
  if (v === undefined) throw new DataFormatError(`Missing field "${field}"`, where);
  throw new DataFormatError(`Expected a string or integer for field "${field ?? 'id'}" but found ${JSON.stringify(v)}`, where);
}

/** Map each record of a JSONL text (with its 1-based line) to a Problem; ids must be unique. */
function mapRecords(text: string, file: string | undefined, toProblem: (rec: Record<string, unknown>, where: Where, index: number) => Problem): Problem[] {
  const seen = new Map<Id, number>();
  return parseJsonlEntries(text, file).map(({ value, line }, index) => {
    const where = { file, line };
    const problem = toProblem(asRecord(value, where), where, index);
    const first = seen.get(problem.id);
    if (first !== undefined) throw new DataFormatError(`Duplicate id ${JSON.stringify(problem.id)} (first on line ${first})`, where);
    seen.set(problem.id, line);
    return problem;
  });
}

// ---- GSM8K ----

/** GSM8K calculator annotations `<<48/2=24>>` (Python `re.sub(r'<<.*?>>', '', s)`: never across lines). */
export function stripCalculatorAnnotations(solution: string): string {
  return solution.replace(/<<[^\n]*?>>/gu, '');
}

const GSM8K_FINAL_RE = /#### ([^\n]*)(?=\n?$)/gu;

/**
 * GSM8K JSONL in either shape: `{id?, question, answer}` with `answer` the full solution ending in
 * `#### <ans>` (train files), or `{question, solution, answer}` with `answer` the final answer only
 * (test file). Target = solution without annotations; gold = the final answer.
 */
export function parseGsm8k(text: string, file?: string, options: LoadOptions = {}): Problem[] {
  return mapRecords(text, file, (rec, where, index) => {
    const question = stringField(rec, 'question', where);
    let solution: string;
    let gold: string;
    if (rec['solution'] !== undefined) {
      solution = stringField(rec, 'solution', where);
      gold = stringField(rec, 'answer', where, true);
    } else {
      solution = stringField(rec, 'answer', where);
      GSM8K_FINAL_RE.lastIndex = 0;
      const finals = pyFindallGroup1(GSM8K_FINAL_RE, solution);
      if (finals.length !== 1) {
        throw new DataFormatError('Expected field "answer" to end with a line "#### <final answer>" (or a "solution" field)', where);
      }
      gold = finals[0]!;
    }
    return { id: idOf(rec, index, where, options), question, target: stripCalculatorAnnotations(solution), gold };
  });
}

// ---- MATH ----

/** MATH JSONL `{problem | question, solution, answer}`; target = `solution + " The answer is: " + answer`. */
export function parseMath(text: string, file?: string, options: LoadOptions = {}): Problem[] {
  return mapRecords(text, file, (rec, where, index) => {
    const question = stringField(rec, rec['problem'] !== undefined ? 'problem' : 'question', where);
    const solution = stringField(rec, 'solution', where);
    const gold = stringField(rec, 'answer', where, true);
    return { id: idOf(rec, index, where, options), question, target: `${solution} The answer is: ${gold}`, gold };
  });
}

// ---- generic JSONL ----

export interface FieldMapping {
  /** Field holding the id, required on every record when named. Defaults to `id` if present, else the index. */
  id?: string;
  /** Field holding the question. Defaults to `question`. */
  question?: string;
  /** Field holding the training target, if any. */
  target?: string;
  /** Field holding the raw gold final answer, if any (numbers are accepted and stringified). */
  gold?: string;
}

/** Any JSONL with the fields named by `fields`; a named optional field must be present on every record. */
export function parseJsonlProblems(text: string, fields: FieldMapping = {}, file?: string, options: LoadOptions = {}): Problem[] {
  return mapRecords(text, file, (rec, where, index) => {
    const p: Problem = { id: idOf(rec, index, where, options, fields.id), question: stringField(rec, fields.question ?? 'question', where) };
    if (fields.target !== undefined) p.target = stringField(rec, fields.target, where);
    if (fields.gold !== undefined) p.gold = stringField(rec, fields.gold, where, true);
    return p;
  });
}

export type DatasetFormat = 'gsm8k' | 'math' | 'jsonl';

/** Read a dataset file. `fields` only applies to `'jsonl'`. */
export async function loadProblems(path: string, format: DatasetFormat, options: LoadOptions & { fields?: FieldMapping } = {}): Promise<Problem[]> {
  const text = await readFile(path, 'utf8');
  if (format === 'gsm8k') return parseGsm8k(text, path, options);
  if (format === 'math') return parseMath(text, path, options);
  if (format === 'jsonl') return parseJsonlProblems(text, options.fields, path, options);
  throw InvalidArgumentError.expected('"gsm8k", "math" or "jsonl"', 'format', format);
}

// ---- prompts ----

/** The one prompt format of the paper (training, generation, evaluation): no system prompt, no chat template. */
export const DEFAULT_PROMPT_TEMPLATE = 'Question: {question}\nAnswer:';

/** Fill `{question}` (every occurrence) in the template. */
export function formatPrompt(question: string, template: string = DEFAULT_PROMPT_TEMPLATE): string {
  if (!template.includes('{question}')) throw InvalidArgumentError.expected('a template containing "{question}"', 'template', template);
  return template.split('{question}').join(question);
}

export interface Demo {
  question: string;
  /** The demonstration's answer text (in the paper: the weak model's own response, unfiltered). */
  answer: string;
}

/** k demonstrations, each `Question: …\nAnswer: …\n\n`, then the zero-shot prompt of `question`. */
export function buildFewShotPrompt(question: string, demos: readonly Demo[], template: string = DEFAULT_PROMPT_TEMPLATE): string {
  const shots = demos.map((d) => `${formatPrompt(d.question, template)} ${d.answer}\n\n`).join('');
  return shots + formatPrompt(question, template);
}

export type DemoSelection =
  /** k demonstrations drawn uniformly without replacement with a seeded PRNG (paper: k = 4). */
  | { strategy: 'random'; k: number; seed: number; exclude?: readonly Id[] }
  /** Exactly these ids, in this order (the paper's "carefully selected" demonstrations). */
  | { strategy: 'ids'; ids: readonly Id[] };

/** Choose demonstrations from a pool of records with ids (e.g. train_2 questions joined with D_weak). */
export function selectDemos<T extends { id: Id }>(pool: readonly T[], selection: DemoSelection): T[] {
  if (selection.strategy === 'ids') {
    const byId = new Map(pool.map((p) => [p.id, p] as const));
    return selection.ids.map((id) => {
      const found = byId.get(id);
      if (found === undefined) throw InvalidArgumentError.expected('an id present in the demonstration pool', 'ids', id);
      return found;
    });
  }
  if (selection.strategy === 'random') {
    const excluded = new Set(selection.exclude ?? []);
    const candidates = pool.filter((p) => !excluded.has(p.id));
    if (!Number.isInteger(selection.k) || selection.k < 0 || selection.k > candidates.length) {
      throw InvalidArgumentError.expected(`an integer in [0, ${candidates.length}]`, 'k', selection.k);
    }
    return createRng(selection.seed).sample(candidates, selection.k);
  }
  throw InvalidArgumentError.expected('"random" or "ids"', 'strategy', (selection as { strategy: unknown }).strategy);
}

/** The stored response: `text.strip().strip(".")` as the paper's inference.py. */
export function postprocessResponse(text: string): string {
  return pyStrip(pyStrip(text), '.');
}
