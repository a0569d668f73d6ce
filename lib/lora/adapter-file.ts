// Writing LoRA adapters in llama.cpp's GGUF adapter format (general.type = adapter, adapter.type = lora,
// adapter.lora.alpha, `<base tensor>.lora_a` / `.lora_b`), loadable by llama.cpp and node-llama-cpp.
// The effective weight is W + (alpha / rank) · B·A, with A (rank, n_in) and B (n_out, rank) row-major.
import { GgmlType, GgufValueType, type GgufKv } from '../gguf/types.js';
import { writeGguf } from '../gguf/writer.js';

export interface LoraTensorPair {
  /** Base weight name, e.g. `blk.0.attn_q.weight`. */
  base: string;
  nIn: number;
  nOut: number;
  rank: number;
  /** (rank, nIn) row-major: ggml ne = [nIn, rank]. */
  a: Float32Array;
  /** (nOut, rank) row-major: ggml ne = [rank, nOut]. */
  b: Float32Array;
}

export interface LoraAdapterFile {
  /** general.architecture of the base model. */
  architecture: string;
  alpha: number;
  tensors: readonly LoraTensorPair[];
  /** Extra metadata (e.g. training provenance). */
  extra?: readonly GgufKv[];
}

function bytesOf(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/** Writes the adapter atomically (temp file + rename). */
export async function writeLoraAdapter(file: string, adapter: LoraAdapterFile): Promise<void> {
  const kv: GgufKv[] = [
    { key: 'general.architecture', type: GgufValueType.STRING, value: adapter.architecture },
    { key: 'general.type', type: GgufValueType.STRING, value: 'adapter' },
    { key: 'adapter.type', type: GgufValueType.STRING, value: 'lora' },
    { key: 'adapter.lora.alpha', type: GgufValueType.FLOAT32, value: adapter.alpha },
    ...(adapter.extra ?? []),
  ];
  const tensors = adapter.tensors.flatMap((t) => {
    if (t.a.length !== t.rank * t.nIn || t.b.length !== t.nOut * t.rank) {
      throw new RangeError(`${t.base}: A must hold rank × nIn and B nOut × rank values`);
    }
    const base = t.base.replace(/\.weight$/, '');
    return [
      { name: `${base}.weight.lora_a`, type: GgmlType.F32, ne: [t.nIn, t.rank], data: () => [bytesOf(t.a)] },
      { name: `${base}.weight.lora_b`, type: GgmlType.F32, ne: [t.rank, t.nOut], data: () => [bytesOf(t.b)] },
    ];
  });
  await writeGguf(file, kv, tensors);
}
