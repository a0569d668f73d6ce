// GGUF v3 writer: encodes the header (KV metadata of every type, tensor infos) and streams tensor data
// chunk by chunk into `<out>.tmp-<pid>`, padding each tensor to the alignment, then renames atomically.

import { open, rename, rm } from 'node:fs/promises';
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_KEY_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  alignUp,
  ggmlTensorBytes,
  type GgufKv,
  type GgufScalar,
  type GgufTensorInfo,
} from './types.js';

/** A tensor to write: `data()` yields its bytes in order; their total must equal its ggml size. */
export interface GgufTensorSource {
  name: string;
  /** Dims innermost-first (ggml `ne`), e.g. attn_q is [n_embd, n_head*head_dim]. */
  ne: readonly number[];
  type: number;
  data: () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export interface GgufWriteResult {
  path: string;
  /** Total file size, bytes. */
  bytes: number;
  /** Where the data section starts, bytes from file start. */
  dataOffset: number;
  alignment: number;
  tensors: GgufTensorInfo[];
}

const utf8 = new TextEncoder();

/** Growable little-endian byte buffer for the header. */
class ByteBuilder {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: bigint): void { this.reserve(8); this.view.setBigUint64(this.length, v, true); this.length += 8; }
  i64(v: bigint): void { this.reserve(8); this.view.setBigInt64(this.length, v, true); this.length += 8; }
  bytes(b: Uint8Array): void { this.reserve(b.length); this.buf.set(b, this.length); this.length += b.length; }
  /** GGUF string: u64 byte length then UTF-8 bytes, no NUL. */
  str(s: string): void { const b = utf8.encode(s); this.u64(BigInt(b.length)); this.bytes(b); }
  zeros(n: number): void { this.reserve(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

const INT_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};

function writeScalar(b: ByteBuilder, type: GgufValueType, value: GgufScalar, key: string): void {
  const fail = (why: string): never => {
    throw new RangeError(`GGUF key '${key}': ${why} (got ${String(value)} of type ${typeof value})`);
  };
  switch (type) {
    case GgufValueType.STRING:
      if (typeof value !== 'string') fail('expected a string');
      b.str(value as string);
      return;
    case GgufValueType.BOOL:
      if (typeof value !== 'boolean') fail('expected a boolean');
      b.i8(value ? 1 : 0);
      return;
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof value !== 'number') fail('expected a number');
      if (type === GgufValueType.FLOAT32) b.f32(value as number);
      else b.f64(value as number);
      return;
    case GgufValueType.UINT64:
    case GgufValueType.INT64: {
      if (typeof value !== 'bigint' && !(typeof value === 'number' && Number.isSafeInteger(value))) {
        fail('expected a bigint or safe integer');
      }
      const big = BigInt(value as number | bigint);
      if (type === GgufValueType.UINT64) {
        if (big < 0n || big > 0xffffffffffffffffn) fail('out of u64 range');
        b.u64(big);
      } else {
        if (big < -0x8000000000000000n || big > 0x7fffffffffffffffn) fail('out of i64 range');
        b.i64(big);
      }
      return;
    }
    default: {
      const range = INT_RANGES[type];
      if (!range) fail(`unsupported value type ${type}`);
      if (typeof value !== 'number' || !Number.isInteger(value) || value < range![0] || value > range![1]) {
        fail(`expected an integer in [${range![0]}, ${range![1]}] for ${GgufValueType[type]}`);
      }
      const v = value as number;
      if (type === GgufValueType.UINT8) b.u8(v);
      else if (type === GgufValueType.INT8) b.i8(v);
      else if (type === GgufValueType.UINT16) b.u16(v);
      else if (type === GgufValueType.INT16) b.i16(v);
      else if (type === GgufValueType.UINT32) b.u32(v);
      else b.i32(v);
    }
  }
}

/** The alignment a KV list asks for (general.alignment, u32 power of two) or the default 32. */
export function alignmentOf(kv: readonly GgufKv[]): number {
  const entry = kv.find((e) => e.key === GGUF_KEY_ALIGNMENT);
  if (!entry) return GGUF_DEFAULT_ALIGNMENT;
  const v = entry.value;
  if (entry.type !== GgufValueType.UINT32 || typeof v !== 'number' || v <= 0 || (v & (v - 1)) !== 0) {
    throw new RangeError(`${GGUF_KEY_ALIGNMENT} must be a UINT32 power of two (got ${String(v)})`);
  }
  return v;
}

/**
 * Encodes magic, version, counts, KV pairs and tensor infos, padded with zeros to the alignment
 * when there are tensors (that is where gguf.cpp expects the data section to start).
 */
export function encodeGgufHeader(
  kv: readonly GgufKv[],
  tensors: readonly Pick<GgufTensorSource, 'name' | 'ne' | 'type'>[],
): { header: Uint8Array; alignment: number; infos: GgufTensorInfo[] } {
  const alignment = alignmentOf(kv);
  const b = new ByteBuilder();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.i64(BigInt(tensors.length));
  b.i64(BigInt(kv.length));

  const keys = new Set<string>();
  for (const entry of kv) {
    if (!entry.key) throw new RangeError('GGUF keys must be non-empty');
    if (keys.has(entry.key)) throw new RangeError(`duplicate GGUF key '${entry.key}'`);
    keys.add(entry.key);
    b.str(entry.key);
    b.i32(entry.type);
    if (entry.type === GgufValueType.ARRAY) {
      if ((entry.itemType as GgufValueType) === GgufValueType.ARRAY) throw new RangeError(`GGUF key '${entry.key}': nested arrays are not supported`);
      b.i32(entry.itemType);
      const values = entry.value;
      b.u64(BigInt(values.length));
      for (let i = 0; i < values.length; i++) writeScalar(b, entry.itemType, values[i]!, entry.key);
    } else {
      writeScalar(b, entry.type, entry.value, entry.key);
    }
  }

  const names = new Set<string>();
  const infos: GgufTensorInfo[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (utf8.encode(t.name).length >= GGML_MAX_NAME) throw new RangeError(`tensor name '${t.name}' is ${GGML_MAX_NAME} bytes or longer`);
    if (names.has(t.name)) throw new RangeError(`duplicate tensor name '${t.name}'`);
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > GGML_MAX_DIMS || t.ne.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new RangeError(`tensor '${t.name}' has invalid dims [${t.ne.join(', ')}]`);
    }
    const bytes = ggmlTensorBytes(t.type, t.ne);
    b.str(t.name);
    b.u32(t.ne.length);
    for (const d of t.ne) b.i64(BigInt(d));
    b.i32(t.type);
    b.u64(BigInt(offset));
    infos.push({ name: t.name, ne: [...t.ne], type: t.type, offset, bytes });
    offset += alignUp(bytes, alignment);
  }
  if (tensors.length > 0) b.zeros(alignUp(b.length, alignment) - b.length);
  return { header: b.result(), alignment, infos };
}

/** Collects small chunks into ~4 MiB writes so streaming many rows costs few syscalls. */
class FileSink {
  private buf = new Uint8Array(4 << 20);
  private used = 0;
  written = 0;

  constructor(private readonly handle: import('node:fs/promises').FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.used + chunk.length > this.buf.length) await this.flush();
    if (chunk.length >= this.buf.length) {
      await this.writeFully(chunk);
    } else {
      this.buf.set(chunk, this.used);
      this.used += chunk.length;
    }
    this.written += chunk.length;
  }

  async zeros(n: number): Promise<void> {
    if (n > 0) await this.write(new Uint8Array(n));
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.writeFully(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  private async writeFully(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done);
      done += bytesWritten;
    }
  }
}

/**
 * Writes a complete GGUF file at `path` atomically: data goes to `path.tmp-<pid>`, which is renamed over
 * `path` only after everything (including fsync) succeeded, and removed on any error.
 */
export async function writeGguf(
  path: string,
  kv: readonly GgufKv[],
  tensors: readonly GgufTensorSource[],
): Promise<GgufWriteResult> {
  const { header, alignment, infos } = encodeGgufHeader(kv, tensors);
  const tmp = `${path}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w');
  let closed = false;
  try {
    const sink = new FileSink(handle);
    await sink.write(header);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const info = infos[i]!;
      const start = sink.written;
      for await (const chunk of t.data()) {
        if (sink.written - start + chunk.length > info.bytes) {
          throw new RangeError(`tensor '${t.name}' produced more than its ${info.bytes} bytes`);
        }
        await sink.write(chunk);
      }
      const got = sink.written - start;
      if (got !== info.bytes) throw new RangeError(`tensor '${t.name}' produced ${got} bytes, expected ${info.bytes}`);
      await sink.zeros(alignUp(got, alignment) - got);
    }
    await sink.flush();
    await handle.sync();
    await handle.close();
    closed = true;
    await rename(tmp, path);
    return { path, bytes: sink.written, dataOffset: header.length, alignment, tensors: infos };
  } catch (err) {
    if (!closed) await handle.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
