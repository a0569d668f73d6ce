// Paper-faithful answer extraction, normalization and checking (method.md §3; the paper's
// src/eval/evaluation.py + math_normalization.py). Symbolic equivalence lives in symbolic.ts, loaded lazily.

import { InvalidArgumentError } from '../errors.js';
import { pyDropLast, pyFindallGroup1, pyIsDigit, pyRegexSource, pyStrip } from './pystr.js';

/** Answer key of GSM8K responses: the last line reads `#### <answer>`. */
export const GSM8K_ANSWER_KEY = '####';
/** Answer key of MATH (and OlympicArena) responses: the last line ends `The answer is: <answer>`. */
export const MATH_ANSWER_KEY = 'The answer is:';

export interface CheckResult {
  /** Normalized pred equals normalized gold (string mode), or is symbolically equal (symbolic mode). */
  correct: boolean;
  /** Normalized predicted answer; `''` when none was found. This is what selection and voting compare. */
  pred: string;
  /** Normalized gold answer. */
  gold: string;
}

// ---- extraction (method.md §3 steps 1–4) ----

const keyPatterns = new Map<string, RegExp>();

/**
 * The compiled `re.findall(key + " (.*)$", text)` of the original: the key is a Python regex (unescaped),
 * `.` stops at `\n` and `$` matches only at the end (or before a final `\n`), so the key must sit on the
 * last line and the capture is the rest of that line.
 */
function keyPattern(key: string): RegExp {
  let re = keyPatterns.get(key);
  if (re === undefined) {
    if (typeof key !== 'string' || key.length === 0) throw InvalidArgumentError.expected('a non-empty string', 'answer key', key);
    let compiled: RegExp;
    try {
      compiled = new RegExp(pyRegexSource(`${key} (.*)$`), 'gu');
    } catch (err) {
      throw InvalidArgumentError.expected(`a valid regular expression (${(err as Error).message})`, 'answer key', key);
    }
    // The original's findall returns tuples (and breaks) when the key has its own groups: refuse them.
    const groups = new RegExp(`${compiled.source}|`, 'u').exec('')!.length - 1;
    if (groups !== 1) throw InvalidArgumentError.expected('a key without capture groups', 'answer key', key);
    keyPatterns.set(key, (re = compiled));
  }
  re.lastIndex = 0;
  return re;
}

// `The answer is (.*)$` (no colon), same Python `.`/`$` semantics as above.
const CLEANSE_KEY_RE = /The answer is ([^\n]*)(?=\n?$)/gu;
// `-?\d+\.?\d*` where Python's `\d` on str is any Unicode decimal digit.
const NUMBER_RE = /-?\p{Nd}+\.?\p{Nd}*/u;

/** The original's `answer_cleansing`: first number of the last `The answer is …` line, commas removed. */
function answerCleansing(text: string): string {
  CLEANSE_KEY_RE.lastIndex = 0;
  const found = pyFindallGroup1(CLEANSE_KEY_RE, text);
  const last = (found.length > 0 ? found[found.length - 1]! : '').replaceAll(',', '');
  const num = NUMBER_RE.exec(last);
  let pred = num === null ? '' : num[0];
  if (pred.endsWith('.')) pred = pred.slice(0, -1);
  return pred;
}

/**
 * The raw (not yet normalized) answer of a response, as the paper extracts it: cut at the first
 * `Question`, strip, last capture of `key (.*)$`, else the `The answer is` number fallback, then drop the
 * last 4 characters when `</s>` occurs anywhere in it.
 */
export function extractAnswer(response: string, key: string): string {
  if (typeof response !== 'string') throw InvalidArgumentError.expected('a string', 'response', response);
  let text = response;
  const cut = text.indexOf('Question');
  if (cut !== -1) text = text.slice(0, cut);
  text = pyStrip(text);
  const found = pyFindallGroup1(keyPattern(key), text);
  let pred = found.length > 0 ? found[found.length - 1]! : '';
  if (pred === '') pred = answerCleansing(text);
  if (pred.includes('</s>')) pred = pyDropLast(pred, 4);
  return pred;
}

// ---- normalization (method.md §3 step 5; Lewkowycz et al. 2022 as modified by the paper) ----

const SUBSTITUTIONS: ReadonlyArray<readonly [string, string]> = [
  ['an ', ''], ['a ', ''], ['.$', '$'], ['\\$', ''], ['\\ ', ''], ['\\%', '%'], [' ', ''], ['mbox', 'text'],
  [',\\text{and}', ','], ['\\text{and}', ','], ['\\text{m}', '\\text{}'],
];

const REMOVED_EXPRESSIONS: readonly string[] = [
  'square', 'ways', 'integers', 'dollars', 'mph', 'inches', 'ft', 'hours', 'km', 'units', '\\ldots', 'sue',
  'points', 'feet', 'minutes', 'digits', 'cents', 'degrees', 'cm', 'gm', 'pounds', 'meters', 'meals',
  'edges', 'students', 'childrentickets', 'multiples', '\\text{s}', '\\text{.}', '\\text{\ns}',
  '\\text{}^2', '\\text{}^3', '\\text{\n}', '\\text{}', '\\mathrm{th}', '^\\circ', '^{\\circ}', '\\;',
  ',\\!', '{,}', '"', '\\dots',
];

// Python `re.sub` patterns with `.` → `[^\n]`; the `u` flag makes `[^{]` and `.` take whole code points.
const DOLLAR_RE = /([^\n]*?)(\$)([^\n]*?)(\$)([^\n]*)/gu; // keep the first $…$ of each line
const TEXT_RE = /(\\text\{)([^\n]*?)(\})/gu;
const TEXTBF_RE = /(\\textbf\{)([^\n]*?)(\})/gu;
const OVERLINE_RE = /(\\overline\{)([^\n]*?)(\})/gu;
const BOXED_RE = /(\\boxed\{)([^\n]*)(\})/gu; // greedy: to the last } of the line
const FRAC_RE = /(frac)([^{])([^\n])/gu; // \fracab → \frac{a}{b}
const SQRT_RE = /(sqrt)([^{])/gu; // \sqrta → \sqrt{a}

/** The paper's `normalize_final_answer`, applied identically to predictions and gold answers. */
export function normalizeAnswer(answer: string): string {
  if (typeof answer !== 'string') throw InvalidArgumentError.expected('a string', 'answer', answer);
  let s = answer.split('=').pop()!;
  for (const [before, after] of SUBSTITUTIONS) s = s.replaceAll(before, after);
  for (const expr of REMOVED_EXPRESSIONS) s = s.replaceAll(expr, '');
  s = s.replace(DOLLAR_RE, (_m, _pre: string, _d1: string, inner: string) => `$${inner}$`);
  s = s.replace(TEXT_RE, (_m, _o: string, inner: string) => inner);
  s = s.replace(TEXTBF_RE, (_m, _o: string, inner: string) => inner);
  s = s.replace(OVERLINE_RE, (_m, _o: string, inner: string) => inner);
  s = s.replace(BOXED_RE, (_m, _o: string, inner: string) => inner);
  s = s.replace(FRAC_RE, (_m, _f: string, a: string, b: string) => `frac{${a}}{${b}}`);
  s = s.replace(SQRT_RE, (_m, _f: string, a: string) => `sqrt{${a}}`);
  s = s.replaceAll('$', '');
  if (pyIsDigit(s.replaceAll(',', ''))) s = s.replaceAll(',', ''); // 100,000 → 100000
  if (s.endsWith('.0') && pyIsDigit(s.slice(0, -2))) s = s.slice(0, -2); // 3.0 → 3 (not -3.0)
  if (s.endsWith('.00') && pyIsDigit(s.slice(0, -3))) s = s.slice(0, -3); // 3.00 → 3
  if (s.endsWith('%') && pyIsDigit(s.slice(0, -1))) s = s.slice(0, -1); // 50% → 50
  if (/^[a-gA-G]$/.test(s)) s = s.toLowerCase(); // multiple-choice letters
  return s;
}

/** Normalized answer of a response: what Stage I consistency and Stage II voting compare. */
export function predOf(response: string, key: string): string {
  return normalizeAnswer(extractAnswer(response, key));
}

/**
 * Paper-faithful check: `correct` is plain string equality of the normalized answers, which equals the
 * original's verdict on every released result file. `gold` is the raw final answer (e.g. `850,000`).
 */
export function check(response: string, gold: string, key: string): CheckResult {
  const pred = predOf(response, key);
  const g = normalizeAnswer(gold);
  return { correct: pred === g, pred, gold: g };
}

/**
 * Like {@link check}, but a string mismatch is retried as LaTeX-aware symbolic equivalence
 * (`0.50 = 0.5 = \frac{1}{2}`, `\sqrt{4} = 2`). Not paper-faithful; loads the compute engine on first use.
 */
export async function checkSymbolic(response: string, gold: string, key: string): Promise<CheckResult> {
  const result = check(response, gold, key);
  if (result.correct || result.pred === '' || result.gold === '') return result;
  const { symbolicEqual } = await import('./symbolic.js');
  return { ...result, correct: await symbolicEqual(result.pred, result.gold) };
}
