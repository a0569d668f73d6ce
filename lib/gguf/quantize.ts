// f32 -> f16 / q8_0 / q4_0 encoders (and their decoders), bit-exact ports of ggml's reference code:
// ggml_compute_fp32_to_fp16 (ggml-impl.h) and quantize_row_q{8,4}_0_ref (ggml-quants.c).
// All float arithmetic is rounded to float32 with Math.fround at the same points as the C code, so the
// bytes match what llama-quantize would write (double rounding is innocuous for one f32 +,-,*,/).

import { GgmlType } from './types.js';

export const QK8_0 = 32; // elements per q8_0 block; block = f16 d + 32 x int8 = 34 bytes
export const QK4_0 = 32; // elements per q4_0 block; block = f16 d + 16 bytes of nibbles = 18 bytes
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
const fround = Math.fround;

function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

function f32FromBits(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0]!;
}

/** IEEE half bits (round to nearest even, NaN -> 0x7E00 | sign) exactly like ggml_compute_fp32_to_fp16. */
export function fp32ToFp16(value: number): number {
  const scaleToInf = 5.192296858534828e33; // 0x1.0p+112f
  const scaleToZero = 7.703719777548943e-34; // 0x1.0p-110f
  let base = fround(fround(Math.abs(fround(value)) * scaleToInf) * scaleToZero);
  const w = f32Bits(value);
  const shl1W = (w << 1) >>> 0;
  const sign = (w & 0x80000000) >>> 0;
  let bias = (shl1W & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = fround(f32FromBits((bias >>> 1) + 0x07800000) + base);
  const bits = f32Bits(base);
  const expBits = (bits >>> 13) & 0x00007c00;
  const mantissaBits = bits & 0x00000fff;
  const nonsign = expBits + mantissaBits;
  return ((sign >>> 16) | (shl1W > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** Exact f16 bits -> number (every half is representable in f32/f64). */
export function fp16ToFp32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // subnormal: mant * 2^-14 / 1024
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** C roundf: halves round away from zero (Math.round rounds them toward +inf). */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Bytes needed to store `n` elements of `type`. */
export function encodedBytes(type: GgmlType, n: number): number {
  switch (type) {
    case GgmlType.F32:
      return n * 4;
    case GgmlType.F16:
      return n * 2;
    case GgmlType.Q8_0:
      return (n / QK8_0) * Q8_0_BLOCK_BYTES;
    case GgmlType.Q4_0:
      return (n / QK4_0) * Q4_0_BLOCK_BYTES;
    default:
      throw new RangeError(`unsupported ggml type ${type as number}`);
  }
}

/**
 * Encodes `src` (a whole number of rows) as `type` into `dst` at `offset`; returns bytes written.
 * For q8_0/q4_0 `src.length` must be a multiple of 32 (blocks never straddle rows when rows are multiples of 32).
 */
export function encodeInto(type: GgmlType, src: Float32Array, dst: Uint8Array, offset = 0): number {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const n = src.length;
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) view.setFloat32(offset + i * 4, src[i]!, true);
      return n * 4;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) view.setUint16(offset + i * 2, fp32ToFp16(src[i]!), true);
      return n * 2;
    case GgmlType.Q8_0:
      return quantizeQ8_0(src, view, offset);
    case GgmlType.Q4_0:
      return quantizeQ4_0(src, view, offset);
    default:
      throw new RangeError(`unsupported ggml type ${type as number}`);
  }
}

/** Convenience wrapper returning a fresh buffer. */
export function encode(type: GgmlType, src: Float32Array): Uint8Array {
  const out = new Uint8Array(encodedBytes(type, src.length));
  encodeInto(type, src, out, 0);
  return out;
}

function checkBlocks(n: number, qk: number): void {
  if (n % qk !== 0) throw new RangeError(`element count ${n} is not a multiple of the block size ${qk}`);
}

// quantize_row_q8_0_ref: d = amax/127, q = roundf(x * (1/d)).
function quantizeQ8_0(src: Float32Array, view: DataView, offset: number): number {
  checkBlocks(src.length, QK8_0);
  const nb = src.length / QK8_0;
  for (let i = 0; i < nb; i++) {
    const base = i * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(src[base + j]!));
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const out = offset + i * Q8_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    for (let j = 0; j < QK8_0; j++) view.setInt8(out + 2 + j, roundf(fround(src[base + j]! * id)));
  }
  return nb * Q8_0_BLOCK_BYTES;
}

// quantize_row_q4_0_ref: d = max/-8 where max is the signed value of largest magnitude (first one wins ties),
// q = min(15, (int8)(x/d + 8.5)); byte j holds element j (low nibble) and element j+16 (high nibble).
function quantizeQ4_0(src: Float32Array, view: DataView, offset: number): number {
  checkBlocks(src.length, QK4_0);
  const nb = src.length / QK4_0;
  const half = QK4_0 / 2;
  for (let i = 0; i < nb; i++) {
    const base = i * QK4_0;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = src[base + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const out = offset + i * Q4_0_BLOCK_BYTES;
    view.setUint16(out, fp32ToFp16(d), true);
    for (let j = 0; j < half; j++) {
      const x0 = fround(src[base + j]! * id);
      const x1 = fround(src[base + half + j]! * id);
      const xi0 = Math.min(15, Math.trunc(fround(x0 + 8.5)));
      const xi1 = Math.min(15, Math.trunc(fround(x1 + 8.5)));
      view.setUint8(out + 2 + j, xi0 | (xi1 << 4));
    }
  }
  return nb * Q4_0_BLOCK_BYTES;
}

/** Decodes `n` elements of `type` from `src` (dequantize_row_* in ggml-quants.c). */
export function decode(type: GgmlType, src: Uint8Array, n: number): Float32Array {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const out = new Float32Array(n);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) out[i] = fp16ToFp32(view.getUint16(i * 2, true));
      return out;
    case GgmlType.Q8_0: {
      checkBlocks(n, QK8_0);
      for (let i = 0; i < n / QK8_0; i++) {
        const at = i * Q8_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < QK8_0; j++) out[i * QK8_0 + j] = view.getInt8(at + 2 + j) * d;
      }
      return out;
    }
    case GgmlType.Q4_0: {
      checkBlocks(n, QK4_0);
      const half = QK4_0 / 2;
      for (let i = 0; i < n / QK4_0; i++) {
        const at = i * Q4_0_BLOCK_BYTES;
        const d = fp16ToFp32(view.getUint16(at, true));
        for (let j = 0; j < half; j++) {
          const q = view.getUint8(at + 2 + j);
          out[i * QK4_0 + j] = ((q & 0x0f) - 8) * d;
          out[i * QK4_0 + j + half] = ((q >> 4) - 8) * d;
        }
      }
      return out;
    }
    default:
      throw new RangeError(`unsupported ggml type ${type as number}`);
  }
}
