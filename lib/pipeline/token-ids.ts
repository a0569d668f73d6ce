// Training on the tokens a model generated rather than on a re-tokenization of their text (method.md §4–§5:
// the strong model learns from D_weak, its own ICL answers and its own samples). A sampler's ids are often
// not the canonical split of their text (at T = 1 any segmentation can come out), so tokenizing the stored
// text would train a sequence nobody generated. This module maps a sample's ids to the stored (post-processed)
// response, and builds the training rows: generated ids where the trained model shares the generator's
// tokenizer (lib/model/tokenizer-fingerprint.ts), else the text with the boundary rule (Model.tokenizePair).
import { chatSftParts } from '../data/chat.js';
import { postprocessResponse, type Id } from '../data/datasets.js';
import type { PairRecord, SftRecord } from '../data/formats.js';
import type { Model } from '../model.js';
import type { PreferencePair } from '../train/preference-data.js';
import type { PreTokenized, SftExample } from '../train/sft-data.js';

/** Extra record fields (results, SFT and pair records): the response's generated ids and their tokenizer. */
export interface TokenFields {
  /** Ids of the `response` / `output` text, as generated (trimmed to it: responseIds). */
  token_ids?: number[];
  /** tokenizerFingerprint of the model that generated them. */
  tokenizer?: string;
}

/**
 * The run of whole generated tokens that stands for the stored response `postprocessResponse(text)`: the
 * fewest tokens from either end whose detokenized text still post-processes to `response`. Tokens wholly in
 * what post-processing strips (leading/trailing whitespace and dots, a stop string's straddling token, control
 * tokens without text at either end) are dropped; a token that holds both stripped characters and response
 * text (SentencePiece's "▁The" after `Answer:`, "4." at the end) is kept whole, because it is what the model
 * generated. Undefined when no run of whole tokens gives the response (e.g. a vocabulary whose detokenizer
 * cleans up spaces): the caller then trains on the text.
 */
export function responseIds(model: Model, response: string, ids: readonly number[]): number[] | undefined {
  const n = ids.length;
  if (response === '' || n === 0) return undefined;
  const gives = (a: number, b: number) => postprocessResponse(model.detokenize(ids.slice(a, b))) === response;
  // The last id may straddle a stop string's start (Sample.tokenIds): then the response ends before it.
  const hi = gives(0, n) ? n : n > 1 && gives(0, n - 1) ? n - 1 : 0;
  if (hi === 0) return undefined;
  // gives(0, j) holds exactly for j in [j*, hi] (fewer tokens lose response text), so bisect for j*.
  let lo = 1;
  let top = hi;
  while (lo < top) {
    const mid = (lo + top) >> 1;
    if (gives(0, mid)) top = mid;
    else lo = mid + 1;
  }
  const end = lo;
  // gives(i, end) holds exactly for i in [0, i*]: bisect for i*.
  let a = 0;
  let b = end - 1;
  while (a < b) {
    const mid = (a + b + 1) >> 1;
    if (gives(mid, end)) a = mid;
    else b = mid - 1;
  }
  return ids.slice(a, end);
}

/** The trained model's side of row building. */
export interface RowContext {
  /** The trained model (its vocabulary suffices). */
  model: Model;
  /** Its tokenizerFingerprint: records generated with the same one are trained on their ids. */
  fingerprint: string;
  /** Chat mode (prompt.template: chat): prompts through `model`'s own template, control tokens parsed. */
  chat?: { system?: string };
  /** The question of a record (chat mode renders it for the trained model). */
  question(id: Id): string;
}

export interface BuiltRows<R, E> {
  /** What is trained, as records (paper format; `token_ids` where ids are trained). */
  records: R[];
  examples: E[];
  /** Responses trained on their generated ids, and on their text. */
  generatedIds: number;
  text: number;
}

const idsOf = (fields: TokenFields, fingerprint: string): number[] | undefined =>
  fields.tokenizer === fingerprint && Array.isArray(fields.token_ids) && fields.token_ids.length > 0 ? fields.token_ids : undefined;

/** One response for the trained model: its prompt and response text, and its tokens when generated ids apply. */
function side(ctx: RowContext, id: Id, prompt: string, answer: string, ids: number[] | undefined): { prompt: string; response: string; tokens?: PreTokenized } {
  const parseSpecial = ctx.chat !== undefined;
  let response = answer;
  let suffix: number[] = [];
  if (ctx.chat) {
    const parts = chatSftParts(ctx.model, ctx.question(id), answer, { system: ctx.chat.system });
    prompt = parts.prompt;
    response = parts.response;
    // A template that rewrites the answer's text has no ids for it: train on the text.
    if (parts.suffix === undefined) ids = undefined;
    // The end-of-turn marker starts with a control token in every common template, so its tokens alone are
    // its tokens in context (llama.cpp tokenizes the text after a control token on its own).
    else if (ids) suffix = ctx.model.tokenize(parts.suffix, { parseSpecial: true });
  }
  if (!ids) return { prompt, response };
  // The prompt as the sampler tokenized its prompt (BOS added, control tokens parsed in chat mode).
  return { prompt, response, tokens: { prompt: ctx.model.tokenize(prompt, { addSpecial: true, parseSpecial }), response: [...ids, ...suffix] } };
}

/** SFT rows for the trained model from (selected) records. */
export function buildSftRows(ctx: RowContext, rows: readonly (SftRecord & TokenFields)[]): BuiltRows<SftRecord & TokenFields, SftExample> {
  const out: BuiltRows<SftRecord & TokenFields, SftExample> = { records: [], examples: [], generatedIds: 0, text: 0 };
  for (const r of rows) {
    const s = side(ctx, r.id, r.content, r.output, idsOf(r, ctx.fingerprint));
    out.examples.push(s.tokens ? { prompt: s.prompt, response: s.response, tokens: s.tokens } : { prompt: s.prompt, response: s.response });
    out.records.push({ id: r.id, content: s.prompt, output: s.response, ...(s.tokens ? { token_ids: [...s.tokens.response], tokenizer: ctx.fingerprint } : {}) });
    if (s.tokens) out.generatedIds += 1;
    else out.text += 1;
  }
  return out;
}

/** Pair records: per side, its generated ids and tokenizer (null for a side without ids). */
export interface PairTokenFields {
  token_ids?: [number[] | null, number[] | null];
  tokenizer?: [string | null, string | null];
}

/** Preference pairs for the trained model; each side on its own ids or text. */
export function buildPreferenceRows(ctx: RowContext, rows: readonly (PairRecord & PairTokenFields)[]): BuiltRows<PairRecord & PairTokenFields, PreferencePair> {
  const out: BuiltRows<PairRecord & PairTokenFields, PreferencePair> = { records: [], examples: [], generatedIds: 0, text: 0 };
  for (const r of rows) {
    const prompt = r.instruction + r.input;
    const sides = ([0, 1] as const).map((k) => side(ctx, r.id, prompt, r.output[k], idsOf({ token_ids: r.token_ids?.[k] ?? undefined, tokenizer: r.tokenizer?.[k] ?? undefined }, ctx.fingerprint)));
    const [c, j] = sides as [ReturnType<typeof side>, ReturnType<typeof side>];
    out.examples.push({ prompt: c.prompt, chosen: c.response, rejected: j.response, ...(c.tokens ? { chosenTokens: c.tokens } : {}), ...(j.tokens ? { rejectedTokens: j.tokens } : {}) });
    const anyIds = c.tokens || j.tokens;
    out.records.push({
      id: r.id, instruction: c.prompt, input: '', output: [c.response, j.response],
      ...(anyIds ? { token_ids: [c.tokens ? [...c.tokens.response] : null, j.tokens ? [...j.tokens.response] : null], tokenizer: [c.tokens ? ctx.fingerprint : null, j.tokens ? ctx.fingerprint : null] } : {}),
    });
    for (const s of sides) {
      if (s.tokens) out.generatedIds += 1;
      else out.text += 1;
    }
  }
  return out;
}
