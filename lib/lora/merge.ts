// Merging a LoRA adapter into an F32 base model: W' = W + (alpha / rank)·B·A for every adapted weight,
// written as a new GGUF with the same metadata. The toy world uses it to turn a pretraining adapter into
// a plain base model that the method then adapts again.
import fs from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { readGgufMetadata } from '../gguf/reader.js';
import { checkAdapterMetadata, checkModelMetadata } from '../model/check.js';
import { GgmlType } from '../gguf/types.js';
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

/** Writes `modelPath` with `pairs` merged to `out` (atomically, via writeGguf). The base must be F32. */
export async function writeMergedModel(modelPath: string, pairs: readonly LoraTensorPair[], alpha: number, out: string): Promise<void> {
  const meta = await readGgufMetadata(modelPath);
  checkModelMetadata(meta, modelPath);
  const file = fs.readFileSync(modelPath);
  const byBase = new Map(pairs.map((p) => [p.base, p]));
  for (const t of meta.tensors) {
    if (byBase.has(t.name) && t.type !== GgmlType.F32) throw new InvalidArgumentError(`Merging needs an F32 base model, but ${t.name} is of type ${t.type}`);
  }
  await writeGguf(out, meta.kv, meta.tensors.map((t) => ({
    name: t.name, ne: t.ne, type: t.type,
    data: () => {
      const start = meta.dataOffset + t.offset;
      const pair = byBase.get(t.name);
      if (!pair) return [file.subarray(start, start + t.bytes)];
      const w = f32At(file, start, t.bytes);
      mergeInto(w, pair, alpha / pair.rank);
      return [new Uint8Array(w.buffer)];
    },
  })));
}

/** Merges an adapter file (as trainSft writes) into the F32 model `modelPath`, writing `out`. */
export async function mergeAdapterFile(modelPath: string, adapterPath: string, out: string): Promise<void> {
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
  await writeMergedModel(modelPath, pairs, Number(meta.values.get('adapter.lora.alpha')), out);
}
