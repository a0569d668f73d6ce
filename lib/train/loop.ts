// The training loop shared by SFT and the preference trainers: optimizer steps made of micro-batches,
// learning-rate schedule, progress, cancellation between micro-batches, NaN guard, atomic checkpoints,
// resume, the adapter and a JSON log. The loss itself is the caller's `runMicro`. On abort it checkpoints the
// last completed step, so Ctrl-C loses nothing; at start it removes temp files that killed runs left.
import crypto from 'node:crypto';
import { AbortError, CheckpointError, TrainingDivergedError } from '../errors.js';
import { readGgufMetadata } from '../gguf/reader.js';
import { writeFileAtomic } from '../io/atomic.js';
import { removeStaleTemps } from '../io/stale-temp.js';
import { computeQueue } from '../job-queue.js';
import { mapNativeError, type NativeTrainer } from '../native.js';
import type { StepPlan, StepSchedule } from './batches.js';
import { planMemory, type MemoryPlan } from './memory-plan.js';
import type { ResolvedTrainOptions } from './options.js';
import { learningRate } from './schedule.js';

export interface MicroResult {
  /** Sum of the per-example losses of this micro-batch (already weighted as the step's mean requires). */
  loss: number;
  /** Tokens processed (padding excluded), for tokens/s. */
  tokens: number;
  /** Extra per-step metrics, summed over the step's micro-batches (weight them like `loss` for a step mean). */
  metrics?: Record<string, number>;
}

export interface StepRecord extends Record<string, number> {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface TrainResult {
  adapter: string;
  steps: number;
  history: StepRecord[];
  checkpoint: string;
  log: string;
  trainer: { nParams: number; backend: string };
  /** The memory plan measured before the first step. */
  memory: MemoryPlan;
  /** Run-specific counts (skipped examples, …). */
  data: Record<string, number>;
}

interface CheckpointState {
  version: 1;
  fingerprint: string;
  step: number;
  history: StepRecord[];
  /** The run's own state from `runState` (e.g. DPO's reference log-probs); absent for SFT. */
  extra?: unknown;
}

export interface LoopSpec {
  kind: string;
  options: ResolvedTrainOptions;
  trainer: NativeTrainer;
  plan: StepSchedule;
  /** The largest micro-batch (for the memory plan): sequences × padded tokens, pairs for DPO/ORPO. */
  shape: MemoryPlan['shape'];
  /** Hash input identifying the run (data, tokenizer, options); resume refuses a checkpoint from another. */
  identity: unknown;
  /** Runs one micro-batch of a step (forward + backward into the accumulators). */
  runMicro(micro: number[], step: StepPlan, stepIndex: number): Promise<MicroResult>;
  data: Record<string, number>;
  /**
   * Run state computed once before the first step and saved in every checkpoint (e.g. DPO's reference
   * log-probs, which must come from the starting adapter). Called after a resume checkpoint was loaded, with
   * the state that checkpoint saved (`undefined` on a fresh run): return it instead of recomputing.
   */
  runState?(resumed: unknown): Promise<unknown>;
}

export function fingerprint(identity: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

async function loadResume(spec: LoopSpec, fp: string): Promise<CheckpointState> {
  const file = spec.options.resume!;
  try {
    await readGgufMetadata(file); // a file cut short by a crash fails here, before any native load
  } catch (err) {
    throw new CheckpointError(`Cannot resume from ${file}: ${(err as Error).message}`, { cause: err });
  }
  let raw: string;
  try {
    raw = await spec.trainer.loadCheckpoint(file);
  } catch (err) {
    throw mapNativeError(err, `loading checkpoint ${file}`);
  }
  let state: CheckpointState;
  try {
    state = JSON.parse(raw) as CheckpointState;
  } catch {
    throw new CheckpointError(`${file} carries no weak2strong run state`);
  }
  if (state.version !== 1 || state.fingerprint !== fp) {
    throw new CheckpointError(`${file} belongs to another run (different model, data or options); start a new run or pass the original options`);
  }
  // The checksum covers both, so a mismatch means the file was written wrong or re-signed after an edit.
  const nativeStep = spec.trainer.info().step;
  if (!Number.isSafeInteger(state.step) || state.step < 0 || state.step !== nativeStep) {
    throw new CheckpointError(`${file} is damaged (its run state is at step ${state.step}, its tensors at step ${nativeStep}); ` +
      'delete it and start the run again, or resume from an earlier copy of it');
  }
  if (state.step > spec.plan.length) throw new CheckpointError(`${file} is at step ${state.step}, past this run's ${spec.plan.length} steps`);
  return state;
}

export async function runTrainingLoop(spec: LoopSpec): Promise<TrainResult> {
  const o = spec.options;
  const fp = fingerprint({ kind: spec.kind, identity: spec.identity });
  await removeStaleTemps([o.checkpoint, o.out, o.log], [o.resume, o.model, o.lora]);
  const total = o.maxSteps > 0 ? Math.min(o.maxSteps, spec.plan.length) : spec.plan.length;
  const warmup = Math.round(o.warmupRatio * spec.plan.length);
  let history: StepRecord[] = [];
  let start = 0;
  let resumedExtra: unknown;
  if (o.resume) {
    const state = await loadResume(spec, fp);
    history = state.history;
    start = state.step;
    resumedExtra = state.extra;
  }
  const extra = spec.runState ? await spec.runState(resumedExtra) : undefined;
  // The newest checkpoint on disk of this run (the resume file until this run writes one).
  let lastCheckpoint = 0;
  let lastCheckpointFile = o.checkpoint;
  if (o.resume && start > 0) [lastCheckpoint, lastCheckpointFile] = [start, o.resume];
  const saveCheckpoint = async (step: number) => {
    const state: CheckpointState = { version: 1, fingerprint: fp, step, history, ...(extra === undefined ? {} : { extra }) };
    await spec.trainer.saveCheckpoint(o.checkpoint, JSON.stringify(state));
    [lastCheckpoint, lastCheckpointFile] = [step, o.checkpoint];
  };
  const resumeHint = (file: string) => `continue with --resume ${file} (API: resume: '${file}')`;
  // `done` steps completed; any partial step's gradients are dropped, so parameters and moments are those
  // after step `done`, which is what a checkpoint of step `done` must hold.
  const abort = async (done: number): Promise<never> => {
    spec.trainer.clearGrads();
    if (done > lastCheckpoint) {
      try {
        await saveCheckpoint(done);
      } catch (err) {
        const kept = lastCheckpoint > 0 ? `the checkpoint of step ${lastCheckpoint} (${lastCheckpointFile}) is intact: ${resumeHint(lastCheckpointFile)}` : 'no checkpoint exists';
        throw new AbortError(`Training was aborted after step ${done}, and writing its checkpoint ${o.checkpoint} failed ` +
          `(${(mapNativeError(err) as Error).message}); ${kept}`, { cause: err });
      }
      throw new AbortError(`Training was aborted after step ${done} of ${total}; checkpoint ${o.checkpoint} holds step ${done}: ${resumeHint(o.checkpoint)}`);
    }
    if (lastCheckpoint > 0) {
      throw new AbortError(`Training was aborted; no step completed since the checkpoint of step ${lastCheckpoint} (${lastCheckpointFile}): ${resumeHint(lastCheckpointFile)}`);
    }
    throw new AbortError('Training was aborted before its first step completed; no checkpoint was written');
  };

  const memory = await computeQueue.run(() => planMemory(spec.trainer, spec.shape, o), { threads: o.threads });
  o.onMemoryPlan?.(memory);

  const began = performance.now();
  let tokensSoFar = 0;
  for (let s = start; s < total; s++) {
    const plan = spec.plan.at(s);
    const t0 = performance.now();
    let loss = 0;
    let tokens = 0;
    const metrics: Record<string, number> = {};
    for (const micro of plan.micro) {
      if (o.signal?.aborted) await abort(s);
      const r = await spec.runMicro(micro, plan, s);
      loss += r.loss;
      tokens += r.tokens;
      for (const [k, v] of Object.entries(r.metrics ?? {})) metrics[k] = (metrics[k] ?? 0) + v;
    }
    if (!Number.isFinite(loss)) {
      spec.trainer.clearGrads();
      const kept = lastCheckpoint > 0 ? `The checkpoint of step ${lastCheckpoint} (${lastCheckpointFile}) is intact` : 'No checkpoint was written in this run';
      throw new TrainingDivergedError(`The loss at step ${s + 1} is ${loss}; training stopped and the step was not applied. ${kept}; ` +
        'check the data of this step and lower the learning rate.');
    }
    const lr = learningRate(s, spec.plan.length, o.lr, warmup, o.schedule);
    let gradNorm: number;
    try {
      ({ gradNorm } = await computeQueue.run(() => spec.trainer.step({ lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip }), { threads: o.threads }));
    } catch (err) {
      throw mapNativeError(err, `optimizer step ${s + 1}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    tokensSoFar += tokens;
    const record: StepRecord = { step: s + 1, epoch: plan.epoch, loss, lr, gradNorm, tokens, seconds, tokensPerSecond: tokens / seconds, ...metrics };
    history.push(record);
    const elapsed = (performance.now() - began) / 1000;
    o.onProgress?.({
      step: s + 1, totalSteps: total, epoch: plan.epoch, loss, lr, gradNorm,
      tokensPerSecond: tokensSoFar / elapsed, etaSeconds: ((total - s - 1) * elapsed) / (s + 1 - start),
      ...(Object.keys(metrics).length > 0 ? { metrics } : {}),
    });
    if (o.checkpointEvery > 0 && (s + 1) % o.checkpointEvery === 0 && s + 1 < total) await saveCheckpoint(s + 1);
  }
  await saveCheckpoint(total);
  await spec.trainer.saveAdapter(o.out);
  const info = spec.trainer.info();
  const result: TrainResult = {
    adapter: o.out, steps: total, history, checkpoint: o.checkpoint, log: o.log,
    trainer: { nParams: info.nParams, backend: info.backend }, data: spec.data, memory,
  };
  const { onProgress: _p, onMemoryPlan: _m, signal: _s, ...loggable } = o;
  await writeFileAtomic(o.log, JSON.stringify({ kind: spec.kind, options: loggable, ...result }, null, 2) + '\n');
  return result;
}
