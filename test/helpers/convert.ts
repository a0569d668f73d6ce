// Rewrites a model's matrices in another storage type (for types the model creator does not write, such
// as BF16): same metadata, 2-D F32 tensors converted, everything else copied.
import fs from 'node:fs';
import { addon } from '../../lib/native.js';
import { readGgufMetadata } from '../../lib/gguf/reader.js';
import { GgmlType } from '../../lib/gguf/types.js';
import { writeGguf } from '../../lib/gguf/writer.js';

/** F32 → BF16 with round-to-nearest-even (as ggml's ggml_compute_fp32_to_bf16). */
function toBf16(src: Float32Array): Uint8Array {
  const u32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = u32[i]!;
    out[i] = (u + (0x7fff + ((u >>> 16) & 1))) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

/**
 * Copies an F32 model with every 2-D F32 matrix whose rows are a whole number of `type`'s blocks written in
 * `type` by ggml's own quantizer (K-quants: rows of 256). `ggmlType` is the GGUF type id (Q4_K 12, Q5_K 13, Q6_K 14).
 */
export async function convertMatrices(srcPath: string, dstPath: string, type: string, ggmlType: number, block: number): Promise<void> {
  const meta = await readGgufMetadata(srcPath);
  const file = fs.readFileSync(srcPath);
  const tensors = meta.tensors.map((t) => {
    const bytes = file.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes);
    if (t.type !== GgmlType.F32 || t.ne.length !== 2 || t.ne[0]! % block !== 0) return { name: t.name, ne: t.ne, type: t.type, data: () => [bytes] };
    const f32 = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return { name: t.name, ne: t.ne, type: ggmlType, data: () => [addon().quantizeRows(type, f32, t.ne[0]!)] };
  });
  await writeGguf(dstPath, meta.kv, tensors);
}

export async function convertMatricesToBf16(srcPath: string, dstPath: string): Promise<void> {
  const meta = await readGgufMetadata(srcPath);
  const file = fs.readFileSync(srcPath);
  const tensors = meta.tensors.map((t) => {
    const bytes = file.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes);
    if (t.type !== GgmlType.F32 || t.ne.length !== 2) return { name: t.name, ne: t.ne, type: t.type, data: () => [bytes] };
    const f32 = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return { name: t.name, ne: t.ne, type: 30 /* GGML_TYPE_BF16 */, data: () => [toBf16(f32)] };
  });
  await writeGguf(dstPath, meta.kv, tensors);
}

/** Copies an F32 model with token `id`'s embedding row set to NaN, so any sequence using that
 * token is NaN in the forward pass while every other sequence stays finite. */
export async function poisonTokenEmbedding(srcPath: string, dstPath: string, id: number): Promise<void> {
  const meta = await readGgufMetadata(srcPath);
  const file = fs.readFileSync(srcPath);
  const tensors = meta.tensors.map((t) => {
    const bytes = Buffer.from(file.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes));
    if (t.name === 'token_embd.weight') {
      if (t.type !== GgmlType.F32) throw new Error('poisonTokenEmbedding needs an F32 model');
      const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      f32.fill(Number.NaN, id * t.ne[0]!, (id + 1) * t.ne[0]!);
    }
    return { name: t.name, ne: t.ne, type: t.type, data: () => [bytes] };
  });
  await writeGguf(dstPath, meta.kv, tensors);
}
