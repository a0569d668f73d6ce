// GGUF metadata reader: parses header, KV pairs and tensor infos with the same checks as ggml's gguf.cpp
// (plus "data lies inside the file"), so a file that passes can be handed to llama.cpp without it aborting.

import { open } from 'node:fs/promises';
import { W2sError } from '../errors.js';
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGML_TYPE_INFO,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_KEY_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_SCALAR_SIZE,
  GGUF_VERSION,
  GgufValueType,
  alignUp,
  type GgufKv,
  type GgufScalar,
  type GgufTensorInfo,
} from './types.js';

export type GgufFormatErrorReason = 'not-gguf' | 'truncated' | 'unsupported-version' | 'invalid';

/** The file is not a (complete, valid) GGUF file; `reason` says which way it failed. */
export class GgufFormatError extends W2sError {
  constructor(
    readonly reason: GgufFormatErrorReason,
    message: string,
    readonly path?: string,
  ) {
    super('ERR_W2S_GGUF_FORMAT', path ? `${path}: ${message}` : message);
  }
}

export interface GgufMetadata {
  version: number;
  alignment: number;
  /** KV pairs in file order. */
  kv: GgufKv[];
  /** Same pairs by key, values only (arrays as JS arrays, u64/i64 as bigint). */
  values: Map<string, GgufScalar | GgufScalar[]>;
  tensors: GgufTensorInfo[];
  /** Data section start, bytes from file start. */
  dataOffset: number;
  /** Data section size including padding after each tensor, bytes. */
  dataSize: number;
  fileSize: number;
}

const MAX_STRING_BYTES = 1 << 30; // GGUF_MAX_STRING_LENGTH
const MAX_ARRAY_ELEMENTS = 1 << 30; // GGUF_MAX_ARRAY_ELEMENTS
const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Sequential reader over a file or buffer that refills a window on demand; `remaining` bounds every length. */
class Cursor {
  private buf: Uint8Array;
  private view: DataView;
  private start = 0; // absolute file offset of buf[0]
  private pos = 0; // index into buf
  private end = 0; // valid bytes in buf

  constructor(
    readonly size: number,
    private readonly fill?: (at: number, into: Uint8Array) => Promise<number>,
    whole?: Uint8Array,
  ) {
    this.buf = whole ?? new Uint8Array(1 << 20);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    if (whole) this.end = whole.length;
  }

  get offset(): number {
    return this.start + this.pos;
  }

  get remaining(): number {
    return this.size - this.offset;
  }

  /** Makes `n` bytes readable at pos (compacting/growing the window) or throws 'truncated'. */
  async need(n: number, what: string): Promise<void> {
    if (this.pos + n <= this.end) return;
    if (n > this.remaining || !this.fill) {
      throw new GgufFormatError('truncated', `file ends at byte ${this.size} while reading ${what} (needs ${n} bytes at offset ${this.offset})`);
    }
    const unread = this.end - this.pos;
    if (n > this.buf.length) {
      const next = new Uint8Array(Math.max(n, this.buf.length * 2));
      next.set(this.buf.subarray(this.pos, this.end));
      this.buf = next;
      this.view = new DataView(next.buffer);
    } else {
      this.buf.copyWithin(0, this.pos, this.end);
    }
    this.start += this.pos;
    this.pos = 0;
    this.end = unread;
    while (this.end < n) {
      const got = await this.fill(this.start + this.end, this.buf.subarray(this.end));
      if (got <= 0) throw new GgufFormatError('truncated', `file shrank while reading ${what}`);
      this.end += got;
    }
  }

  u8(): number { return this.view.getUint8(this.pos++); }
  i8(): number { return this.view.getInt8(this.pos++); }
  u16(): number { const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(): number { const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(): number { const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(): number { const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(): number { const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(): number { const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(): bigint { const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(): bigint { const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }

  /** A string if its length prefix and bytes are already buffered (then they lie inside the file), else undefined. */
  tryString(): string | undefined {
    if (this.pos + 8 > this.end) return undefined;
    const n = this.view.getBigUint64(this.pos, true);
    if (n > BigInt(this.end - this.pos - 8)) return undefined;
    this.pos += 8;
    return this.text(Number(n));
  }

  text(n: number): string { const s = utf8.decode(this.buf.subarray(this.pos, this.pos + n)); this.pos += n; return s; }
}

async function readString(c: Cursor, what: string): Promise<string> {
  await c.need(8, `${what} length`);
  const n = c.u64();
  if (n > BigInt(MAX_STRING_BYTES)) throw new GgufFormatError('invalid', `${what} length ${n} exceeds ${MAX_STRING_BYTES}`);
  if (n > BigInt(c.remaining)) throw new GgufFormatError('truncated', `${what} length ${n} exceeds the ${c.remaining} bytes left in the file`);
  await c.need(Number(n), what);
  return c.text(Number(n));
}

/** Reads a fixed-size scalar that `need` already made available. */
function readFixed(c: Cursor, type: GgufValueType): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8: return c.u8();
    case GgufValueType.INT8: return c.i8();
    case GgufValueType.UINT16: return c.u16();
    case GgufValueType.INT16: return c.i16();
    case GgufValueType.UINT32: return c.u32();
    case GgufValueType.INT32: return c.i32();
    case GgufValueType.FLOAT32: return c.f32();
    case GgufValueType.BOOL: return c.i8() !== 0;
    case GgufValueType.UINT64: return c.u64();
    case GgufValueType.INT64: return c.i64();
    case GgufValueType.FLOAT64: return c.f64();
    default: throw new GgufFormatError('invalid', `invalid value type ${type as number}`);
  }
}

async function readScalar(c: Cursor, type: GgufValueType, what: string): Promise<GgufScalar> {
  if (type === GgufValueType.STRING) return readString(c, what);
  await c.need(GGUF_SCALAR_SIZE[type], what);
  return readFixed(c, type);
}

/** Reads an array body; buffered elements are decoded synchronously (vocabularies hold 10^5+ strings). */
async function readArray(c: Cursor, itemType: GgufValueType, n: number, key: string): Promise<GgufScalar[]> {
  const arr: GgufScalar[] = new Array(n);
  if (itemType === GgufValueType.STRING) {
    for (let j = 0; j < n; j++) arr[j] = c.tryString() ?? (await readString(c, `'${key}'[${j}]`));
    return arr;
  }
  const size = GGUF_SCALAR_SIZE[itemType];
  const batch = Math.max(1, Math.floor((1 << 20) / size));
  for (let j = 0; j < n; ) {
    const m = Math.min(batch, n - j);
    await c.need(m * size, `'${key}'[${j}..${j + m - 1}]`);
    for (const end = j + m; j < end; j++) arr[j] = readFixed(c, itemType);
  }
  return arr;
}

function isScalarType(t: number): t is Exclude<GgufValueType, GgufValueType.ARRAY> {
  return Number.isInteger(t) && t >= 0 && t <= GgufValueType.FLOAT64 && t !== GgufValueType.ARRAY;
}

async function parse(c: Cursor): Promise<GgufMetadata> {
  if (c.size === 0) throw new GgufFormatError('not-gguf', 'file is empty (0 bytes), not a GGUF file');
  if (c.size < 4) throw new GgufFormatError('not-gguf', `file is only ${c.size} bytes, not a GGUF file`);
  await c.need(4, 'magic');
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    const shown = [0, 8, 16, 24].map((s) => (magic >>> s) & 0xff).map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`));
    throw new GgufFormatError('not-gguf', `bad magic '${shown.join('')}', expected 'GGUF'`);
  }
  await c.need(4 + 8 + 8, 'header');
  const version = c.u32();
  if (version === 0 || (version & 0xffff) === 0) {
    throw new GgufFormatError('unsupported-version', `bad GGUF version ${version} (wrong endianness?)`);
  }
  if (version === 1 || version > GGUF_VERSION) {
    throw new GgufFormatError('unsupported-version', `GGUF version ${version} is not supported (need 2..${GGUF_VERSION})`);
  }
  const nTensors = c.i64();
  const nKv = c.i64();
  // Each KV needs >= 8+1+4+1 bytes and each tensor info >= 8+1+4+8+4+8, so counts beyond that are lies.
  if (nTensors < 0n || nTensors > BigInt(Math.floor(c.remaining / 33))) {
    throw new GgufFormatError(nTensors < 0n ? 'invalid' : 'truncated', `tensor count ${nTensors} does not fit in the file`);
  }
  if (nKv < 0n || nKv > BigInt(Math.floor(c.remaining / 14))) {
    throw new GgufFormatError(nKv < 0n ? 'invalid' : 'truncated', `KV count ${nKv} does not fit in the file`);
  }

  const kv: GgufKv[] = [];
  const values = new Map<string, GgufScalar | GgufScalar[]>();
  for (let i = 0; i < Number(nKv); i++) {
    const key = await readString(c, `key #${i}`);
    if (!key) throw new GgufFormatError('invalid', `key #${i} is empty`);
    if (values.has(key)) throw new GgufFormatError('invalid', `duplicate key '${key}'`);
    await c.need(4, `type of '${key}'`);
    const type = c.i32();
    if (type === GgufValueType.ARRAY) {
      await c.need(4 + 8, `array header of '${key}'`);
      const itemType = c.i32();
      const n = c.u64();
      if (!isScalarType(itemType)) throw new GgufFormatError('invalid', `key '${key}' has invalid array type ${itemType}`);
      const minItem = itemType === GgufValueType.STRING ? 8 : GGUF_SCALAR_SIZE[itemType];
      if (n > BigInt(MAX_ARRAY_ELEMENTS)) throw new GgufFormatError('invalid', `key '${key}' has ${n} elements, more than ${MAX_ARRAY_ELEMENTS}`);
      if (n * BigInt(minItem) > BigInt(c.remaining)) throw new GgufFormatError('truncated', `key '${key}' array of ${n} elements does not fit in the file`);
      const arr = await readArray(c, itemType, Number(n), key);
      kv.push({ key, type: GgufValueType.ARRAY, itemType, value: arr });
      values.set(key, arr);
    } else {
      if (!isScalarType(type)) throw new GgufFormatError('invalid', `key '${key}' has invalid type ${type}`);
      const value = await readScalar(c, type, `'${key}'`);
      kv.push({ key, type, value });
      values.set(key, value);
    }
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignEntry = kv.find((e) => e.key === GGUF_KEY_ALIGNMENT);
  if (alignEntry) {
    if (alignEntry.type !== GgufValueType.UINT32) throw new GgufFormatError('invalid', `${GGUF_KEY_ALIGNMENT} must be UINT32`);
    alignment = alignEntry.value as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw new GgufFormatError('invalid', `alignment ${alignment} is not a power of 2`);
    }
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  let expectedOffset = 0;
  for (let i = 0; i < Number(nTensors); i++) {
    const name = await readString(c, `tensor #${i} name`);
    if (Buffer.byteLength(name) >= GGML_MAX_NAME) throw new GgufFormatError('invalid', `tensor name '${name}' is too long`);
    if (names.has(name)) throw new GgufFormatError('invalid', `duplicate tensor name '${name}'`);
    names.add(name);
    await c.need(4, `dims of '${name}'`);
    const nDims = c.u32();
    if (nDims > GGML_MAX_DIMS) throw new GgufFormatError('invalid', `tensor '${name}' has ${nDims} dims, more than ${GGML_MAX_DIMS}`);
    await c.need(nDims * 8 + 4 + 8, `shape of '${name}'`);
    const ne: number[] = [];
    let elements = 1n;
    for (let d = 0; d < nDims; d++) {
      const v = c.i64();
      if (v < 0n) throw new GgufFormatError('invalid', `tensor '${name}' dim ${d} is negative (${v})`);
      elements *= v;
      ne.push(Number(v));
    }
    if (elements > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufFormatError('invalid', `tensor '${name}' has too many elements`);
    const type = c.i32();
    const info = GGML_TYPE_INFO.get(type);
    if (!info) throw new GgufFormatError('invalid', `tensor '${name}' has unknown ggml type ${type}`);
    const n0 = nDims > 0 ? ne[0]! : 1;
    if (n0 % info.blockSize !== 0) {
      throw new GgufFormatError('invalid', `tensor '${name}' rows of ${n0} elements are not a multiple of the ${info.name} block size ${info.blockSize}`);
    }
    const bytes = (Number(elements) / info.blockSize) * info.typeSize;
    const offset = c.u64();
    if (offset !== BigInt(expectedOffset)) {
      throw new GgufFormatError('invalid', `tensor '${name}' has data offset ${offset}, expected ${expectedOffset}`);
    }
    tensors.push({ name, ne, type, offset: expectedOffset, bytes });
    expectedOffset += alignUp(bytes, alignment);
  }

  const dataOffset = tensors.length > 0 ? alignUp(c.offset, alignment) : c.offset;
  const dataSize = expectedOffset;
  const last = tensors[tensors.length - 1];
  // The final tensor's trailing padding is optional in practice; its bytes are not.
  const needEnd = last ? dataOffset + last.offset + last.bytes : dataOffset;
  if (needEnd > c.size) {
    throw new GgufFormatError('truncated', `tensor data needs ${needEnd} bytes but the file has ${c.size}`);
  }
  return { version, alignment, kv, values, tensors, dataOffset, dataSize, fileSize: c.size };
}

/** Parses a GGUF file's metadata from disk (reads only the header, in 1 MiB windows). */
export async function readGgufMetadata(path: string): Promise<GgufMetadata> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const cursor = new Cursor(size, async (at, into) => (await handle.read(into, 0, into.length, at)).bytesRead);
    return await parse(cursor);
  } catch (err) {
    if (err instanceof GgufFormatError && !err.path) throw new GgufFormatError(err.reason, err.message, path);
    throw err;
  } finally {
    await handle.close();
  }
}

/** Parses GGUF metadata from an in-memory buffer (the whole file). */
export async function parseGgufMetadata(data: Uint8Array): Promise<GgufMetadata> {
  return parse(new Cursor(data.length, undefined, data));
}
