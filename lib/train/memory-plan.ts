// The memory a run needs, measured before its first step: the native trainer reserves the graphs of the
// largest micro-batch (ggml_backend_sched_reserve: exact buffer sizes, nothing run) and the total is
// checked against what the device has, so a run that cannot fit stops with a typed error naming the
// options that shrink it instead of failing an allocation deep in ggml.
import os from 'node:os';
import { OutOfMemoryError, UnsupportedModelError } from '../errors.js';
import type { NativeTrainer } from '../native.js';
import type { ResolvedTrainOptions } from './options.js';

export interface MemoryPlan {
  /** The largest micro-batch: sequences × padded tokens (pairs: DPO/ORPO's 2 sequences per pair). */
  shape: { sequences: number; tokens: number; pairs: boolean };
  /** The frozen base in its stored types. */
  weightsBytes: number;
  /** LoRA parameters, gradient accumulators and AdamW moments (F32). */
  loraBytes: number;
  /** Activations, gradients, output-head chunks and weight transposes of one micro-batch. */
  computeBytes: number;
  /** Layer inputs kept for the backward pass when checkpointing (0 otherwise). */
  checkpointBytes: number;
  checkpointing: boolean;
  totalBytes: number;
  /** The device the trainer runs on, and the memory the plan is checked against. */
  device: string;
  availableBytes: number;
}

const GiB = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);

export function formatMemoryPlan(p: MemoryPlan): string {
  return `memory plan (${p.shape.pairs ? `${p.shape.sequences / 2} pairs` : `${p.shape.sequences} sequences`} × ${p.shape.tokens} tokens): ` +
    `${GiB(p.totalBytes)} = weights ${GiB(p.weightsBytes)} + LoRA/AdamW ${GiB(p.loraBytes)} + activations ${GiB(p.computeBytes)}` +
    `${p.checkpointing ? ` + layer checkpoints ${GiB(p.checkpointBytes)}` : ' (no checkpointing)'}; ${GiB(p.availableBytes)} available on ${p.device}`;
}

/**
 * Measures the plan of micro-batches of `sequences` × `tokens` and throws OutOfMemoryError when it passes
 * `o.memoryLimit` (default: the device's free memory; on the CPU the OS's available memory).
 */
export async function planMemory(trainer: NativeTrainer, shape: MemoryPlan['shape'], o: ResolvedTrainOptions): Promise<MemoryPlan> {
  const per = shape.pairs ? 'pairs' : 'sequences';
  const hints = (checkpointing: boolean) => [
    `batch (--batch; now ${o.batch} ${per} per micro-batch: halve it and double gradAccum/--grad-accum to keep the step)`,
    `maxLen (--max-len; now ${o.maxLen}, the longest example has ${shape.tokens} tokens)`,
    ...(checkpointing ? [] : [`checkpointing (--checkpointing on; now ${o.checkpointing}: keeps one layer's activations instead of all)`]),
    ...(o.memoryLimit > 0 ? [`memoryLimit (--memory-limit; now ${o.memoryLimit} bytes)`] : []),
  ].join('; ');
  let n: Awaited<ReturnType<NativeTrainer['plan']>>;
  try {
    n = await trainer.plan({ T: shape.tokens, B: shape.sequences, pairs: shape.pairs });
  } catch (err) {
    // The model refuses this shape (a sequence past a sliding window the graph does not implement).
    if (/cannot be trained/.test((err as Error).message)) throw new UnsupportedModelError(`${o.model}: ${(err as Error).message}`, { cause: err });
    // The reservation itself failed: the compute buffers could not be allocated.
    throw new OutOfMemoryError(`Training ${o.model} does not fit: ${(err as Error).message}. Shrink it with ${hints(o.checkpointing === 'on')}`, { cause: err });
  }
  const cpu = trainer.info().backend === 'CPU';
  const available = o.memoryLimit > 0 ? o.memoryLimit : cpu ? os.freemem() : n.deviceFree;
  const plan: MemoryPlan = {
    shape, weightsBytes: n.weights, loraBytes: n.lora, computeBytes: n.compute, checkpointBytes: n.checkpoints,
    checkpointing: n.checkpointing, totalBytes: n.weights + n.lora + n.compute + n.checkpoints, device: n.device, availableBytes: available,
  };
  if (plan.totalBytes > available) {
    throw new OutOfMemoryError(`Training ${o.model} does not fit: ${formatMemoryPlan(plan)}. Shrink it with ${hints(plan.checkpointing)}`);
  }
  return plan;
}
