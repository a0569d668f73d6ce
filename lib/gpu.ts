// GPU selection: which addon variant a process loads (one per process: the variants link differently named
// llama.cpp libraries but share libggml-base.so, and ggml's backend registry is per library) and which
// devices a model or trainer uses. The variants are node-llama-cpp's prebuilt flavors (scripts/llama-paths.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from './errors.js';

/** `'auto'` (default): CUDA, then Vulkan, then the CPU; a backend by name; `false`: the CPU only. */
export type GpuOption = 'auto' | 'cuda' | 'vulkan' | false;
export type AddonVariant = 'cpu' | 'cuda' | 'vulkan';
export const GPU_BACKENDS = ['cuda', 'vulkan'] as const;

/** Checks a `gpu` option; the CLI's strings ('false', 'none', 'cpu') mean false. */
export function parseGpu(value: unknown, name = 'gpu'): GpuOption {
  if (value === undefined || value === 'auto') return 'auto';
  if (value === false || value === 'false' || value === 'none' || value === 'cpu') return false;
  if (value === 'cuda' || value === 'vulkan') return value;
  throw InvalidArgumentError.expected("'auto', 'cuda', 'vulkan' or false", name, value);
}

/** The native device filter (native/core/backend.h pick_gpus). */
export function nativeGpu(g: GpuOption): string {
  return g === false ? 'none' : g === 'auto' ? '' : g === 'cuda' ? 'CUDA' : 'Vulkan';
}

/** The ggml backend registry name of a GPU option's devices. */
export function backendName(g: 'cuda' | 'vulkan'): string {
  return g === 'cuda' ? 'CUDA' : 'Vulkan';
}

/** The driver library each GPU variant's plugin needs (libggml-cuda.so / libggml-vulkan.so link them). */
export const DRIVER_LIBRARY: Record<'cuda' | 'vulkan', string> = { cuda: 'libcuda.so.1', vulkan: 'libvulkan.so.1' };

/**
 * Where the dynamic linker would find `lib` without loading it: LD_LIBRARY_PATH's folders, the linker cache
 * (/etc/ld.so.cache names every library in the system folders) and the usual folders. Undefined when absent:
 * then the plugin cannot load and choosing that variant would only run on its CPU devices.
 */
export function findDriver(lib: string): string | undefined {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/cuda/lib64', '/usr/lib/wsl/lib'];
  for (const d of dirs) {
    const p = path.join(d, lib);
    if (fs.existsSync(p)) return p;
  }
  try {
    if (fs.readFileSync('/etc/ld.so.cache').includes(Buffer.from(lib + '\0'))) return `${lib} (in /etc/ld.so.cache)`;
  } catch {
    // no cache (e.g. musl): only the folders above count
  }
  return undefined;
}

/** The first GPU option of the process (W2S_GPU, else 'auto'), for loads that name none. */
export function defaultGpu(): GpuOption {
  return parseGpu(process.env.W2S_GPU === undefined || process.env.W2S_GPU === '' ? undefined : process.env.W2S_GPU, 'W2S_GPU');
}

/** What a GGUF's layers need on a device, from its tensor table (bytes as stored). */
export interface LayerBytes {
  /** blk.N.* tensors, per layer. */
  perLayer: number[];
  /** Everything else (embeddings, output head, final norm). */
  other: number;
}

export function layerBytes(tensors: readonly { name: string; bytes: number }[], nLayer: number): LayerBytes {
  const perLayer = Array.from({ length: nLayer }, () => 0);
  let other = 0;
  for (const t of tensors) {
    const m = /^blk\.(\d+)\./.exec(t.name);
    const l = m ? Number(m[1]) : -1;
    if (l >= 0 && l < nLayer) perLayer[l]! += t.bytes;
    else other += t.bytes;
  }
  return { perLayer, other };
}

/**
 * Layers to offload so that the weights fit `freeBytes` of GPU memory with `reserveBytes` kept for the KV
 * cache, compute buffers and other processes: llama.cpp offloads the last n layers, then (all layers in) the
 * output head, so all layers + head when everything fits (999: llama.cpp's "all"), else the most layers that
 * fit beside the head's share. 0 when not even one layer fits.
 */
export function fitGpuLayers(bytes: LayerBytes, freeBytes: number, reserveBytes: number): number {
  const budget = freeBytes - reserveBytes;
  const layers = bytes.perLayer.reduce((a, b) => a + b, 0);
  if (layers + bytes.other <= budget) return 999;
  let used = 0;
  let n = 0;
  // From the last layer down, as llama.cpp assigns them (the output head stays on the CPU until all layers are in).
  for (let l = bytes.perLayer.length - 1; l >= 0; l--) {
    if (used + bytes.perLayer[l]! > budget) break;
    used += bytes.perLayer[l]!;
    n += 1;
  }
  return n;
}
