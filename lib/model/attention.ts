// Which attention kernel the sampler's llama.cpp context uses: flash attention (FLASH_ATTN_EXT) or plain
// attention (KQ = K·Q matmul, masked softmax, V·KQ matmul). Both read the same F16 KV cache.
//
// Why there is a choice: on the CPU, decode has one query per sequence, so ggml's flash attention takes its
// per-cell path (ggml-cpu/ops.cpp, one_chunk: the tiled path needs >= 64 queries per stream). Per KV cell it
// calls ggml_vec_dot_f16 and ggml_vec_mad_f16 over the head, and those functions vectorize only whole blocks
// of GGML_F16_STEP elements (ggml-cpu/simd-mappings.h: 32 with AVX/AVX2, 64 with AVX-512, 16 or 32 with
// NEON, 8 · SVE lanes); the rest of a head runs one element at a time, with a scalar F16 ↔ F32
// conversion each. Plain attention does the same work as matrix products (llamafile's sgemm), which are
// vectorized at any head size, and pays instead for the padding of the window (a multiple of 256 cells).
// Measured on a 2-vCPU AMD EPYC with AVX-512 (step 64), 2026-12-03, one thread, created llama models (q8_0,
// 32k vocabulary), interleaved runs of flash / plain, tokens/s end to end:
//   head 32 (no whole step):  few-shot (32 × ~390-token prompts, 128 new) 101 / 281; 16 × 4 × 64 new 492, 406 / 502, 486
//   head 96 (a 32-wide tail): few-shot 211, 255 / 476, 484; zero-shot 256 new 379 / 532; 16 × 4 × 64 new 856, 837 / 763, 788
//   head 64 (one step):       few-shot 434, 451 / 452, 527; 16 × 4 × 64 new 872, 988 / 704, 705
//   head 128 (two steps):     few-shot 624, 638 / 538, 483
// So: a head with no whole step runs plain; a head with a tail runs plain when the windows fill most of their
// padding (`windowFill` >= 0.5: the 16 × 4 × 64 shape fills 0.31, few-shot 0.87); whole steps keep flash
// attention (on an AVX2 host at head 32, one step, 2026-12-02: plain was 8–16% faster on few-shot prompts
// and 10–22% slower on the 16 × 4 × 64 shape).
// Those figures are node-llama-cpp's prebuilt `zen4` variant, whose element-by-element tail converts F16 in
// software. The CPU backend built on the machine (scripts/cpu-backend.mjs, same -m flags, GCC 12) runs that
// tail about 2× faster, so there a head below the step follows the tail's rule too. Same host and models,
// 1 thread, two rounds, 2026-12-03 10:45–11:05, flash / plain:
//   head 32, built here:  few-shot 237, 217 / 346, 354; 16 × 4 × 64 new 993, 813 / 612, 586
//   head 32, prebuilt:    few-shot 109, 115 / 326, 332; 16 × 4 × 64 new 521, 578 / 568, 738
//   head 96, built here:  few-shot 386, 325 / 444, 465; 16 × 4 × 64 new 875, 962 / 707, 692
//   head 96, prebuilt:    few-shot 205, 195 / 414, 422; 16 × 4 × 64 new 646, 686 / 647, 687
//   heads 64 and 128 (whole steps): the two builds within run-to-run noise, flash ahead on 16 × 4 × 64
//   (829–977 / 622–829) and level on few-shot (431–566 / 438–500).
// The crossover moves up on the build too: at head 32, 2 threads, zero-shot 16 × 10 × 256 new (windows fill
// 0.65) ran flash 723, 731 / plain 648, 671, and few-shot 64 × 256 new (0.80) plain. So the tail's threshold
// is a fill of 0.75 there, 0.5 on the prebuilt variants.
//
// Since 2026-12-03 (afternoon) the CPU backend built on the machine also carries weak2strong's own kernel for
// this path (native/ggml-cpu/flash_attn_decode.inc: blocks of 128 cells, vectorized exp, F32 accumulator, the
// heads of a grouped KV head together, 8-float vectors at any head size; compiled with AVX2 + F16C + FMA). On a
// 2-vCPU AMD EPYC with AVX2 only, 1 thread, flash / plain, generation phase tokens/s:
//   head 32:  few-shot (32 × ~390-token prompts, 128 new) 354, 356 / 279 (ggml's kernel on the prebuilt: 252);
//             16 × 4 × 64 new 463 / 349
//   head 64:  16 × 4 × 64 new 507 / 396
//   head 128: few-shot 307 / 255
//   (after the review, the mask read once per group: head 32 few-shot 412, 418 / 268)
// so there 'auto' is flash attention at every head size and window.
import type { ModelInfo } from '../model.js';
import { InvalidArgumentError } from '../errors.js';

/** 'auto' (default): the rule above; 'flash' / 'plain': that kernel. */
export type AttentionOption = 'auto' | 'flash' | 'plain';

export interface AttentionChoice {
  mode: 'flash' | 'plain';
  /** Why, in words (printed by `w2s bench sample`). */
  reason: string;
}

const FEATURE = (info: string, name: string): string | undefined => new RegExp(`(?:^|[|:]\\s*)${name} = (\\w+)`).exec(info)?.[1];

/**
 * F16 elements per vectorized block of ggml's CPU vec_dot_f16 / vec_mad_f16 for the loaded CPU backend, from
 * llama_print_system_info() (the features the backend variant was compiled with), or undefined when its
 * architecture is not one whose step we know (the rule then keeps flash attention).
 */
export function cpuF16Step(systemInfo: string): number | undefined {
  const on = (name: string) => FEATURE(systemInfo, name) === '1';
  if (on('AVX512')) return 64; // no x64 variant of node-llama-cpp is built with AVX512-FP16 (step 128)
  if (on('AVX') || on('AVX2')) return 32;
  const sveBytes = Number(FEATURE(systemInfo, 'SVE_CNT'));
  if (on('SVE') && sveBytes > 0) return 4 * sveBytes; // 8 registers of sveBytes / 2 halves
  if (on('NEON')) return on('FP16_VA') ? 32 : 16;
  return undefined;
}

/**
 * Whether flash attention on this CPU backend runs weak2strong's kernel: the backend built here
 * (`cpuBackend` 'host') with 'flash_attn_decode' among its kernels, and the AVX2, F16C and FMA it is compiled
 * with among its features (without them ggml's own code is compiled in its place).
 */
export function runsOwnFlashKernel(where: { systemInfo: string | undefined; cpuBackend?: string; cpuKernels?: readonly string[] }): boolean {
  const info = where.systemInfo;
  return where.cpuBackend === 'host' && (where.cpuKernels ?? []).includes('flash_attn_decode') && info !== undefined &&
    ['AVX2', 'F16C', 'FMA'].every((f) => FEATURE(info, f) === '1');
}

export function parseAttentionOption(value: unknown): AttentionOption {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'flash' || value === 'plain') return value;
  throw InvalidArgumentError.expected("'auto', 'flash' or 'plain'", 'attention', value);
}

/** KV cells llama.cpp pads a decode's attention window to (llama_kv_cache::get_n_kv). */
const KV_PAD = 256;

/**
 * How much of its padded window a sequence's attention reads, averaged over its decode: positions
 * promptTokens … promptTokens + maxTokens − 1, each window padded up to a multiple of 256 cells. In (0, 1].
 */
export function windowFill(promptTokens: number, maxTokens: number): number {
  let actual = 0;
  let padded = 0;
  const stride = Math.max(1, Math.floor(maxTokens / 64)); // 64 points are plenty for a mean
  for (let t = 0; t < maxTokens; t += stride) {
    const len = promptTokens + t + 1;
    actual += len;
    padded += Math.ceil(len / KV_PAD) * KV_PAD;
  }
  return padded > 0 ? actual / padded : 1;
}

export interface AttentionJob {
  /** Tokens of the longest prompt. */
  promptTokens: number;
  maxTokens: number;
  highPrecision?: boolean;
}

/**
 * The kernel for a sampling job (see the measurements above). Off the CPU (any layer offloaded) 'auto' keeps
 * flash attention: the GPU backends have no such per-element tail. `highPrecision` always runs plain attention.
 * `where.cpuBackend`: the loaded CPU backend's source (AddonLocation.cpuBackend.source; 'host' = built here).
 */
export function chooseAttention(option: AttentionOption, info: Pick<ModelInfo, 'headDimK' | 'headDimV'>,
  where: { gpuLayers: number; systemInfo: string | undefined; cpuBackend?: string; cpuKernels?: readonly string[] }, job: AttentionJob): AttentionChoice {
  if (job.highPrecision) return { mode: 'plain', reason: 'highPrecision (F32 KV cache)' };
  if (option !== 'auto') return { mode: option, reason: 'asked for' };
  if (where.gpuLayers > 0) return { mode: 'flash', reason: 'auto: layers on the GPU' };
  if (runsOwnFlashKernel(where)) {
    return { mode: 'flash', reason: "auto: the CPU backend built here runs weak2strong's flash-attention kernel (vectorized at any head size)" };
  }
  const step = where.systemInfo === undefined ? undefined : cpuF16Step(where.systemInfo);
  if (step === undefined) return { mode: 'flash', reason: 'auto: no known F16 vector width for this CPU backend' };
  const heads = `head size ${info.headDimK}${info.headDimV !== info.headDimK ? ` / ${info.headDimV}` : ''}`;
  const dims = [info.headDimK, info.headDimV];
  if (dims.every((d) => d % step === 0)) return { mode: 'flash', reason: `auto: ${heads} is whole ${step}-wide F16 steps of this CPU` };
  const below = dims.some((d) => d < step);
  if (below && where.cpuBackend !== 'host') {
    return { mode: 'plain', reason: `auto: ${heads} is below this CPU's ${step}-wide F16 step (the prebuilt CPU backend's flash attention would run it element by element)` };
  }
  const what = below ? `is below this CPU's ${step}-wide F16 step` : `leaves a tail of this CPU's ${step}-wide F16 step`;
  const fill = windowFill(job.promptTokens, job.maxTokens);
  return fill >= (where.cpuBackend === 'host' ? 0.75 : 0.5)
    ? { mode: 'plain', reason: `auto: ${heads} ${what}, and the windows fill ${fill.toFixed(2)} of their padding` }
    : { mode: 'flash', reason: `auto: ${heads} ${what}, but the windows fill only ${fill.toFixed(2)} of their padding` };
}
