// Merging a LoRA adapter into an F32 base model: W' = W + (alpha / rank)·B·A for every adapted weight,
// written as a new GGUF with the same metadata, in F32 or with its matrices stored as Q8_0 (the merge itself
// is always F32). The toy world uses it to turn a pretraining adapter into a plain base model that the method
// then adapts again.
import fs from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { readGgufMetadata } from '../gguf/reader.js';
import { checkAdapterMetadata, checkModelMetadata } from '../model/check.js';
import { encode } from '../gguf/quantize.js';
import { GgmlType, GgufValueType, type GgufKv, type GgufTensorInfo } from '../gguf/types.js';
import { writeGguf } from '../gguf/writer.js';
import type { LoraTensorPair } from './adapter-file.js';

/** W (n_out × n_in row-major, ggml ne = [n_in, n_out]) += scale · B (n_out × rank) · A (rank × n_in). */
export function mergeInto(w: Float32Array, p: LoraTensorPair, scale: number): void {
  const { nIn, nOut, rank, a, b } = p;
  const row = new Float64Array(nIn);
  for (let o = 0; o < nOut; o++) {
    row.fill(0);
    for (let r = 0; r < rank; r++) {
      const br = b[o * rank + r]!;
      if (br === 0) continue;
      for (let i = 0; i < nIn; i++) row[i]! += br * a[r * nIn + i]!;
    }
    for (let i = 0; i < nIn; i++) w[o * nIn + i] = w[o * nIn + i]! + scale * row[i]!;
  }
}

function f32At(bytes: Uint8Array, offset: number, length: number): Float32Array {
  // Copy: the tensor's offset in the file buffer need not be a multiple of 4.
  const out = new Float32Array(length / 4);
  new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + length));
  return out;
}

export interface MergeOptions {
  /**
   * How the merged model stores its weights. `f32` (default) keeps every tensor's type; `q8_0` rounds each F32
   * matrix whose rows are a multiple of 32 to Q8_0 (ggml's reference rounding, lib/gguf/quantize.ts) after the
   * merge, keeps vectors (norms, biases) F32, and sets general.file_type to MOSTLY_Q8_0 (7).
   */
  store?: 'f32' | 'q8_0';
}

const LLAMA_FTYPE_MOSTLY_Q8_0 = 7;
/** Whether `q8_0` storage rounds this tensor: an F32 matrix of whole 32-element blocks per row. */
const storedAsQ8 = (t: GgufTensorInfo) => t.type === GgmlType.F32 && t.ne.length >= 2 && t.ne[0]! % 32 === 0;

function withFileType(kv: readonly GgufKv[], fileType: number): GgufKv[] {
  const entry: GgufKv = { key: 'general.file_type', type: GgufValueType.UINT32, value: fileType };
  return kv.some((k) => k.key === entry.key) ? kv.map((k) => (k.key === entry.key ? entry : k)) : [...kv, entry];
}

/** Writes `modelPath` with `pairs` merged to `out` (atomically, via writeGguf). The base must be F32. */
export async function writeMergedModel(modelPath: string, pairs: readonly LoraTensorPair[], alpha: number, out: string, o: MergeOptions = {}): Promise<void> {
  const meta = await readGgufMetadata(modelPath);
  checkModelMetadata(meta, modelPath);
  const file = fs.readFileSync(modelPath);
  const byBase = new Map(pairs.map((p) => [p.base, p]));
  for (const t of meta.tensors) {
    if (byBase.has(t.name) && t.type !== GgmlType.F32) throw new InvalidArgumentError(`Merging needs an F32 base model, but ${t.name} is of type ${t.type}`);
  }
  const q8 = o.store === 'q8_0';
  await writeGguf(out, q8 ? withFileType(meta.kv, LLAMA_FTYPE_MOSTLY_Q8_0) : meta.kv, meta.tensors.map((t) => {
    const quantize = q8 && storedAsQ8(t);
    return {
      name: t.name, ne: t.ne, type: quantize ? GgmlType.Q8_0 : t.type,
      data: () => {
        const start = meta.dataOffset + t.offset;
        const pair = byBase.get(t.name);
        if (!pair && !quantize) return [file.subarray(start, start + t.bytes)];
        const w = f32At(file, start, t.bytes);
        if (pair) mergeInto(w, pair, alpha / pair.rank);
        return [quantize ? encode(GgmlType.Q8_0, w) : new Uint8Array(w.buffer)];
      },
    };
  }));
}

/** Merges an adapter file (as trainSft writes) into the F32 model `modelPath`, writing `out`. */
export async function mergeAdapterFile(modelPath: string, adapterPath: string, out: string, o: MergeOptions = {}): Promise<void> {
  const meta = await readGgufMetadata(adapterPath);
  checkAdapterMetadata(meta, adapterPath);
  const bytes = fs.readFileSync(adapterPath);
  const tensor = (name: string) => {
    const t = meta.tensors.find((x) => x.name === name);
    if (!t) throw new InvalidArgumentError(`${adapterPath} has no tensor ${name}`);
    return { t, data: f32At(bytes, meta.dataOffset + t.offset, t.bytes) };
  };
  const pairs: LoraTensorPair[] = meta.tensors.filter((t) => t.name.endsWith('.lora_a')).map((ta) => {
    const base = ta.name.slice(0, -'.lora_a'.length);
    const a = tensor(ta.name);
    const b = tensor(`${base}.lora_b`);
    return { base, nIn: a.t.ne[0]!, rank: a.t.ne[1]!, nOut: b.t.ne[1]!, a: a.data, b: b.data };
  });
  await writeMergedModel(modelPath, pairs, Number(meta.values.get('adapter.lora.alpha')), out, o);
}
