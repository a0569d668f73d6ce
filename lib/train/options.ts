// Options shared by every trainer (SFT, DPO, ORPO): documented defaults and validation.
import { InvalidArgumentError } from '../errors.js';
import { checkOutputPaths, type NamedPath } from '../io/outputs.js';
import { threadsOption } from '../threads.js';
import { defaultGpu, parseGpu, type GpuOption } from '../gpu.js';
import * as v from '../validate.js';
import type { MemoryPlan } from './memory-plan.js';
import type { ScheduleKind } from './schedule.js';

/** The seven projections of every block (the paper's LoRA targets, and the default). */
export const LORA_TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
/** Every target: the seven projections, then the output head (`output.weight`; not for tied embeddings). */
export const ALL_LORA_TARGETS = [...LORA_TARGETS, 'output'] as const;
export type LoraTarget = (typeof ALL_LORA_TARGETS)[number];

export interface TrainProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  /** Mean loss of the step (SFT: mean -log p over response tokens; DPO, ORPO: mean pair loss). */
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  etaSeconds: number;
  /** Step means of run-specific metrics (DPO, ORPO: `rewards/chosen`, `rewards/margins`, …). */
  metrics?: Record<string, number>;
}

export interface TrainOptions {
  /** Base model GGUF. */
  model: string;
  /** Output adapter GGUF (llama.cpp's LoRA adapter format). */
  out: string;
  /** Continue from this adapter (e.g. the Stage I adapter) instead of a fresh LoRA. */
  lora?: string;
  /** LoRA rank. Defaults to 8. */
  rank?: number;
  /** LoRA alpha (scale = alpha / rank). Defaults to 16. */
  alpha?: number;
  /** Dropout on the LoRA input. Defaults to 0. */
  dropout?: number;
  /** Weights to adapt. Defaults to the seven projections; add `'output'` to adapt the output head too. */
  targets?: readonly LoraTarget[];
  /** Peak learning rate. Defaults to 2e-4. */
  lr?: number;
  /** Passes over the data. Defaults to 1. */
  epochs?: number;
  /** Sequences per micro-batch (DPO, ORPO: pairs, i.e. twice as many sequences). Defaults to 4. */
  batch?: number;
  /** Micro-batches per optimizer step. Defaults to 1. */
  gradAccum?: number;
  /** Longest sequence in tokens (prompt + response + EOS); longer responses are cut. Defaults to 1024. */
  maxLen?: number;
  /** Seed of data order, LoRA initialisation and dropout. Defaults to 0. */
  seed?: number;
  /** Warmup as a fraction of all steps. Defaults to 0.03. */
  warmupRatio?: number;
  /** Decay after warmup. Defaults to 'cosine'. */
  schedule?: ScheduleKind;
  /** AdamW. Defaults: beta1 0.9, beta2 0.999, eps 1e-8, weightDecay 0. */
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Max global gradient norm (0 = off). Defaults to 1. */
  clip?: number;
  /** Stop after this many optimizer steps (0 = all). Defaults to 0. */
  maxSteps?: number;
  /** Write a checkpoint every N steps (0 = only at the end). Defaults to 0. */
  checkpointEvery?: number;
  /** Checkpoint file. Defaults to `<out>.ckpt`. */
  checkpoint?: string;
  /** Resume from this checkpoint (same model, data and options). */
  resume?: string;
  /** JSON training log. Defaults to `<out>.log.json`. */
  log?: string;
  /**
   * CPU threads. Defaults to the count measured for this model on this machine (lib/thread-calibration.ts:
   * the sampling probe, whose choice is never much slower than one thread), else the physical cores.
   */
  threads?: number;
  /**
   * Tokenize control-token text in the data (`<|im_end|>`, `</s>`) as the control tokens, as chat-formatted rows
   * need (lib/data/chat.ts). Defaults to false: text stays text.
   */
  parseSpecial?: boolean;
  /**
   * Activation checkpointing: keep each layer's input and recompute the layer in the backward pass (one more
   * forward of compute, ~20% of a step; one layer's activations alive instead of all). 'auto' (default)
   * turns it on when all layers' activations would pass an eighth of the device's memory (the CPU's physical
   * RAM, a GPU's free memory; an eighth of `memoryLimit` when that is set), and at least 256 MiB.
   */
  checkpointing?: 'auto' | 'on' | 'off';
  /**
   * Bytes the run may use (weights + LoRA state + activations). Defaults to 0: the device's free memory (on the
   * CPU the OS's available memory). A run whose memory plan passes it stops with OutOfMemoryError before its
   * first step.
   */
  memoryLimit?: number;
  /**
   * The device of the frozen base, LoRA state and graphs: 'auto' (default, or W2S_GPU): the first GPU of the
   * process's addon variant, else the CPU; 'cuda' / 'vulkan': that backend (BackendUnavailableError without it);
   * false: the CPU. See LoadModelOptions.gpu.
   */
  gpu?: GpuOption;
  onProgress?: (p: TrainProgress) => void;
  /** Called once before the first step with the measured memory plan (lib/train/memory-plan.ts). */
  onMemoryPlan?: (p: MemoryPlan) => void;
  signal?: AbortSignal;
}

export type ResolvedTrainOptions = Required<Omit<TrainOptions, 'lora' | 'resume' | 'onProgress' | 'onMemoryPlan' | 'signal'>> &
  Pick<TrainOptions, 'lora' | 'resume' | 'onProgress' | 'onMemoryPlan' | 'signal'> & {
    /** Whether the caller set `threads`; otherwise openTrainer replaces it with the model's calibrated count. */
    threadsGiven: boolean;
  };

function checkpointingOption(c: unknown): 'auto' | 'on' | 'off' {
  if (c === undefined) return 'auto';
  if (c !== 'auto' && c !== 'on' && c !== 'off') throw InvalidArgumentError.expected("'auto', 'on' or 'off'", 'checkpointing', c);
  return c;
}

export function resolveTrainOptions(o: TrainOptions): ResolvedTrainOptions {
  if (typeof o !== 'object' || o === null) throw InvalidArgumentError.expected('options object', 'options', o);
  const targets = o.targets ?? LORA_TARGETS;
  if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => !(ALL_LORA_TARGETS as readonly string[]).includes(t))) {
    throw InvalidArgumentError.expected(`non-empty array of ${ALL_LORA_TARGETS.join(', ')}`, 'targets', targets);
  }
  const schedule = o.schedule ?? 'cosine';
  if (!['cosine', 'linear', 'constant'].includes(schedule)) throw InvalidArgumentError.expected("'cosine', 'linear' or 'constant'", 'schedule', schedule);
  const out = v.nonEmptyString('out', o.out);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw InvalidArgumentError.expected('function', 'onProgress', o.onProgress);
  if (o.onMemoryPlan !== undefined && typeof o.onMemoryPlan !== 'function') throw InvalidArgumentError.expected('function', 'onMemoryPlan', o.onMemoryPlan);
  return {
    model: v.nonEmptyString('model', o.model),
    out,
    lora: o.lora === undefined ? undefined : v.nonEmptyString('lora', o.lora),
    rank: v.integer('rank', o.rank ?? 8, 1, 4096),
    alpha: v.numberIn('alpha', o.alpha ?? 16, 0, 1e6, true),
    dropout: v.numberIn('dropout', o.dropout ?? 0, 0, 0.99),
    targets,
    lr: v.numberIn('lr', o.lr ?? 2e-4, 0, 10, true),
    epochs: v.positiveInt('epochs', o.epochs ?? 1),
    batch: v.integer('batch', o.batch ?? 4, 1, 4096),
    gradAccum: v.integer('gradAccum', o.gradAccum ?? 1, 1, 4096),
    maxLen: v.integer('maxLen', o.maxLen ?? 1024, 2, 1 << 20),
    seed: v.integer('seed', o.seed ?? 0, 0, 2 ** 32 - 1),
    warmupRatio: v.numberIn('warmupRatio', o.warmupRatio ?? 0.03, 0, 1),
    schedule,
    beta1: v.numberIn('beta1', o.beta1 ?? 0.9, 0, 1),
    beta2: v.numberIn('beta2', o.beta2 ?? 0.999, 0, 1),
    eps: v.numberIn('eps', o.eps ?? 1e-8, 0, 1, true),
    weightDecay: v.numberIn('weightDecay', o.weightDecay ?? 0, 0, 10),
    clip: v.numberIn('clip', o.clip ?? 1, 0, 1e9),
    maxSteps: v.nonNegativeInt('maxSteps', o.maxSteps ?? 0),
    checkpointEvery: v.nonNegativeInt('checkpointEvery', o.checkpointEvery ?? 0),
    checkpoint: o.checkpoint === undefined ? `${out}.ckpt` : v.nonEmptyString('checkpoint', o.checkpoint),
    resume: o.resume === undefined ? undefined : v.nonEmptyString('resume', o.resume),
    log: o.log === undefined ? `${out}.log.json` : v.nonEmptyString('log', o.log),
    threads: threadsOption(o.threads),
    threadsGiven: o.threads !== undefined,
    parseSpecial: Boolean(o.parseSpecial),
    onProgress: o.onProgress,
    checkpointing: checkpointingOption(o.checkpointing),
    memoryLimit: v.nonNegativeInt('memoryLimit', o.memoryLimit ?? 0),
    gpu: o.gpu === undefined ? defaultGpu() : parseGpu(o.gpu),
    onMemoryPlan: o.onMemoryPlan,
    signal: v.abortSignal('signal', o.signal),
  };
}

/** Bit i = ALL_LORA_TARGETS[i]: the native mask (bit 7 = the output head, native T_OUTPUT). */
export function targetMask(targets: readonly LoraTarget[]): number {
  return targets.reduce((m, t) => m | (1 << ALL_LORA_TARGETS.indexOf(t)), 0);
}

/**
 * Refuses output paths that would overwrite an input (model, init adapter, data, resume checkpoint) or each
 * other, or that cannot be written; run before reading data, so a bad path costs nothing. The checkpoint may
 * be the resume file: it is read first and then replaced atomically.
 */
export async function checkTrainPaths(o: ResolvedTrainOptions, data: unknown): Promise<void> {
  const inputs: NamedPath[] = [{ name: 'model', path: o.model }];
  if (o.lora) inputs.push({ name: 'lora', path: o.lora });
  if (typeof data === 'string') inputs.push({ name: 'data', path: data });
  const resume: NamedPath[] = o.resume ? [{ name: 'resume', path: o.resume }] : [];
  await checkOutputPaths([{ name: 'out', path: o.out, regularFile: true }, { name: 'log', path: o.log }], [...inputs, ...resume]);
  await checkOutputPaths([{ name: 'checkpoint', path: o.checkpoint, regularFile: true }, { name: 'out', path: o.out }, { name: 'log', path: o.log }], inputs);
}
