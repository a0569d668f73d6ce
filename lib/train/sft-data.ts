// SFT data: reading {prompt, response} or the paper's {content, output} rows (JSONL or a JSON array), and
// tokenizing them with the shared convention: prompt with BOS, response without special tokens, EOS
// appended to the targets; prompt positions carry no loss.
import { DataFormatError } from '../data/errors.js';
import { readRecordEntries } from '../data/json.js';
import type { Model } from '../model.js';
import { certainlyLonger, prefixForTokens } from '../model/token-bound.js';

export interface SftExample {
  prompt: string;
  response: string;
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

export function tokenizeSft(model: Model, data: readonly SftExample[], maxLen: number): TokenizeReport {
  const eos = model.info.eos;
  const report: TokenizeReport = { examples: [], kept: [], skippedPromptTooLong: 0, skippedEmptyResponse: 0, truncated: 0 };
  const bound = model.maxTokenBytes;
  data.forEach((ex, i) => {
    // A prompt of certainly ≥ maxLen tokens is not tokenized at all, and a response only as far as maxLen can use.
    const promptTooLong = certainlyLonger(ex.prompt, maxLen, bound);
    const prompt = promptTooLong ? [] : model.tokenize(ex.prompt, { addSpecial: true });
    const response = model.tokenize(prefixForTokens(ex.response, maxLen, bound));
    if (response.length === 0) {
      report.skippedEmptyResponse += 1;
      return;
    }
    // At least one response token must fit after the prompt (the prompt's last token predicts it).
    if (promptTooLong || prompt.length === 0 || prompt.length >= maxLen) {
      report.skippedPromptTooLong += 1;
      return;
    }
    let tokens = [...prompt, ...response, eos];
    const truncated = tokens.length > maxLen;
    if (truncated) {
      tokens = tokens.slice(0, maxLen);
      report.truncated += 1;
    }
    report.examples.push({ tokens, nPrompt: prompt.length, truncated });
    report.kept.push(i);
  });
  return report;
}
