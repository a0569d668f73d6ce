// Random LoRA adapters for a model (shapes read from its GGUF header) and, for an F32 model, the model with
// the same adapter merged into its weights (W' = W + (alpha/rank)·B·A, computed here in double precision),
// so that base + adapter can be checked against an independent forward pass of the merged weights.
import path from 'node:path';
import { readGgufMetadata, type GgufMetadata } from '../../lib/gguf/reader.js';
import { writeLoraAdapter, type LoraTensorPair } from '../../lib/lora/adapter-file.js';
import { writeMergedModel } from '../../lib/lora/merge.js';
export { mergeAdapterFile } from '../../lib/lora/merge.js';

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
  /** Adapt the output head (`output.weight`) too. */
  output?: boolean;
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
  const bases = Object.entries(o.targets).flatMap(([layer, names]) => names.map((proj) => `blk.${layer}.${proj}.weight`));
  if (o.output) bases.push('output.weight');
  for (const base of bases) {
    const [nIn, nOut] = tensorInfo(meta, base).ne as [number, number];
    const a = normals(seed++ * 7919, rank * nIn, std);
    const b = o.zeroB ? new Float32Array(nOut * rank) : normals(seed++ * 7919 + 1, nOut * rank, std);
    pairs.push({ base, nIn, nOut, rank, a, b });
  }
  return { meta, pairs, alpha };
}

/** Writes a random adapter for the model at `modelPath` to `out` and returns `out`. */
export async function writeRandomLora(modelPath: string, out: string, o: RandomLoraOptions): Promise<string> {
  const { meta, pairs, alpha } = await randomLora(modelPath, o);
  await writeLoraAdapter(out, { architecture: String(meta.values.get('general.architecture')), alpha, tensors: pairs });
  return out;
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
  await writeMergedModel(modelPath, pairs, alpha, merged);
  return { adapter, merged };
}
