// LoRA adapters in Hugging Face PEFT's format (adapter_model.safetensors + adapter_config.json), which vLLM,
// SGLang, TGI and transformers load, converted from and to llama.cpp's GGUF adapters (lib/lora/adapter-file.ts).
// Tensor names: `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (r, in) and `.lora_B.weight`
// (out, r). For the llama architecture, llama.cpp's converter permutes the rows of q and k (the RoPE pair
// layout: convert_hf_to_gguf.py `LlamaModel.permute`); the rows of lora_B of q/k are un-permuted here.
import fs from 'node:fs';
import path from 'node:path';
import { AdapterError, InvalidArgumentError } from '../errors.js';
import { readGgufMetadata, type GgufMetadata } from '../gguf/reader.js';
import { GgmlType } from '../gguf/types.js';
import { writeFileAtomic } from '../io/atomic.js';
import { checkAdapterMetadata, checkModelMetadata } from '../model/check.js';
import { writeLoraAdapter, type LoraTensorPair } from './adapter-file.js';

/** llama.cpp weight name (inside `blk.N.`) → Hugging Face module path (inside `model.layers.N.`). */
const HF_MODULES: Record<string, string> = {
  attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};
// Phi-3 keeps q/k/v and gate/up fused in both formats (qkv_proj, gate_up_proj: the same row order).
const PHI3_MODULES: Record<string, string> = { ...HF_MODULES, attn_qkv: 'self_attn.qkv_proj', ffn_up: 'mlp.gate_up_proj' };
const modulesOf = (arch?: string) => (arch === 'phi3' ? PHI3_MODULES : HF_MODULES);
const PREFIX = 'base_model.model.';

/** `blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj`; `output.weight` → `lm_head`. */
export function hfModuleName(ggufWeight: string, arch?: string): string {
  if (ggufWeight === 'output.weight') return 'lm_head';
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(ggufWeight);
  const mod = m && modulesOf(arch)[m[2]!];
  if (!m || !mod) throw new AdapterError(`no Hugging Face name is known for the adapted weight ${ggufWeight}`);
  return `model.layers.${m[1]}.${mod}`;
}

export function ggufWeightName(hfModule: string, arch?: string): string {
  if (hfModule === 'lm_head') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfModule);
  const modules = Object.fromEntries(Object.entries(modulesOf(arch)).map(([g, h]) => [h, g]));
  const w = m && modules[m[2]!];
  if (!m || !w) throw new AdapterError(`the PEFT module ${hfModule} has no llama.cpp counterpart (supported: ${Object.keys(modules).join(', ')}, lm_head)`);
  return `blk.${m[1]}.${w}.weight`;
}

/** Every pair must adapt a weight of the model with its shape: an adapter of another model is refused here. */
function checkAgainstModel(pairs: readonly LoraTensorPair[], meta: GgufMetadata, adapter: string, model: string): void {
  for (const p of pairs) {
    const w = meta.tensors.find((t) => t.name === p.base);
    if (!w) throw new AdapterError(`${adapter} adapts ${p.base}, which ${model} does not have: the adapter was made for another model`);
    if (w.ne[0] !== p.nIn || w.ne[1] !== p.nOut) {
      throw new AdapterError(`${adapter}: ${p.base} is ${w.ne[1]} × ${w.ne[0]} in ${model}, but the adapter's is ${p.nOut} × ${p.nIn}: the adapter was made for another model`);
    }
  }
}

/** Heads whose rows llama.cpp permuted for this weight (llama q: n_head, k: n_head_kv), or 0 for none. */
function permutedHeads(arch: string, base: string, meta: GgufMetadata): number {
  if (arch !== 'llama') return 0;
  const nHead = Number(meta.values.get('llama.attention.head_count'));
  const nKv = Number(meta.values.get('llama.attention.head_count_kv') ?? nHead);
  if (/\.attn_q\.weight$/.test(base)) return nHead;
  if (/\.attn_k\.weight$/.test(base)) return nKv;
  return 0;
}

/**
 * Row order conversion of an (nOut, cols) row-major matrix with nOut = heads × D. llama.cpp's permute
 * (HF → GGUF) sends HF row h·D + t·D/2 + j to GGUF row h·D + 2j + t; `toHf` undoes it.
 */
export function permuteRows(m: Float32Array, nOut: number, cols: number, heads: number, toHf: boolean): Float32Array {
  const d = nOut / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new AdapterError(`cannot permute ${nOut} rows into ${heads} heads of an even size`);
  const half = d / 2;
  const out = new Float32Array(m.length);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const hf = h * d + t * half + j;
        const gg = h * d + 2 * j + t;
        const [from, to] = toHf ? [gg, hf] : [hf, gg];
        out.set(m.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

function f16ToF32(bits: number): number {
  const s = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const f = bits & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Elements of a tensor as F32 (F32, F16 and BF16 sources). */
function toF32(bytes: Uint8Array, dtype: 'F32' | 'F16' | 'BF16', count: number, what: string): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = dtype === 'F32' ? 4 : 2;
  if (bytes.byteLength !== count * size) throw new AdapterError(`${what}: expected ${count * size} bytes of ${dtype} but found ${bytes.byteLength}`);
  for (let i = 0; i < count; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true);
    else if (dtype === 'F16') out[i] = f16ToF32(view.getUint16(i * 2, true));
    else out[i] = new Float32Array(new Uint32Array([view.getUint16(i * 2, true) << 16]).buffer)[0]!;
  }
  return out;
}

/** The A/B pairs of a GGUF adapter as F32, with its alpha and architecture. */
export async function readGgufAdapter(file: string): Promise<{ architecture: string; alpha: number; pairs: LoraTensorPair[] }> {
  const meta = await readGgufMetadata(file);
  checkAdapterMetadata(meta, file);
  const bytes = fs.readFileSync(file);
  const tensor = (name: string) => {
    const t = meta.tensors.find((x) => x.name === name);
    if (!t) throw new AdapterError(`${file} has no tensor ${name}`);
    const type = t.type === GgmlType.F32 ? 'F32' : t.type === GgmlType.F16 ? 'F16' : undefined;
    if (!type) throw new AdapterError(`${file}: ${name} is of ggml type ${t.type}; only F32 and F16 adapters convert`);
    const start = meta.dataOffset + t.offset;
    return { t, data: toF32(bytes.subarray(start, start + t.bytes), type, t.ne.reduce((a, b) => a * b, 1), name) };
  };
  const pairs = meta.tensors.filter((t) => t.name.endsWith('.lora_a')).map((ta): LoraTensorPair => {
    const base = ta.name.slice(0, -'.lora_a'.length);
    const a = tensor(ta.name);
    const b = tensor(`${base}.lora_b`);
    return { base, nIn: a.t.ne[0]!, rank: a.t.ne[1]!, nOut: b.t.ne[1]!, a: a.data, b: b.data };
  });
  return { architecture: String(meta.values.get('general.architecture')), alpha: Number(meta.values.get('adapter.lora.alpha')), pairs };
}

/** safetensors: u64 LE header length, JSON header (names → dtype, shape, data_offsets), then the data. */
export function encodeSafetensors(tensors: readonly { name: string; shape: number[]; data: Float32Array }[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const t of sorted) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data starts 8-byte aligned
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json), ...sorted.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}

export function decodeSafetensors(buf: Buffer, file: string): Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> {
  if (buf.length < 8) throw new AdapterError(`${file} is not a safetensors file (shorter than its header length)`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw new AdapterError(`${file}: header of ${n} bytes does not fit a file of ${buf.length} bytes`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch {
    throw new AdapterError(`${file}: the safetensors header is not JSON`);
  }
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    if (!(a >= 0 && b >= a && 8 + n + b <= buf.length)) throw new AdapterError(`${file}: tensor ${name} lies outside the file`);
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes: buf.subarray(8 + n + a, 8 + n + b) });
  }
  return out;
}

export interface PeftExportOptions {
  /** `base_model_name_or_path` in adapter_config.json. Defaults to the base model's general.name, else its file name. */
  baseModelName?: string;
}

/**
 * Writes `<dir>/adapter_model.safetensors` and `<dir>/adapter_config.json` from a GGUF adapter trained for
 * `modelFile` (needed for the head counts of the llama q/k permutation). Each file is written atomically.
 */
export async function exportPeft(adapterFile: string, modelFile: string, dir: string, o: PeftExportOptions = {}): Promise<{ tensors: number; rank: number; alpha: number; targetModules: string[] }> {
  const meta = await readGgufMetadata(modelFile);
  checkModelMetadata(meta, modelFile);
  const { architecture, alpha, pairs } = await readGgufAdapter(adapterFile);
  const modelArch = String(meta.values.get('general.architecture'));
  if (architecture !== modelArch) throw new AdapterError(`${adapterFile} is an adapter for ${architecture}, but ${modelFile} is ${modelArch}`);
  if (pairs.length === 0) throw new AdapterError(`${adapterFile} holds no LoRA tensors`);
  checkAgainstModel(pairs, meta, adapterFile, modelFile);
  const ranks = new Set(pairs.map((p) => p.rank));
  const rank = Math.max(...ranks);
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  const targets = new Set<string>();
  const rankPattern: Record<string, number> = {};
  for (const p of pairs) {
    const hf = hfModuleName(p.base, architecture);
    targets.add(hf === 'lm_head' ? 'lm_head' : hf.split('.').at(-1)!);
    const heads = permutedHeads(architecture, p.base, meta);
    const b = heads ? permuteRows(p.b, p.nOut, p.rank, heads, true) : p.b;
    tensors.push({ name: `${PREFIX}${hf}.lora_A.weight`, shape: [p.rank, p.nIn], data: p.a });
    tensors.push({ name: `${PREFIX}${hf}.lora_B.weight`, shape: [p.nOut, p.rank], data: b });
    if (p.rank !== rank) rankPattern[hf] = p.rank;
  }
  const targetModules = [...targets].sort();
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: o.baseModelName ?? String(meta.values.get('general.name') ?? path.basename(modelFile, '.gguf')),
    r: rank, lora_alpha: alpha, target_modules: targetModules, lora_dropout: 0, bias: 'none', fan_in_fan_out: false, inference_mode: true,
    init_lora_weights: true, use_rslora: false, use_dora: false, modules_to_save: null, layers_to_transform: null, layers_pattern: null,
    rank_pattern: rankPattern, alpha_pattern: {}, revision: null,
  };
  fs.mkdirSync(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  await writeFileAtomic(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  return { tensors: tensors.length, rank, alpha, targetModules };
}

/** Reads a PEFT folder (F32/F16/BF16 tensors) and writes the GGUF adapter for `modelFile`. */
export async function importPeft(dir: string, modelFile: string, out: string): Promise<{ tensors: number; rank: number; alpha: number }> {
  const meta = await readGgufMetadata(modelFile);
  checkModelMetadata(meta, modelFile);
  const architecture = String(meta.values.get('general.architecture'));
  const cfgFile = path.join(dir, 'adapter_config.json');
  const stFile = path.join(dir, 'adapter_model.safetensors');
  let config: { r?: unknown; lora_alpha?: unknown; peft_type?: unknown; use_rslora?: unknown; use_dora?: unknown; rank_pattern?: unknown; alpha_pattern?: unknown };
  try {
    config = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  } catch (err) {
    throw new AdapterError(`${cfgFile} cannot be read as JSON: ${(err as Error).message}`);
  }
  if (config.peft_type !== 'LORA') throw new AdapterError(`${cfgFile}: peft_type ${JSON.stringify(config.peft_type)} is not LORA`);
  if (config.use_dora) throw new AdapterError(`${cfgFile}: DoRA adapters have no llama.cpp form`);
  const alphaPattern = (config.alpha_pattern ?? {}) as Record<string, number>;
  if (config.use_rslora || Object.keys(alphaPattern).length) throw new InvalidArgumentError(`${cfgFile}: rsLoRA and alpha_pattern need a per-tensor scale that GGUF adapters do not hold`);
  const alpha = v(config.lora_alpha, `${cfgFile}: lora_alpha`);
  const r = v(config.r, `${cfgFile}: r`);
  const tensors = decodeSafetensors(fs.readFileSync(stFile), stFile);
  const pairs: LoraTensorPair[] = [];
  for (const [name, ta] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_A(?:\.default)?\.weight$/.exec(name);
    if (!m) continue;
    const tb = tensors.get(name.replace('.lora_A', '.lora_B'));
    if (!tb) throw new AdapterError(`${stFile}: ${name} has no lora_B`);
    const [rank, nIn] = ta.shape as [number, number];
    const [nOut, rankB] = tb.shape as [number, number];
    if (rankB !== rank) throw new AdapterError(`${stFile}: ${name} has rank ${rank} but its lora_B ${rankB}`);
    // Both PEFT and llama.cpp scale each module by alpha / (its rank), so a rank_pattern carries over as is.
    const rankOf = ((config.rank_pattern ?? {}) as Record<string, number>)[m[1]!] ?? r;
    if (rankOf !== rank) throw new AdapterError(`${stFile}: ${name} has rank ${rank}, but the config says ${rankOf}`);
    const base = ggufWeightName(m[1]!, architecture);
    const dtype = (d: string) => (d === 'F32' || d === 'F16' || d === 'BF16' ? d : (() => { throw new AdapterError(`${stFile}: ${name} has dtype ${d}`); })());
    const a = toF32(ta.bytes, dtype(ta.dtype), rank * nIn, name);
    let b = toF32(tb.bytes, dtype(tb.dtype), nOut * rank, name);
    const heads = permutedHeads(architecture, base, meta);
    if (heads) b = permuteRows(b, nOut, rank, heads, false);
    pairs.push({ base, nIn, nOut, rank, a, b });
  }
  if (pairs.length === 0) throw new AdapterError(`${stFile} holds no LoRA tensors named base_model.model.<module>.lora_A.weight`);
  checkAgainstModel(pairs, meta, dir, modelFile);
  pairs.sort((x, y) => (x.base < y.base ? -1 : 1));
  await writeLoraAdapter(out, { architecture, alpha, tensors: pairs });
  return { tensors: pairs.length * 2, rank: r, alpha };
}

function v(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new AdapterError(`${what} must be a positive number but is ${JSON.stringify(x)}`);
  return x;
}
