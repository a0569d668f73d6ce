// Preference data for DPO and ORPO: reading {prompt, chosen, rejected} or the paper's
// {instruction, input, output: [chosen, rejected]} rows, and tokenizing pairs with the SFT convention (prompt
// with BOS, responses without special tokens, EOS appended to the targets). Pairs that cannot be trained are
// counted and dropped here, so the native loss never sees an empty or identical pair. Either side may carry its
// tokens (`chosenTokens` / `rejectedTokens`, e.g. the ids a model generated): that side is then trained as given.
import { certainlyLonger, prefixForTokens, rowTokens } from '../model/token-bound.js';
import { DataFormatError } from '../data/errors.js';
import { readRecordEntries } from '../data/json.js';
import { InvalidArgumentError } from '../errors.js';
import type { Model } from '../model.js';
import type { Sequence } from './batches.js';
import { checkPreTokenized, type PreTokenized } from './sft-data.js';

export interface PreferencePair {
  prompt: string;
  chosen: string;
  rejected: string;
  /** The chosen side's tokens (prompt with BOS, response), used instead of tokenizing its text. */
  chosenTokens?: PreTokenized;
  rejectedTokens?: PreTokenized;
}

/** The paper's pair layout (LLaMA-Factory): `output[0]` is chosen, `output[1]` rejected. */
export interface PaperPairRow {
  instruction: string;
  input?: string;
  output: readonly [string, string];
}

export type PreferenceRow = PreferencePair | PaperPairRow;

/**
 * One row as a pair, or undefined if it has neither shape. The paper's prompt is the instruction, followed by
 * a newline and the input when the input is non-empty (LLaMA-Factory's alpaca join).
 */
export function toPreferencePair(row: unknown): PreferencePair | undefined {
  if (typeof row !== 'object' || row === null) return undefined;
  const r = row as Record<string, unknown>;
  if (typeof r.prompt === 'string' && typeof r.chosen === 'string' && typeof r.rejected === 'string') {
    // Pre-tokenized sides pass through (checked against the vocabulary when tokenized).
    const tokens = (k: 'chosenTokens' | 'rejectedTokens') => (typeof r[k] === 'object' && r[k] !== null ? { [k]: r[k] as PreTokenized } : {});
    return { prompt: r.prompt, chosen: r.chosen, rejected: r.rejected, ...tokens('chosenTokens'), ...tokens('rejectedTokens') };
  }
  const out = r.output;
  if (typeof r.instruction === 'string' && (r.input === undefined || typeof r.input === 'string') && Array.isArray(out) &&
      out.length === 2 && typeof out[0] === 'string' && typeof out[1] === 'string') {
    const input = (r.input as string | undefined) ?? '';
    return { prompt: input === '' ? r.instruction : `${r.instruction}\n${input}`, chosen: out[0], rejected: out[1] };
  }
  return undefined;
}

const SHAPES = 'Expected {prompt, chosen, rejected} or {instruction, input, output: [chosen, rejected]} with string values';

/** Reads preference rows (JSONL or a JSON array) from a file. */
export async function readPreferencePairs(file: string): Promise<PreferencePair[]> {
  return (await readRecordEntries(file, 'training data file')).map(({ value, line }) => {
    const pair = toPreferencePair(value);
    if (!pair) throw new DataFormatError(SHAPES, { file, line });
    return pair;
  });
}

/** Rows given in memory, checked with the same shapes (the index names the bad row). */
export function normalizePreferenceRows(rows: readonly unknown[]): PreferencePair[] {
  return rows.map((row, i) => {
    const pair = toPreferencePair(row);
    if (!pair) throw new InvalidArgumentError(`${SHAPES} for data[${i}]`);
    return pair;
  });
}

export interface TokenizedPair {
  /** Prompt + chosen response (+ EOS unless cut); targets from the last prompt token on. */
  chosen: Sequence & { tokens: number[] };
  rejected: Sequence & { tokens: number[] };
}

export interface PairTokenizeReport {
  pairs: TokenizedPair[];
  /** Input indices of the kept pairs. */
  kept: number[];
  /** Chosen and rejected are the same tokens (after cutting to maxLen): no preference to learn. */
  skippedIdentical: number;
  /** A response tokenizes to nothing. */
  skippedEmptyResponse: number;
  /** The prompt alone fills maxLen. */
  skippedPromptTooLong: number;
  /** Pairs with at least one response cut to maxLen (its EOS is then not trained). */
  truncated: number;
}

export function tokenizePairs(model: Model, data: readonly PreferencePair[], maxLen: number, parseSpecial = false): PairTokenizeReport {
  const eos = model.info.eos;
  const report: PairTokenizeReport = { pairs: [], kept: [], skippedIdentical: 0, skippedEmptyResponse: 0, skippedPromptTooLong: 0, truncated: 0 };
  const bound = model.maxTokenBytes;
  data.forEach((pair, i) => {
    if (pair.chosenTokens) checkPreTokenized(model, pair.chosenTokens, i);
    if (pair.rejectedTokens) checkPreTokenized(model, pair.rejectedTokens, i);
    const given = (t: PreTokenized) => ({ tokens: [...t.prompt, ...t.response], nPrompt: t.prompt.length });
    // As in tokenizeSft: huge responses are tokenized only as far as needed, huge prompts judged by their bytes.
    const chosenText = pair.chosenTokens ? '' : prefixForTokens(pair.chosen, maxLen, bound);
    const rejectedText = pair.rejectedTokens ? '' : prefixForTokens(pair.rejected, maxLen, bound);
    if ((!pair.chosenTokens || !pair.rejectedTokens) && certainlyLonger(pair.prompt, maxLen, bound)) {
      const empty = (t: PreTokenized | undefined, text: string) => (t ? t.response.length === 0 : model.tokenize(text, { parseSpecial }).length === 0);
      if (empty(pair.chosenTokens, chosenText) || empty(pair.rejectedTokens, rejectedText)) report.skippedEmptyResponse += 1;
      else report.skippedPromptTooLong += 1;
      return;
    }
    // The boundary rule shared with scoring (Model.tokenizePair); each side has its own context length, as a
    // merge at the boundary can differ between the two responses.
    const chosen = pair.chosenTokens ? given(pair.chosenTokens) : rowTokens(i, () => model.tokenizePair(pair.prompt, chosenText, { parseSpecial }));
    const rejected = pair.rejectedTokens ? given(pair.rejectedTokens) : rowTokens(i, () => model.tokenizePair(pair.prompt, rejectedText, { parseSpecial }));
    if (chosen.tokens.length === chosen.nPrompt || rejected.tokens.length === rejected.nPrompt) {
      report.skippedEmptyResponse += 1;
      return;
    }
    // At least one response token must fit after the prompt (the prompt's last token predicts it).
    const tooLong = (s: { nPrompt: number }) => s.nPrompt === 0 || s.nPrompt >= maxLen;
    if (tooLong(chosen) || tooLong(rejected)) {
      report.skippedPromptTooLong += 1;
      return;
    }
    let cut = false;
    const seq = (s: { tokens: number[] }) => {
      const tokens = [...s.tokens, eos];
      if (tokens.length <= maxLen) return tokens;
      cut = true;
      return tokens.slice(0, maxLen);
    };
    const c = seq(chosen);
    const r = seq(rejected);
    if (c.length === r.length && c.every((t, k) => t === r[k])) {
      report.skippedIdentical += 1;
      return;
    }
    if (cut) report.truncated += 1;
    report.pairs.push({ chosen: { tokens: c, nPrompt: chosen.nPrompt }, rejected: { tokens: r, nPrompt: rejected.nPrompt } });
    report.kept.push(i);
  });
  return report;
}
