// The public model API: load a GGUF, read its metadata, tokenize, load LoRA adapters, and run the two
// native jobs (batched sampling, sequence scoring). Validation happens here; the loops run in C++.
import fs from 'node:fs';
import { AbortError, DisposedError, FileNotFoundError, InvalidArgumentError } from './errors.js';
import { readGgufMetadata, type GgufMetadata } from './gguf/reader.js';
import { computeQueue } from './job-queue.js';
import { checkGgufMetadata, type GgufPurpose } from './model/check.js';
import { chooseAttention, parseAttentionOption, type AttentionChoice, type AttentionJob, type AttentionOption } from './model/attention.js';
import { maxTokenBytes } from './model/token-bound.js';
import { addon, addonFor, addonLocation, cancelTokenFor, mapNativeError, type NativeCancelToken, type NativeLora, type NativeModel, type NativeModelInfo } from './native.js';
import { normalizeSampleOptions, type Sample, type SampleOptions } from './sample-options.js';
import { calibratedThreads, calibrationEnabled, type ThreadCalibration } from './thread-calibration.js';
import { normalizeScoreOptions, type ScoreItem, type ScoreOptions, type ScoreResult } from './score-options.js';
import * as v from './validate.js';
import { defaultGpu, fitGpuLayers, layerBytes, parseGpu, type GpuOption } from './gpu.js';

export interface LoadModelOptions {
  /**
   * Which GPU backend to offload to: 'auto' (default, or the W2S_GPU environment variable): CUDA, then Vulkan,
   * then the CPU; 'cuda' / 'vulkan': that backend or a BackendUnavailableError naming what is missing; false:
   * the CPU only. The first model or trainer of a process picks its addon variant (lib/gpu.ts).
   */
  gpu?: GpuOption;
  /**
   * Layers to offload to the GPU. Default (-1): all that fit the chosen GPUs' free memory (keeping 1 GiB +
   * 10% for the KV cache and compute buffers); ignored without a GPU device.
   */
  gpuLayers?: number;
  /** Let the CPU backend repack quantized weights for faster inference. Defaults to true. */
  repack?: boolean;
  /** Load only the vocabulary (tokenize/detokenize, no weights). Defaults to false. */
  vocabOnly?: boolean;
  signal?: AbortSignal;
}

/** One turn of a conversation: role 'system', 'user' or 'assistant'. */
export interface ChatMessage {
  role: string;
  content: string;
}

export interface ModelInfo extends NativeModelInfo {
  path: string;
  architecture: string;
  /** Key/value heads (GQA); equals nHead without GQA. */
  nHeadKv: number;
  /** Elements per key head and per value head (`attention.key_length` / `value_length`, else nEmbd / nHead). */
  headDimK: number;
  headDimV: number;
}

/**
 * Checks that `file` exists, is a complete GGUF and passes the metadata gate for `purpose` (lib/model/check.ts;
 * by default the file's general.type picks model or adapter checks); returns its metadata. llama.cpp must
 * never see less.
 */
export async function checkGgufFile(file: string, what: string, purpose?: GgufPurpose): Promise<GgufMetadata> {
  v.nonEmptyString(`${what} path`, file);
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch {
    throw new FileNotFoundError(file, what);
  }
  if (!stat.isFile()) throw new FileNotFoundError(file, what);
  const meta = await readGgufMetadata(file);
  checkGgufMetadata(meta, file, purpose);
  return meta;
}

export async function loadModel(file: string, options: LoadModelOptions = {}): Promise<Model> {
  const signal = v.abortSignal('signal', options.signal);
  const gpuLayers = v.integer('gpuLayers', options.gpuLayers ?? -1, -1);
  const gpu = options.gpu === undefined ? defaultGpu() : parseGpu(options.gpu);
  if (signal?.aborted) throw new AbortError();
  const meta = await checkGgufFile(file, 'model file', options.vocabOnly ? 'vocab' : 'model');
  let native: NativeModel;
  const { addon: a, device, location } = addonFor(gpu);
  // Default: all layers that fit the chosen GPUs' free memory, keeping 1 GiB + 10% of it for the KV cache,
  // compute buffers and the rest of the machine (fitGpuLayers).
  const targets = location.deviceList.filter((d) => (d.type === 'gpu' || d.type === 'igpu') && (device === '' || d.backend === device));
  let layers = gpuLayers < 0 ? 999 : gpuLayers;
  if (gpuLayers < 0 && targets.length && !options.vocabOnly) {
    const free = targets.reduce((x, d) => x + d.memoryFree, 0);
    const nLayer = Number(meta.values.get(`${String(meta.values.get('general.architecture'))}.block_count`) ?? 0);
    layers = fitGpuLayers(layerBytes(meta.tensors, nLayer), free, 2 ** 30 + 0.1 * free);
  }
  try {
    native = await a.loadModel(file, { gpuLayers: layers, repack: options.repack ?? true, vocabOnly: options.vocabOnly ?? false, gpu: device });
  } catch (err) {
    throw mapNativeError(err, `loading ${file}`);
  }
  const architecture = String(meta.values.get('general.architecture') ?? 'unknown');
  const kvHeads = meta.values.get(`${architecture}.attention.head_count_kv`);
  const headLength = (key: string) => {
    const x = meta.values.get(`${architecture}.attention.${key}`);
    return typeof x === 'number' && x > 0 ? x : undefined;
  };
  const model = new Model(native, file, architecture, typeof kvHeads === 'number' ? kvHeads : undefined, maxTokenBytes(meta),
    { k: headLength('key_length'), v: headLength('value_length') });
  // The devices the weights went to: the GPUs the filter lets through (with offloaded layers), else the CPU.
  const gpus = layers === 0 ? [] : targets;
  model.device = gpus.length ? gpus.map((d) => `${d.name} (${d.description}, ${(d.memoryTotal / 2 ** 30).toFixed(1)} GiB)`).join(', ') +
    (layers < 999 ? ` (${layers} layers; the rest on the CPU)` : '') : 'CPU';
  model.gpuLayers = gpus.length ? layers : 0;
  model.variant = location.variant;
  if (signal?.aborted) {
    model.dispose();
    throw new AbortError();
  }
  return model;
}

export class Model {
  readonly path: string;
  readonly info: ModelInfo;
  /** Where the weights run: GPU device names with their memory, or 'CPU'. */
  device = 'CPU';
  /** Layers offloaded to the GPU (999 = all, llama.cpp's convention; 0 on the CPU). */
  gpuLayers = 0;
  /** The addon variant of this process (lib/gpu.ts). */
  variant: import('./gpu.js').AddonVariant = 'cpu';
  #native: NativeModel | undefined;
  readonly #adapters = new Set<LoraAdapter>();
  /** sample() and score() calls not settled yet (they hold native handles; see afterJobs). */
  readonly #inFlight = new Set<Promise<unknown>>();

  /**
   * The most text bytes one token stands for (lib/model/token-bound.ts), or undefined when the tokenizer may
   * drop text; lets callers judge a huge text too long without tokenizing it.
   */
  readonly maxTokenBytes: number | undefined;

  /** @internal Use loadModel(). */
  constructor(native: NativeModel, file: string, architecture: string, nHeadKv?: number, maxTokenBytes?: number,
    headDims: { k?: number; v?: number } = {}) {
    this.#native = native;
    this.maxTokenBytes = maxTokenBytes;
    this.path = file;
    const info = native.info();
    const split = info.nHead > 0 ? Math.floor(info.nEmbd / info.nHead) : 0;
    this.info = { ...info, path: file, architecture, nHeadKv: nHeadKv ?? info.nHead, headDimK: headDims.k ?? split, headDimV: headDims.v ?? split };
  }

  /**
   * The attention kernel sample() runs for `option` (lib/model/attention.ts): flash attention, or plain
   * attention where ggml's CPU flash attention would compute this model's heads element by element.
   */
  attention(option: AttentionOption = 'auto', job: AttentionJob = { promptTokens: 256, maxTokens: 256 }): AttentionChoice {
    const loc = addonLocation();
    return chooseAttention(parseAttentionOption(option), this.info, { gpuLayers: this.gpuLayers, systemInfo: loc.systemInfo, cpuBackend: loc.cpuBackend.source, cpuKernels: loc.cpuBackend.kernels }, job);
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  #use(): NativeModel {
    if (!this.#native) throw new DisposedError('model');
    return this.#native;
  }

  /** GGUF metadata as llama.cpp reads it (arrays are summarised by llama.cpp). */
  metadata(): Record<string, string> {
    return this.#use().metadata();
  }

  /** Tokenizes `text`; `addSpecial` adds BOS when the model uses one (as prompts do). */
  tokenize(text: string, options: { addSpecial?: boolean; parseSpecial?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw InvalidArgumentError.expected('string', 'text', text);
    try {
      return Array.from(this.#use().tokenize(text, options.addSpecial ?? false, options.parseSpecial ?? false));
    } catch (err) {
      throw mapNativeError(err, 'tokenize');
    }
  }

  /**
   * Tokens of `prompt` + `completion` as the model sees them, and how many of them are context: the
   * boundary rule that scoring and the trainers share. The text is tokenized whole (with BOS); the context is
   * the longest common prefix with the prompt's own tokens, so a token that merges across the boundary counts
   * as completion, and no token the model would not produce (SentencePiece's dummy "▁" before a separately
   * tokenized completion) is ever added.
   */
  tokenizePair(prompt: string, completion: string, options: { parseSpecial?: boolean } = {}): { tokens: number[]; nPrompt: number } {
    if (typeof prompt !== 'string') throw InvalidArgumentError.expected('string', 'prompt', prompt);
    if (typeof completion !== 'string') throw InvalidArgumentError.expected('string', 'completion', completion);
    try {
      const r = this.#use().tokenizePair(prompt, completion, options.parseSpecial ?? false);
      return { tokens: Array.from(r.tokens), nPrompt: r.nPrompt };
    } catch (err) {
      throw mapNativeError(err, 'tokenizePair');
    }
  }

  /**
   * Formats a conversation with the model's own chat template (`tokenizer.chat_template`), or a built-in one
   * named by `template` ('chatml', 'llama3', 'mistral-v7', …), through llama.cpp's llama_chat_apply_template:
   * it recognizes a fixed list of templates and runs no Jinja, so an unknown template is an
   * UnsupportedModelError. `addAssistant` (default true) ends with the start of an assistant turn, as a prompt.
   * Control tokens in the result (`<|im_start|>`) need `parseSpecial: true` when tokenized or sampled.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addAssistant?: boolean; template?: string } = {}): string {
    if (!Array.isArray(messages) || messages.length === 0) throw InvalidArgumentError.expected('non-empty array of {role, content}', 'messages', messages);
    messages.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw InvalidArgumentError.expected('{role: string, content: string}', `messages[${i}]`, m);
      }
    });
    if (options.template !== undefined) v.nonEmptyString('template', options.template);
    try {
      return this.#use().applyChatTemplate(messages.map((m) => ({ role: m.role, content: m.content })), options.addAssistant ?? true, options.template);
    } catch (err) {
      throw mapNativeError(err, 'applyChatTemplate');
    }
  }

  /** Turns tokens back into text; `renderSpecial` prints control tokens such as `</s>`. */
  detokenize(tokens: readonly number[], options: { renderSpecial?: boolean } = {}): string {
    if (!Array.isArray(tokens)) throw InvalidArgumentError.expected('array of token ids', 'tokens', tokens);
    const n = this.info.nVocab;
    tokens.forEach((t, i) => v.integer(`tokens[${i}]`, t, 0, n - 1));
    try {
      return this.#use().detokenize(Int32Array.from(tokens), options.renderSpecial ?? false);
    } catch (err) {
      throw mapNativeError(err, 'detokenize');
    }
  }

  /** Loads a GGUF LoRA adapter made for this model (llama.cpp's adapter format). */
  async loadLora(file: string): Promise<LoraAdapter> {
    const native = this.#use();
    await checkGgufFile(file, 'adapter file', 'adapter');
    try {
      const lora = new LoraAdapter(await native.loadLora(file), file, this);
      this.#adapters.add(lora);
      return lora;
    } catch (err) {
      throw mapNativeError(err, `loading adapter ${file} for ${this.path}`);
    }
  }

  /** Runs a native job through the process-wide queue with its AbortSignal wired to a cancel token. */
  #runJob<T>(signal: AbortSignal | undefined, threads: number, what: string, job: (token: NativeCancelToken | undefined) => Promise<T>): Promise<T> {
    return computeQueue.run(async () => {
      const { token, done } = cancelTokenFor(signal);
      try {
        return await job(token);
      } catch (err) {
        throw mapNativeError(err, what);
      } finally {
        done();
      }
    }, { signal, threads });
  }

  /**
   * Samples `n` completions for every prompt. Runs natively with continuous batching; the samples of one
   * prompt share its KV cache. Results are ordered by (promptIndex, sampleIndex); each sample has its own
   * random stream derived from (seed, promptIndex, sampleIndex), so with `highPrecision` the text does not
   * depend on `parallel` (with the default F16 KV cache, rounding can occasionally flip a sampled token).
   */
  sample(prompts: readonly string[], options: SampleOptions = {}): Promise<Sample[]> {
    const native = this.#use();
    const { request, signal, onProgress } = normalizeSampleOptions(prompts, options, this.info, this);
    if (signal?.aborted) return Promise.reject(new AbortError());
    if (prompts.length === 0) return Promise.resolve([]);
    return this.#track(this.#threads(options.threads, request.threads, signal).then((threads) =>
      this.#runJob(signal, threads, 'sample', (token) => native.sample({ ...request, threads }, onProgress, token))));
  }

  /**
   * The default thread count for this model on this machine (lib/thread-calibration.ts): measured by a short
   * probe the first time, then cached. sample() and score() use it when `threads` is not given.
   */
  calibrateThreads(options: { signal?: AbortSignal } = {}): Promise<ThreadCalibration> {
    const native = this.#use();
    // 32 sequences decoded together, as a sampling job's batches are: with 8 the probe's graphs were so
    // small that a second thread never paid, while the real 64-sequence job ran 1.8× faster with it. Enough
    // decode steps that setting up the context does not dominate; fewer on big models (each step is long).
    const bytes = fs.statSync(this.path).size;
    const probeTokens = bytes < 2 ** 30 ? 24 : 6;
    // The kernel 'auto' picks for the probe's own shape, as a sample() call of it would run.
    const flashAttention = this.attention('auto', { promptTokens: 8, maxTokens: probeTokens }).mode === 'flash';
    const probe = (threads: number) => this.#runJob(options.signal, threads, 'thread calibration', (token) => native.sample({
      prompts: Array(8).fill('Once upon a time'), n: 4, temperature: 1, topP: 1, topK: 0, seed: 0, maxTokens: probeTokens, stops: [], parallel: 32,
      contextSize: Math.min(this.info.nCtxTrain, 128), kvCells: 0, batchSize: 512, threads, adapters: [], parseSpecial: false, highPrecision: false,
      flashAttention,
    }, undefined, token)).then(() => undefined);
    return this.#track(calibratedThreads(bytes, probe));
  }

  /** `given` when the caller set threads; else the calibrated default (`fallback` where calibration is off). */
  #threads(given: number | undefined, fallback: number, signal: AbortSignal | undefined): Promise<number> {
    if (given !== undefined || !calibrationEnabled()) return Promise.resolve(fallback);
    // A probe that cannot run on this model (e.g. a context too small for it) leaves the plain default.
    return this.calibrateThreads({ signal }).then((c) => c.threads, (err: unknown) => {
      if (signal?.aborted || (err as { name?: string }).name === 'AbortError') throw err;
      return fallback;
    });
  }

  /** Keeps `p` in the set of calls that hold this model's native handles until it settles (see afterJobs). */
  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    p.then(() => this.#inFlight.delete(p), () => this.#inFlight.delete(p));
    return p;
  }

  /**
   * Log-probabilities of each completion given its prompt, through llama.cpp's inference path. The prompt is
   * tokenized with BOS (when the model adds one), the completion separately without special tokens, and
   * the two are concatenated; prompt tokens are not scored.
   */
  score(items: readonly ScoreItem[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const native = this.#use();
    const { request, signal, onProgress } = normalizeScoreOptions(items, options, this.info, this);
    if (signal?.aborted) return Promise.reject(new AbortError());
    return this.#track(this.#threads(options.threads, request.threads, signal).then((threads) =>
      this.#runJob(signal, threads, 'score', (token) => native.score({ ...request, threads }, onProgress, token))));
  }

  /**
   * @internal Runs `free` once every call made so far has settled and every job queued so far has finished:
   * a call holds the native handles it was given, so they must outlive dispose() calls made while it waits
   * (for its thread calibration, or in the queue).
   */
  afterJobs(free: () => void): void {
    void Promise.allSettled([...this.#inFlight]).then(() => computeQueue.run(async () => free())).catch(() => undefined);
  }

  /** Frees the model once running and queued jobs finish; adapters loaded from it are disposed too. */
  dispose(): void {
    for (const a of this.#adapters) a.dispose();
    this.#adapters.clear();
    const native = this.#native;
    this.#native = undefined;
    if (native) this.afterJobs(() => native.dispose());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

export class LoraAdapter {
  #native: NativeLora | undefined;

  /** @internal Use Model.loadLora(). */
  constructor(native: NativeLora, readonly path: string, readonly model: Model) {
    this.#native = native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** @internal */
  nativeHandle(): NativeLora {
    if (!this.#native) throw new DisposedError('LoRA adapter');
    return this.#native;
  }

  metadata(): Record<string, string> {
    return this.nativeHandle().metadata();
  }

  /** Frees the adapter once jobs already given it finish; new calls with it throw DisposedError. */
  dispose(): void {
    const native = this.#native;
    this.#native = undefined;
    if (native) this.model.afterJobs(() => native.dispose());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
