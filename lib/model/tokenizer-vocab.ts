// Builds the tokenizer stored in random models: a byte-fallback SentencePiece vocabulary (llama.cpp "llama"
// model) or a byte-level BPE with merges (llama.cpp "gpt2" model, "qwen2" pre-tokenizer), padded to a size.

/** llama.cpp token types (LLAMA_TOKEN_TYPE_*), stored in tokenizer.ggml.token_type. */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export type TokenizerKind = 'spm' | 'bpe';

export interface TokenizerVocab {
  kind: TokenizerKind;
  /** tokenizer.ggml.model */
  model: 'llama' | 'gpt2';
  /** tokenizer.ggml.pre (BPE only) */
  pre?: string;
  tokens: string[];
  /** SPM merge priorities (higher merges first); absent for BPE, which ranks by merge order. */
  scores?: number[];
  tokenTypes: number[];
  /** BPE merges "left right", rank = index. */
  merges?: string[];
  bosId: number;
  eosId: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix?: boolean;
}

const SPM_SPACE = '\u2581'; // "▁": SentencePiece writes spaces as this character
const BPE_SPACE = '\u0120'; // "Ġ": byte-level BPE maps byte 0x20 to this character

// Lowercase words that appear after a space; mostly English function words and GSM8K-style maths vocabulary.
const WORDS = `the of and to a in is that for it with as was on be are by this at from or an has have had not
what how many much each total number if then so he she they his her their more than times per cost costs dollars
money buy buys bought sell sells sold day days week weeks hour hours minute minutes year years half twice left
remaining after before first second third one two three four five six seven eight nine ten hundred thousand there
were will can does did get gets got make makes made take takes need needs want wants all some every other into out
up down over about only also just him we you your our my me its who which when where why would could should answer
question step let price pay paid spend spent save saved earn earns earned apples books students people friends class
school store car cars miles feet inches pounds cups boxes pieces bag bags items less equal equals sum difference
product divide divided multiply multiplied plus minus percent profit rate speed average therefore same new old big
small long time times work works worked buy eggs cookies candy pizza water money left`.split(/\s+/);

// Words that commonly start a sentence, added capitalised after a space.
const CAPITALISED = `The What How If She He They There In Let So Question Answer Therefore We First Then Each A It
This Since Now Total Step Finally`.split(/\s+/);

// Pieces that occur without a leading space (suffixes, answer markers, GSM8K calculator brackets).
const BARE = ['Question', 'Answer', 'The', 'ing', 'ed', 'er', 'es', 'ly', 'tion', "'s", "n't", '####', '<<', '>>', '.\n', '?', ':'];

/** Printable ASCII except space (0x21..0x7E), in code order. */
function printableAscii(): string[] {
  const out: string[] = [];
  for (let c = 0x21; c <= 0x7e; c++) out.push(String.fromCharCode(c));
  return out;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/**
 * Deterministic, unbounded supply of filler pieces: lowercase strings in length-then-lexicographic order,
 * each emitted with and without the space marker. Length order keeps the set prefix-closed, so every filler
 * piece is reachable by merging (prefix + last character).
 */
function* fillerPieces(space: string): Generator<string> {
  let layer = [...LETTERS];
  for (;;) {
    const next: string[] = [];
    for (const s of layer) {
      for (const c of LETTERS) {
        const t = s + c;
        next.push(t);
        yield space + t;
        yield t;
      }
    }
    layer = next;
  }
}

/** Ordered set of pieces where every piece's prefixes (by code point) are inserted before it. */
class PieceSet {
  readonly list: string[] = [];
  private readonly seen = new Set<string>();

  constructor(private readonly reserved: ReadonlySet<string>) {}

  has(p: string): boolean {
    return this.seen.has(p) || this.reserved.has(p);
  }

  /** Adds `piece` after its prefixes longer than `minPrefix` code points. */
  addClosed(piece: string, minPrefix = 1): void {
    const chars = [...piece];
    for (let n = minPrefix + 1; n <= chars.length; n++) this.add(chars.slice(0, n).join(''));
  }

  add(piece: string): void {
    if (!this.has(piece)) {
      this.seen.add(piece);
      this.list.push(piece);
    }
  }
}

/** Adds the shared hand-picked pieces; `newline` is null for SPM, where newlines only exist as byte <0x0A>. */
function commonPieces(set: PieceSet, space: string, newline: string | null): void {
  set.add(space);
  for (const c of LETTERS + LETTERS.toUpperCase()) set.add(space + c);
  for (const w of WORDS) set.addClosed(space + w);
  for (const w of CAPITALISED) set.addClosed(space + w);
  for (const p of BARE) {
    if (p.includes('\n') && newline === null) continue;
    set.addClosed(p.replace(/\n/g, newline ?? '').replace(/ /g, space));
  }
  set.addClosed(space + space);
  if (newline !== null) set.addClosed(newline + newline);
}

/** Checks the requested size and appends filler pieces until `tokens.length + tail` reaches it. */
function pad(set: PieceSet, fixed: number, size: number | undefined, space: string): void {
  if (size === undefined) return;
  if (size < fixed + set.list.length) throw new RangeError(`vocabulary size ${size} is below the base size ${fixed + set.list.length}`);
  const gen = fillerPieces(space);
  while (fixed + set.list.length < size) set.add(gen.next().value as string);
}

/** Size of the SPM / BPE vocabulary before padding (the minimum `size`). */
export function baseVocabSize(kind: TokenizerKind): number {
  return buildVocab(kind).tokens.length;
}

export function buildVocab(kind: TokenizerKind, size?: number): TokenizerVocab {
  return kind === 'spm' ? buildSpmVocab(size) : buildBpeVocab(size);
}

/**
 * Llama-style SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens <0x00>..<0xFF> (type BYTE) for byte
 * fallback, then normal pieces with scores decreasing in insertion order (prefix-closed, so merges can reach them).
 */
export function buildSpmVocab(size?: number): TokenizerVocab {
  const head = ['<unk>', '<s>', '</s>'];
  const headTypes: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  for (let b = 0; b < 256; b++) {
    head.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    headTypes.push(TokenType.BYTE);
  }
  const set = new PieceSet(new Set(head));
  for (const c of printableAscii()) set.add(c); // single characters, so every longer piece is reachable
  commonPieces(set, SPM_SPACE, null);
  pad(set, head.length, size, SPM_SPACE);
  const tokens = [...head, ...set.list];
  const scores = tokens.map((_, i) => (i < head.length ? 0 : -(i - head.length)));
  const tokenTypes = [...headTypes, ...set.list.map(() => TokenType.NORMAL)];
  return { kind: 'spm', model: 'llama', tokens, scores, tokenTypes, bosId: 1, eosId: 2, unkId: 0, addBos: true, addEos: false, addSpacePrefix: true };
}

/** GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards, in this order. */
export function byteLevelAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return cs.map((c) => String.fromCodePoint(c));
}

/**
 * Qwen2-style byte-level BPE: 256 byte characters, merged pieces each with the merge "prefix last-char",
 * filler pieces, then the control tokens <|endoftext|>, <|im_start|>, <|im_end|> at the end like Qwen2.5.
 */
export function buildBpeVocab(size?: number): TokenizerVocab {
  const bytes = byteLevelAlphabet();
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const set = new PieceSet(new Set([...bytes, ...specials]));
  commonPieces(set, BPE_SPACE, '\u010a'); // "Ċ" is byte 0x0A
  pad(set, bytes.length + specials.length, size, BPE_SPACE);
  const tokens = [...bytes, ...set.list, ...specials];
  const merges = set.list.map((p) => {
    const chars = [...p];
    return `${chars.slice(0, -1).join('')} ${chars[chars.length - 1]}`;
  });
  const tokenTypes = tokens.map((_, i) => (i >= bytes.length + set.list.length ? TokenType.CONTROL : TokenType.NORMAL));
  const eot = bytes.length + set.list.length;
  return { kind: 'bpe', model: 'gpt2', pre: 'qwen2', tokens, tokenTypes, merges, bosId: eot, eosId: eot, padId: eot, addBos: false, addEos: false };
}
