// Random LoRA adapters for a model (shapes read from its GGUF header) and, for an F32 model, the model with
// the same adapter merged into its weights (W' = W + (alpha/rank)·B·A, computed here in double precision),
// so that base + adapter can be checked against an independent forward pass of the merged weights.
import fs from 'node:fs';
import path from 'node:path';
import { readGgufMetadata, type GgufMetadata } from '../../lib/gguf/reader.js';
import { GgmlType } from '../../lib/gguf/types.js';
import { writeGguf } from '../../lib/gguf/writer.js';
import { writeLoraAdapter, type LoraTensorPair } from '../../lib/lora/adapter-file.js';

/** Which projections of which blocks to adapt, e.g. { 0: ['attn_q', 'ffn_down'], 1: ['attn_k'] }. */
export type LoraTargets = Record<number, readonly ('attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down')[]>;

export interface RandomLoraOptions {
  targets: LoraTargets;
  rank?: number;
  alpha?: number;
  seed?: number;
  /** Standard deviation of the entries of A and B. Defaults to 0.05. */
  std?: number;
  /** Make B all zeros (the adapter is then a no-op). */
  zeroB?: boolean;
}

/** mulberry32 uniforms turned into normals (Box-Muller): a small seeded generator independent of the model creator's. */
function normals(seed: number, n: number, std: number): Float32Array {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(1 - uniform()));
    const a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

function tensorInfo(meta: GgufMetadata, name: string) {
  const info = meta.tensors.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name} in the model`);
  if (info.ne.length !== 2) throw new Error(`${name} is not a matrix`);
  return info;
}

/** A random adapter for the model at `modelPath` (any weight type: only shapes are read from its header). */
export async function randomLora(modelPath: string, o: RandomLoraOptions): Promise<{ meta: GgufMetadata; pairs: LoraTensorPair[]; alpha: number }> {
  const meta = await readGgufMetadata(modelPath);
  const rank = o.rank ?? 4;
  const alpha = o.alpha ?? 8;
  const std = o.std ?? 0.05;
  let seed = o.seed ?? 1;
  const pairs: LoraTensorPair[] = [];
  for (const [layer, names] of Object.entries(o.targets)) {
    for (const proj of names) {
      const base = `blk.${layer}.${proj}.weight`;
      const [nIn, nOut] = tensorInfo(meta, base).ne as [number, number];
      const a = normals(seed++ * 7919, rank * nIn, std);
      const b = o.zeroB ? new Float32Array(nOut * rank) : normals(seed++ * 7919 + 1, nOut * rank, std);
      pairs.push({ base, nIn, nOut, rank, a, b });
    }
  }
  return { meta, pairs, alpha };
}

/** Writes a random adapter for the model at `modelPath` to `out` and returns `out`. */
export async function writeRandomLora(modelPath: string, out: string, o: RandomLoraOptions): Promise<string> {
  const { meta, pairs, alpha } = await randomLora(modelPath, o);
  await writeLoraAdapter(out, { architecture: String(meta.values.get('general.architecture')), alpha, tensors: pairs });
  return out;
}

/** W (n_out × n_in row-major, i.e. ggml ne = [n_in, n_out]) += scale · B (n_out × rank) · A (rank × n_in). */
export function mergeInto(w: Float32Array, p: LoraTensorPair, scale: number): void {
  const { nIn, nOut, rank, a, b } = p;
  for (let o = 0; o < nOut; o++) {
    for (let i = 0; i < nIn; i++) {
      let d = 0;
      for (let r = 0; r < rank; r++) d += b[o * rank + r]! * a[r * nIn + i]!;
      w[o * nIn + i] = w[o * nIn + i]! + scale * d;
    }
  }
}

/**
 * Writes an adapter for the F32 model at `modelPath` to `<dir>/<name>.lora.gguf` and the model with it
 * merged to `<dir>/<name>.merged.gguf` (same metadata, same tensor order, only adapted weights changed).
 */
export async function writeLoraAndMerged(modelPath: string, dir: string, name: string, o: RandomLoraOptions): Promise<{ adapter: string; merged: string }> {
  const { meta, pairs, alpha } = await randomLora(modelPath, o);
  const adapter = path.join(dir, `${name}.lora.gguf`);
  const merged = path.join(dir, `${name}.merged.gguf`);
  await writeLoraAdapter(adapter, { architecture: String(meta.values.get('general.architecture')), alpha, tensors: pairs });
  await writeMerged(modelPath, pairs, alpha, merged);
  return { adapter, merged };
}

/** Writes the F32 model at `modelPath` with `pairs` merged (W += alpha/rank · B·A) to `merged`. */
async function writeMerged(modelPath: string, pairs: readonly LoraTensorPair[], alpha: number, merged: string): Promise<void> {
  const meta = await readGgufMetadata(modelPath);
  const file = fs.readFileSync(modelPath);
  const byBase = new Map(pairs.map((p) => [p.base, p]));
  await writeGguf(merged, meta.kv, meta.tensors.map((t) => ({
    name: t.name,
    ne: t.ne,
    type: t.type,
    data: () => {
      const start = meta.dataOffset + t.offset;
      const bytes = file.subarray(start, start + t.bytes);
      const pair = byBase.get(t.name);
      if (!pair) return [bytes];
      if (t.type !== GgmlType.F32) throw new Error(`${t.name} is not F32 (type ${t.type}); merging needs an F32 model`);
      // Copy into an aligned Float32Array (the file buffer offset need not be a multiple of 4).
      const w = new Float32Array(t.bytes / 4);
      new Uint8Array(w.buffer).set(bytes);
      mergeInto(w, pair, alpha / pair.rank);
      return [new Uint8Array(w.buffer)];
    },
  })));
}

/** Merges an adapter file (e.g. one trainSft wrote) into the F32 model: a new base whose behaviour is base + adapter. */
export async function mergeAdapterFile(modelPath: string, adapterPath: string, merged: string): Promise<void> {
  const meta = await readGgufMetadata(adapterPath);
  const bytes = fs.readFileSync(adapterPath);
  const f32 = (name: string) => {
    const t = meta.tensors.find((x) => x.name === name)!;
    const out = new Float32Array(t.bytes / 4);
    new Uint8Array(out.buffer).set(bytes.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes));
    return { t, out };
  };
  const pairs: LoraTensorPair[] = meta.tensors.filter((t) => t.name.endsWith('.lora_a')).map((ta) => {
    const base = ta.name.slice(0, -'.lora_a'.length);
    const a = f32(ta.name);
    const b = f32(`${base}.lora_b`);
    return { base, nIn: a.t.ne[0]!, rank: a.t.ne[1]!, nOut: b.t.ne[1]!, a: a.out, b: b.out };
  });
  await writeMerged(modelPath, pairs, Number(meta.values.get('adapter.lora.alpha')), merged);
}
