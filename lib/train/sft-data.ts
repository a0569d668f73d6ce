// SFT data: reading {prompt, response} or the paper's {content, output} rows (JSONL or a JSON array), and
// tokenizing them with the boundary rule shared with scoring (Model.tokenizePair: prompt + response tokenized
// whole, with BOS), EOS appended to the targets; prompt positions carry no loss. A row may instead carry its
// tokens (`tokens`): then they are trained as given, e.g. the ids a model generated (lib/pipeline/token-ids.ts).
import { DataFormatError } from '../data/errors.js';
import { InvalidArgumentError } from '../errors.js';
import { readRecordEntries } from '../data/json.js';
import type { Model } from '../model.js';
import { certainlyLonger, prefixForTokens, rowTokens } from '../model/token-bound.js';

/** Tokens of a row given up front: prompt (BOS included) and response, EOS not included (it is appended). */
export interface PreTokenized {
  prompt: readonly number[];
  response: readonly number[];
}

export interface SftExample {
  prompt: string;
  response: string;
  /**
   * The row's tokens, used instead of tokenizing prompt + response (which then only describe it): the
   * sampler's own ids are often not what tokenizing their text gives (a non-canonical split).
   */
  tokens?: PreTokenized;
}

/** Checks pre-tokenized ids against the vocabulary (the native trainer must never see an id out of range). */
export function checkPreTokenized(model: Model, t: PreTokenized, row: number): void {
  const n = model.info.nVocab;
  for (const ids of [t.prompt, t.response]) {
    if (!Array.isArray(ids)) throw new InvalidArgumentError(`Expected arrays of token ids for data[${row}].tokens`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= n) throw new InvalidArgumentError(`Token id ${JSON.stringify(id)} in data[${row}].tokens is outside the vocabulary [0, ${n}) of ${model.path}`);
    }
  }
}

/** Reads SFT rows; each needs string `prompt` + `response`, or `content` + `output`. */
export async function readSftExamples(file: string): Promise<SftExample[]> {
  return (await readRecordEntries(file, 'training data file')).map(({ value, line }) => {
    const row = value as Record<string, unknown>;
    if (typeof row === 'object' && row !== null) {
      if (typeof row.prompt === 'string' && typeof row.response === 'string') return { prompt: row.prompt, response: row.response };
      if (typeof row.content === 'string' && typeof row.output === 'string') return { prompt: row.content, response: row.output };
    }
    throw new DataFormatError('Expected {prompt, response} or {content, output} with string values', { file, line });
  });
}

export interface TokenizedExample {
  /** Prompt tokens followed by response tokens and (unless truncated) EOS. */
  tokens: number[];
  /** Prompt tokens (BOS included); the first target is the token after them. */
  nPrompt: number;
  /** The response was cut to fit maxLen (its EOS is then not trained). */
  truncated: boolean;
}

export interface TokenizeReport {
  examples: TokenizedExample[];
  /** Input indices of the kept examples. */
  kept: number[];
  /** Examples dropped because the prompt alone fills maxLen, or the response is empty. */
  skippedPromptTooLong: number;
  skippedEmptyResponse: number;
  truncated: number;
}

export function tokenizeSft(model: Model, data: readonly SftExample[], maxLen: number, parseSpecial = false): TokenizeReport {
  const eos = model.info.eos;
  const report: TokenizeReport = { examples: [], kept: [], skippedPromptTooLong: 0, skippedEmptyResponse: 0, truncated: 0 };
  // Row i's sequence (prompt + response + EOS), cut to maxLen.
  const keep = (i: number, all: number[], nPrompt: number) => {
    const truncated = all.length > maxLen;
    if (truncated) report.truncated += 1;
    report.examples.push({ tokens: truncated ? all.slice(0, maxLen) : all, nPrompt, truncated });
    report.kept.push(i);
  };
  const bound = model.maxTokenBytes;
  data.forEach((ex, i) => {
    if (ex.tokens) {
      checkPreTokenized(model, ex.tokens, i);
      const { prompt, response } = ex.tokens;
      if (response.length === 0) report.skippedEmptyResponse += 1;
      else if (prompt.length === 0 || prompt.length >= maxLen) report.skippedPromptTooLong += 1;
      else keep(i, [...prompt, ...response, eos], prompt.length);
      return;
    }
    // A response of megabytes is tokenized only as far as maxLen can use (token-bound.ts).
    const response = prefixForTokens(ex.response, maxLen, bound);
    // A prompt of certainly ≥ maxLen tokens is not tokenized at all.
    if (certainlyLonger(ex.prompt, maxLen, bound)) {
      if (model.tokenize(response, { parseSpecial }).length === 0) report.skippedEmptyResponse += 1;
      else report.skippedPromptTooLong += 1;
      return;
    }
    // The boundary rule shared with scoring (Model.tokenizePair): the tokens the model sees for the whole text.
    const pair = rowTokens(i, () => model.tokenizePair(ex.prompt, response, { parseSpecial }));
    if (pair.tokens.length === pair.nPrompt) {
      report.skippedEmptyResponse += 1;
      return;
    }
    // At least one response token must fit after the prompt (the prompt's last token predicts it).
    if (pair.nPrompt === 0 || pair.nPrompt >= maxLen) {
      report.skippedPromptTooLong += 1;
      return;
    }
    keep(i, [...pair.tokens, eos], pair.nPrompt);
  });
  return report;
}
