// The one boundary to the native addon: finds and loads it (built or prebuilt), loads the ggml backend
// plugins, declares the addon's typed shape, and maps native error codes to typed errors.
// Nothing else imports the raw binding.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPrebuiltLibDir, findVariantLibDir, findVariantRuntimeDir } from '../scripts/llama-paths.mjs';
import { cachedCpuBackend, kernelsPhrase } from '../scripts/cpu-backend.mjs';
import { backendName, defaultGpu, DRIVER_LIBRARY, findDriver, GPU_BACKENDS, type AddonVariant, type GpuOption } from './gpu.js';
import {
  AbortError,
  AdapterError,
  AddonLoadError,
  BackendUnavailableError,
  CheckpointError,
  TrainingDivergedError,
  ContextOverflowError,
  DisposedError,
  InvalidArgumentError,
  NativeError,
  UnsupportedModelError,
  W2sError,
} from './errors.js';

export interface NativeModelInfo {
  description: string;
  nVocab: number;
  nCtxTrain: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nParams: number;
  sizeBytes: number;
  bos: number;
  eos: number;
  addBos: boolean;
}

export interface NativeAdapterRef {
  lora: NativeLora;
  scale: number;
}

export interface NativeSampleRequest {
  prompts: string[];
  n: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  maxTokens: number;
  stops: string[];
  parallel: number;
  contextSize: number;
  kvCells: number;
  batchSize: number;
  threads: number;
  adapters: NativeAdapterRef[];
  parseSpecial: boolean;
  highPrecision: boolean;
  tokenIds?: boolean;
  logprobs?: boolean;
  /** Decode the prompts' common token prefix once (native/core/batch_sampler.cpp); default true. */
  sharePrefix?: boolean;
  /** Flash attention (true, the default) or plain attention (lib/model/attention.ts). */
  flashAttention?: boolean;
}

export interface NativeSample {
  promptIndex: number;
  sampleIndex: number;
  text: string;
  tokens: number;
  finishReason: 'stop' | 'length' | 'eos';
  tokenIds?: number[];
  logprobs?: number[];
}

export interface NativeSampleProgress {
  /** Tokens generated so far. */
  tokens: number;
  /** Prompt tokens decoded so far; a prefix shared by every prompt (`sharePrefix`) counts once. */
  promptTokens: number;
  finished: number;
  total: number;
}

export interface NativeScoreRequest {
  items: { prompt: string; completion: string }[];
  parallel: number;
  batchSize: number;
  threads: number;
  contextSize: number;
  adapters: NativeAdapterRef[];
  parseSpecial: boolean;
}

export interface NativeScore {
  logprobs: Float32Array;
  sum: number;
  tokens: number;
  promptTokens: number;
}

export interface NativeCancelToken {
  cancel(): void;
}

export interface NativeLora {
  metadata(): Record<string, string>;
  dispose(): void;
}

export interface NativeModel {
  info(): NativeModelInfo;
  metadata(): Record<string, string>;
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Int32Array;
  /** The prompt/completion boundary rule (native/core/tokenize.h): joint tokens, context = their common prefix with the prompt's. */
  tokenizePair(prompt: string, completion: string, parseSpecial: boolean): { tokens: Int32Array; nPrompt: number };
  applyChatTemplate(messages: { role: string; content: string }[], addAssistant: boolean, template?: string): string;
  detokenize(tokens: Int32Array, renderSpecial: boolean): string;
  loadLora(path: string): Promise<NativeLora>;
  sample(req: NativeSampleRequest, onProgress?: (p: NativeSampleProgress) => void, cancel?: NativeCancelToken): Promise<NativeSample[]>;
  score(req: NativeScoreRequest, onProgress?: (p: { done: number; total: number }) => void, cancel?: NativeCancelToken): Promise<NativeScore[]>;
  dispose(): void;
}

export interface NativeTrainBatch {
  /** Padded sequence length. */
  T: number;
  /** Sequences. */
  B: number;
  /** (B·T) token ids, sequence-major. */
  tokens: Int32Array;
  /** (B·T) next-token targets, -1 where no loss applies. */
  targets: Int32Array;
}

export interface NativeTrainerOptions {
  rank: number;
  alpha: number;
  dropout: number;
  /** Bit t set = LoRA on target t (q, k, v, o, gate, up, down). */
  targets: number;
  seed: number;
  threads: number;
  initAdapter?: string;
  /**
   * Input gradients through the frozen weights: 'mul_mat' (default; MUL_MAT with a transient F32 transpose,
   * runs on every backend) or 'out_prod' (ggml's autodiff as is: the reference the tests compare against).
   */
  frozenGrad?: 'mul_mat' | 'out_prod';
  /**
   * The output head: 'chunked' (default; rows in chunks, gradient written out, no [n_vocab × rows] logits or
   * labels) or 'dense' (all logits + one-hot cross-entropy through autodiff: the reference; also what a LoRA
   * on the head uses).
   */
  head?: 'chunked' | 'dense';
  /**
   * Activation checkpointing (chunked head only): keep each layer's input and recompute the layer in the
   * backward pass. 'auto' (default) turns it on when the whole graph's activations would pass
   * `checkpointAutoBytes`.
   */
  checkpointing?: 'auto' | 'on' | 'off';
  /** auto checkpointing's budget, bytes. Default: an eighth of the device's memory (CPU: physical RAM), at least 256 MiB. */
  checkpointAutoBytes?: number;
  /** Bytes of logits + probabilities per head chunk (default 256 MiB). */
  headChunkBytes?: number;
  /** Bytes of one transposed chunk of a frozen weight (default 64 MiB). */
  transposeChunkBytes?: number;
  /**
   * GELU and tanh (gemma, gemma2) have no ggml backward pass: the graph differentiates their smooth forms
   * and by default computes the backend's own kernels in the forward pass (llama.cpp's values: GELU's CPU
   * kernel is a table over F16 inputs). true: the smooth forms in the forward pass too, so the loss is
   * exactly the function the gradient belongs to (finite-difference checks). Default false.
   */
  smoothForward?: boolean;
  /**
   * CPU backend: the F32 OUT_PRODs left in the backward graph (attention, LoRA factors) run the addon's
   * register-tiled kernel (native/core/cpu_out_prod.h) instead of ggml's. Default true; false for ggml's.
   */
  cpuOutProd?: boolean;
  /**
   * CPU backend: the training graph's MUL_MATs of F32 activations by an F32, F16 or quantized matrix (the
   * projections, the chunked head, the input gradients through transposed frozen weights) run the addon's
   * packed GEMM (native/core/cpu_gemm.h) instead of ggml's. Default true; false for ggml's.
   */
  cpuGemm?: boolean;
  /** Device filter (lib/gpu.ts nativeGpu): '' the first GPU if any, 'none' the CPU, 'CUDA', 'Vulkan'. */
  gpu?: string;
}

export interface NativeMemoryPlan {
  weights: number;
  lora: number;
  compute: number;
  checkpoints: number;
  checkpointing: boolean;
  device: string;
  deviceFree: number;
  deviceTotal: number;
}

export interface NativeTrainerInfo {
  nParams: number;
  step: number;
  backend: string;
  arch: string;
  nVocab: number;
  nLayer: number;
  nEmbd: number;
  nCtxTrain: number;
}

export interface NativeTrainer {
  info(): NativeTrainerInfo;
  accumulate(batch: NativeTrainBatch & { lossScale: number }): Promise<{ lossSum: number; nTargets: number }>;
  step(p: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number }): Promise<{ gradNorm: number; step: number }>;
  logprobs(batch: NativeTrainBatch & { useLora: boolean }): Promise<Float64Array>;
  /**
   * Preference loss over 2P sequences (2i chosen, 2i+1 rejected of pair i): adds d(lossScale · Σ pair loss)/dθ
   * to the accumulators. DPO needs `refLogps` (per-sequence reference log-probs). Returns Σ pair loss and
   * the policy's Σ log p per sequence.
   */
  accumulatePairs(batch: NativeTrainBatch & { kind: 'dpo' | 'orpo'; beta: number; lambda: number; refLogps?: Float64Array; lossScale: number }): Promise<{ lossSum: number; logps: Float64Array }>;
  /** Forward only: Σ log p(target) per sequence through the pair graph's per-sequence path. */
  sequenceLogprobs(batch: NativeTrainBatch & { useLora: boolean }): Promise<Float64Array>;
  saveAdapter(path: string): Promise<void>;
  saveCheckpoint(path: string, state: string): Promise<void>;
  loadCheckpoint(path: string): Promise<string>;
  getParams(): Float32Array;
  setParams(values: Float32Array): void;
  getGrads(): Float32Array;
  clearGrads(): void;
  /**
   * The ops ("OP src0-type src1-type" → count) of the last forward + backward graph, its largest transient
   * weight transpose, and the scheduler's compute buffer (activations, gradients, head chunks) in bytes.
   */
  graphOps(): { ops: Record<string, number>; transientBytes: number; computeBytes: number };
  /**
   * The memory one micro-batch of B sequences × T tokens needs (pairs: DPO/ORPO's graph, B even), measured by
   * reserving its graphs' buffers without running them. Bytes; device memory as ggml reports it.
   */
  plan(shape: { T: number; B: number; pairs: boolean }): Promise<NativeMemoryPlan>;
  dispose(): void;
}

export interface NativeDefaults {
  sample: { temperature: number; topP: number; topK: number; n: number; maxTokens: number; parallel: number; batchSize: number };
}

export interface NativeAddon {
  /** cpuBackend: a libggml-cpu.so built for this machine (scripts/cpu-backend.mjs), registered before libDir's variants. */
  init(libDir: string, fallbackDirs?: string[], cpuBackend?: string): NativeInitInfo;
  /** gpu: the device filter of lib/gpu.ts nativeGpu ('' all GPUs, 'none' the CPU, 'CUDA', 'Vulkan'). */
  loadModel(path: string, options: { gpuLayers: number; repack: boolean; vocabOnly: boolean; gpu?: string }): Promise<NativeModel>;
  defaults(): NativeDefaults;
  /** Per ggml device: the frozen-base types the training engine's ops run on (its own op check). */
  trainingSupport(): Array<{ device: string; description: string; types: string[] }>;
  /** ggml's quantizer for one type by ggml name ('q4_K', 'q6_K', …): rows of nPerRow values. */
  quantizeRows(type: string, values: Float32Array, nPerRow: number): Uint8Array;
  createTrainer(modelPath: string, options: NativeTrainerOptions): Promise<NativeTrainer>;
  /** llama.cpp's own full fine-tune (llama_opt_epoch) timed over `steps` AdamW steps: the peer of `w2s bench train`. */
  benchLlamaOpt(modelPath: string, options: { tokens: Int32Array; nCtx: number; nBatch?: number; nUbatch?: number; steps: number; threads: number; lr: number; budgetAdapter?: string }): Promise<{ seconds: number; tokens: number; steps: number; loss: number; stepSeconds: Float64Array }>;
  CancelToken: new () => NativeCancelToken;
}

export interface NativeDevice {
  name: string;
  description: string;
  /** ggml backend registry name: 'CPU', 'CUDA', 'Vulkan', 'Metal', … */
  backend: string;
  type: 'cpu' | 'gpu' | 'igpu' | 'accel';
  memoryFree: number;
  memoryTotal: number;
}

interface NativeInitInfo {
  /** Which CPU backend registered: built here ('host'), libDir's best variant, or one registered before init. */
  cpuSource: 'host' | 'prebuilt' | 'already-registered';
  devices: string;
  systemInfo: string;
  /** What ggml logged while loading the backend plugins (why a GPU plugin was skipped). */
  loadLog: string;
  deviceList: NativeDevice[];
}

export interface AddonLocation extends NativeInitInfo {
  addonPath: string;
  libDir: string;
  /** The addon variant this process loaded (one per process). */
  variant: AddonVariant;
  /** Why this variant: the gpu option and what was found (drivers, installed variants). */
  reason: string;
  /** The CPU backend in use and why (scripts/cpu-backend.mjs builds one for this machine). */
  cpuBackend: {
    source: NativeInitInfo['cpuSource']; path?: string; note: string;
    /** Our own kernels compiled into the backend built here (scripts/cpu-backend.mjs KERNELS), e.g. 'flash_attn_decode'. */
    kernels?: string[];
  };
}

/**
 * The CPU backend built for this machine to offer init(), per W2S_CPU_BACKEND: unset or 'auto' (the build
 * when there is one for libDir's libraries and this CPU), 'prebuilt' (never), 'host' (required).
 */
function ownCpuBackend(libDir: string): { path?: string; note: string; required: boolean; kernels?: string[] } {
  const mode = process.env.W2S_CPU_BACKEND || 'auto';
  if (mode !== 'auto' && mode !== 'host' && mode !== 'prebuilt') throw InvalidArgumentError.expected("'auto', 'host' or 'prebuilt'", 'W2S_CPU_BACKEND', mode);
  if (mode === 'prebuilt') return { note: 'W2S_CPU_BACKEND=prebuilt', required: false };
  const c = cachedCpuBackend(libDir);
  if (c.lib === undefined && mode === 'host') {
    throw new BackendUnavailableError(`W2S_CPU_BACKEND=host, but there is no CPU backend built for this machine: ${c.why}`);
  }
  if (c.lib === undefined) return { note: c.why, required: false };
  const kernels = c.stamp.kernels ?? [];
  return { path: c.lib, note: `built for this CPU in ${c.stamp.seconds.toFixed(0)} s on ${c.stamp.builtAt}${kernels.length ? `, ${kernelsPhrase(kernels)}` : ''}`, required: mode === 'host', kernels };
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The package root: the nearest folder above this file whose package.json names weak2strong. */
export function packageRoot(): string {
  let dir = here;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'weak2strong') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new AddonLoadError(`weak2strong: no package.json above ${here}`);
    dir = parent;
  }
}

let loaded: { addon: NativeAddon; location: AddonLocation } | undefined;

const suffix = (v: AddonVariant) => (v === 'cpu' ? '' : `-${v}`);

function candidates(root: string, variant: AddonVariant): string[] {
  // An explicit W2S_ADDON_PATH is the only candidate: silently falling back to another build would
  // measure or test the wrong binary.
  if (process.env.W2S_ADDON_PATH) return [path.resolve(process.env.W2S_ADDON_PATH)];
  // A local build wins over the shipped prebuild (same order as node-gyp-build).
  return [
    path.join(root, 'build', 'Release', `weak2strong${suffix(variant)}.node`),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `weak2strong${suffix(variant)}.napi.node`),
  ];
}

/** Where the backend plugins (libggml-cpu-*.so, libggml-cuda.so, …) of `variant`'s build next to `addonPath` live. */
function backendDir(addonPath: string, root: string, variant: AddonVariant, tried: string[]): string | undefined {
  const manifest = path.join(path.dirname(addonPath), 'weak2strong.build.json');
  if (fs.existsSync(manifest)) {
    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { libDir: string | null };
    if (m.libDir) return path.resolve(path.dirname(addonPath), m.libDir);
  }
  return variant === 'cpu' ? findPrebuiltLibDir(root, tried) : findVariantLibDir(variant, root, tried);
}

/** Folders with other builds of the variant's GPU plugin (CUDA: node-llama-cpp's CUDA 12 build in cuda-ext). */
function fallbackDirs(root: string, variant: AddonVariant): string[] {
  const dir = variant === 'cpu' ? undefined : findVariantRuntimeDir(variant, root);
  return dir ? [dir] : [];
}

/** The variant's addon file exists and (for a GPU variant) so does its node-llama-cpp flavor's library folder. */
function variantInstalled(root: string, v: AddonVariant): boolean {
  if (!candidates(root, v).some((f) => fs.existsSync(f))) return false;
  return v === 'cpu' || process.env.W2S_ADDON_PATH !== undefined || findVariantLibDir(v, root) !== undefined;
}

/**
 * The variant a process loads for its first gpu option: W2S_VARIANT (a build, whatever the devices: tests run
 * the GPU builds' CPU devices with it); false: the CPU build; a backend: its build; 'auto': the first GPU build
 * installed whose driver library the system has, else the CPU build.
 */
function chooseVariant(root: string, gpu: GpuOption): { variant: AddonVariant; reason: string } {
  // A worker_thread takes the variant its process already loaded (same pid; a child process chooses anew).
  const inProcess = /^(\d+):(cpu|cuda|vulkan)$/.exec(process.env.W2S_PROCESS_VARIANT ?? '');
  if (inProcess && Number(inProcess[1]) === process.pid) return { variant: inProcess[2] as AddonVariant, reason: 'the variant this process loaded first' };
  const forced = process.env.W2S_VARIANT;
  if (forced) {
    if (forced !== 'cpu' && forced !== 'cuda' && forced !== 'vulkan') throw InvalidArgumentError.expected("'cpu', 'cuda' or 'vulkan'", 'W2S_VARIANT', forced);
    return { variant: forced, reason: `W2S_VARIANT=${forced}` };
  }
  if (gpu === false) return { variant: 'cpu', reason: 'gpu: false' };
  if (gpu !== 'auto') {
    if (!variantInstalled(root, gpu)) {
      throw new BackendUnavailableError(`gpu: '${gpu}' needs the ${gpu} addon variant, which is not installed (looked at ${candidates(root, gpu).join(', ')}); ` +
        `it is built at install when node-llama-cpp's @node-llama-cpp/${process.platform}-${process.arch}-${gpu} package is present`);
    }
    return { variant: gpu, reason: `gpu: '${gpu}'` };
  }
  const why: string[] = [];
  for (const v of GPU_BACKENDS) {
    if (!variantInstalled(root, v)) {
      why.push(`${v}: variant not installed`);
      continue;
    }
    const driver = findDriver(DRIVER_LIBRARY[v]);
    if (!driver) {
      why.push(`${v}: no ${DRIVER_LIBRARY[v]} (driver not installed)`);
      continue;
    }
    // libggml-cuda.so also needs the CUDA runtime's cuBLAS (13, or 12 for node-llama-cpp's fallback build).
    if (v === 'cuda' && !findDriver('libcublas.so.13') && !findDriver('libcublas.so.12')) {
      why.push('cuda: the driver is there but no CUDA 12/13 runtime (libcublas.so.13 or .12)');
      continue;
    }
    return { variant: v, reason: `gpu: 'auto', ${v}: ${driver}` };
  }
  return { variant: 'cpu', reason: `gpu: 'auto' fell back to the CPU (${why.join('; ')})` };
}

/** Loads the addon once per thread (each worker_thread gets its own instance) and returns it. */
export function addon(): NativeAddon {
  return load(defaultGpu()).addon;
}

/**
 * The addon for a job with this gpu option, and the native device filter to pass it. The first load of the
 * process picks the variant (chooseVariant); later ones must fit it. An explicit backend with no device of it
 * is a BackendUnavailableError naming what is missing (the driver, from the plugin's load log).
 */
export function addonFor(gpu: GpuOption): { addon: NativeAddon; device: string; location: AddonLocation } {
  const l = load(gpu);
  const loc = l.location;
  if (gpu === false) return { addon: l.addon, device: 'none', location: loc };
  if (gpu === 'auto') return { addon: l.addon, device: '', location: loc };
  const name = backendName(gpu);
  if (!loc.deviceList.some((d) => d.backend === name)) {
    const variantNote = loc.variant === gpu ? `the ${gpu} variant (${loc.addonPath}) registered no ${name} device`
      : `this process runs the ${loc.variant} addon variant (${loc.reason}); a process holds one variant: start it with W2S_GPU=${gpu}`;
    const driver = findDriver(DRIVER_LIBRARY[gpu]);
    const log = loc.loadLog.trim().split('\n').filter((x) => /cuda|vulkan|cannot open|failed/i.test(x)).join('; ');
    throw new BackendUnavailableError(`gpu: '${gpu}' is unavailable: ${variantNote}; ` +
      `${driver ? `${DRIVER_LIBRARY[gpu]} is at ${driver}` : `the driver library ${DRIVER_LIBRARY[gpu]} is not installed`}` +
      `${log ? `; ggml: ${log}` : ''}; devices: ${loc.devices}. Use gpu: 'auto' or false to run on the CPU`);
  }
  return { addon: l.addon, device: name, location: loc };
}

/** Which addon file and backend folder are in use (for diagnostics and `w2s --version`). */
export function addonLocation(): AddonLocation {
  return load(defaultGpu()).location;
}

const loadListeners: ((l: AddonLocation) => void)[] = [];
/** Calls `fn` once when this thread loads the addon (the CLI prints the device line with it). */
export function onAddonLoaded(fn: (l: AddonLocation) => void): void {
  if (loaded) fn(loaded.location);
  else loadListeners.push(fn);
}

/** The CPU backend this process registered ('host', 'prebuilt', 'already-registered'), or undefined before the load. */
export function loadedCpuSource(): NativeInitInfo['cpuSource'] | undefined {
  return loaded?.location.cpuBackend.source;
}

/** The variant loaded so far in this process, if any (no load). */
export function loadedVariant(): AddonVariant | undefined {
  return loaded?.location.variant;
}

/** The GPU variants whose addon file exists for this package (no load). */
export function installedVariants(): AddonVariant[] {
  const root = packageRoot();
  return (['cpu', ...GPU_BACKENDS] as AddonVariant[]).filter((v) => variantInstalled(root, v));
}

function load(gpu: GpuOption): { addon: NativeAddon; location: AddonLocation } {
  if (loaded) return loaded;
  const root = packageRoot();
  const choice = chooseVariant(root, gpu);
  try {
    return loadVariant(root, choice.variant, choice.reason);
  } catch (err) {
    // 'auto' never fails for want of a GPU build: the CPU build, with the reason.
    if (gpu !== 'auto' || choice.variant === 'cpu' || process.env.W2S_VARIANT || process.env.W2S_ADDON_PATH) throw err;
    return loadVariant(root, 'cpu', `gpu: 'auto' fell back to the CPU: the ${choice.variant} variant did not load (${(err as Error).message.split('\n').slice(1, 3).join(' ').trim()})`);
  }
}

function loadVariant(root: string, variant: AddonVariant, reason: string): { addon: NativeAddon; location: AddonLocation } {
  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  for (const file of candidates(root, variant)) {
    if (!fs.existsSync(file)) {
      attempts.push(`${file}: not found`);
      continue;
    }
    let mod: NativeAddon;
    try {
      mod = require(file) as NativeAddon;
    } catch (err) {
      attempts.push(`${file}: ${(err as Error).message.split('\n')[0]}`);
      continue;
    }
    const tried: string[] = [];
    const libDir = backendDir(file, root, variant, tried);
    if (!libDir) {
      attempts.push(`${file}: loaded, but no folder with the ggml backend plugins was found (looked at ${tried.join(', ')})`);
      continue;
    }
    const own = ownCpuBackend(libDir); // a bad W2S_CPU_BACKEND or a missing required build: its own typed error
    let info: NativeInitInfo;
    try {
      info = mod.init(libDir, fallbackDirs(root, variant), own.path);
    } catch (err) {
      attempts.push(`${file}: ${(err as Error).message}`);
      continue;
    }
    const note = info.cpuSource === 'host' ? own.note
      : info.cpuSource === 'already-registered' ? 'a CPU backend was registered before this addon initialised (linked in, or another addon such as node-llama-cpp)'
      : own.path ? `the build for this CPU did not load (see loadLog); libDir's best variant` : `libDir's best variant (${own.note})`;
    if (own.required && info.cpuSource !== 'host') {
      throw new BackendUnavailableError(`W2S_CPU_BACKEND=host, but ${own.path} did not register: ${note}${info.loadLog ? `: ${info.loadLog.trim()}` : ''}`);
    }
    const cpuBackend = { source: info.cpuSource, ...(info.cpuSource === 'host' ? { path: own.path, kernels: own.kernels } : {}), note };
    loaded = { addon: mod, location: { addonPath: file, libDir, variant, reason, ...info, cpuBackend } };
    process.env.W2S_PROCESS_VARIANT = `${process.pid}:${variant}`;  // for this process's later worker_threads
    for (const fn of loadListeners.splice(0)) fn(loaded.location);
    if (process.env.W2S_DEBUG) process.stderr.write(`weak2strong: ${variant} variant (${reason}); devices ${info.devices}${info.loadLog ? `; ${info.loadLog.trim()}` : ''}\n`);
    return loaded;
  }
  throw new AddonLoadError(
    `The weak2strong native addon (${variant} variant: ${reason}) could not be loaded. Tried:\n  ${attempts.join('\n  ')}\n` +
      'Reinstall the package (its prebuilt addon needs node-llama-cpp and its optional @node-llama-cpp/' +
      `${process.platform}-${process.arch} package), or build it: npm run build:native`,
  );
}

/** Turns an error thrown by the addon into the matching typed error; anything else passes through. */
export function mapNativeError(err: unknown, context?: string): unknown {
  if (err instanceof W2sError || !(err instanceof Error)) return err;
  const code = (err as Error & { code?: string }).code;
  const message = context ? `${context}: ${err.message}` : err.message;
  switch (code) {
    case 'ABORT_ERR':
      return new AbortError(undefined, { cause: err });
    case 'ERR_W2S_CONTEXT_OVERFLOW':
      return new ContextOverflowError(message, { cause: err });
    case 'ERR_W2S_ADAPTER':
      return new AdapterError(message, { cause: err });
    case 'ERR_W2S_BACKEND_UNAVAILABLE':
      return new BackendUnavailableError(message, { cause: err });
    case 'ERR_W2S_UNSUPPORTED_MODEL':
      return new UnsupportedModelError(message, { cause: err });
    case 'ERR_W2S_DISPOSED':
      return new DisposedError(context ?? 'object');
    case 'ERR_W2S_INVALID_ARGUMENT':
      return new InvalidArgumentError(message, { cause: err });
    case 'ERR_W2S_TRAIN_SETUP':
      if (/unsupported architecture|cannot be trained|rope scaling/i.test(err.message)) return new UnsupportedModelError(message, { cause: err });
      if (/adapter|lora/i.test(err.message)) return new AdapterError(message, { cause: err });
      return new NativeError(message, { cause: err });
    case 'ERR_W2S_TRAIN_NONFINITE':
      return new TrainingDivergedError(message, { cause: err });
    case 'ERR_W2S_CHECKPOINT':
      return new CheckpointError(message, { cause: err });
    case 'ERR_W2S_LLAMA':
      if (/unknown model architecture/i.test(err.message)) return new UnsupportedModelError(message, { cause: err });
      return new NativeError(message, { cause: err });
    default:
      return err;
  }
}

/** Creates a native cancel token wired to `signal` (if any); call the returned `done` when the job ends. */
export function cancelTokenFor(signal: AbortSignal | undefined): { token: NativeCancelToken | undefined; done: () => void } {
  if (!signal) return { token: undefined, done: () => {} };
  const token = new (addon().CancelToken)();
  const onAbort = () => token.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  return { token, done: () => signal.removeEventListener('abort', onAbort) };
}
