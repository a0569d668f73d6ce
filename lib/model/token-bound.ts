// A lower bound on how many tokens a text has, without tokenizing it: data rows of megabytes must be judged
// "too long" in microseconds, not after seconds of tokenizing (and gigabytes of token arrays).
import { InvalidArgumentError } from '../errors.js';
import type { GgufMetadata } from '../gguf/reader.js';

/**
 * The most text bytes one token can stand for: the longest token string of the vocabulary in UTF-8 bytes
 * (an SPM "▁" is 3 bytes for 1 byte of text, a byte token "<0x4B>" 6 for 1, a GPT-2 byte-level char 1–2 for 1,
 * so the string length bounds what it covers). Only for tokenizers that never drop text — SentencePiece
 * ('llama') and byte-level BPE ('gpt2'); WordPiece drops whitespace and Unigram normalizes, so there is no
 * bound (undefined) and callers tokenize as usual.
 */
export function maxTokenBytes(meta: GgufMetadata): number | undefined {
  const kind = meta.values.get('tokenizer.ggml.model');
  if (kind !== 'llama' && kind !== 'gpt2') return undefined;
  const tokens = meta.values.get('tokenizer.ggml.tokens');
  if (!Array.isArray(tokens) || tokens.length === 0) return undefined;
  let max = 1;
  for (const t of tokens) if (typeof t === 'string') max = Math.max(max, Buffer.byteLength(t));
  return max;
}

/** True when `text` certainly has more than `maxTokens` tokens (B bytes need at least B / bound tokens). */
export function certainlyLonger(text: string, maxTokens: number, bound: number | undefined): boolean {
  // UTF-16 length ≤ UTF-8 bytes: a cheap first test before counting bytes.
  return bound !== undefined && text.length > maxTokens * bound / 3 && Buffer.byteLength(text) > maxTokens * bound;
}

/**
 * A prefix of `text` long enough to hold at least 2·(maxTokens + 64) tokens, or `text` itself when shorter:
 * its first maxTokens tokens are those of the whole text (the cut lies far past them), so a row of megabytes
 * is tokenized in kilobytes.
 */
export function prefixForTokens(text: string, maxTokens: number, bound: number | undefined): string {
  if (bound === undefined) return text;
  let units = 2 * (maxTokens + 64) * bound; // each UTF-16 unit is at least one UTF-8 byte
  if (text.length <= units) return text;
  const c = text.charCodeAt(units - 1);
  if (c >= 0xd800 && c <= 0xdbff) units -= 1; // never split a surrogate pair
  return text.slice(0, units);
}

/** Runs a row's tokenization; a text the vocabulary cannot encode becomes an error that names the row (1-based). */
export function rowTokens<T>(index: number, tokenize: () => T): T {
  try {
    return tokenize();
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`row ${index + 1}: ${err.message}`, { cause: err });
    throw err;
  }
}
