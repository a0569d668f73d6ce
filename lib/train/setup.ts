// The common start of every trainer: check the model (and init adapter) files, tokenize with the model's
// vocabulary alone, and open the native trainer (which reads the weights itself).
import { checkGgufFile, loadModel, type Model } from '../model.js';
import { addonFor, mapNativeError, type NativeTrainer } from '../native.js';
import { calibrationEnabled } from '../thread-calibration.js';
import { targetMask, type ResolvedTrainOptions } from './options.js';

export async function tokenizeWithVocab<T>(o: ResolvedTrainOptions, tokenize: (vocab: Model) => T): Promise<T> {
  await checkTrainFiles(o);
  const vocab = await loadModel(o.model, { vocabOnly: true, gpu: o.gpu });
  try {
    return tokenize(vocab);
  } finally {
    vocab.dispose();
  }
}

/**
 * The calibrated default for training on `file`: the sampling probe's choice (cached per machine and model
 * size; a probe runs only the first time). Training's graphs are larger than the probe's, so a second thread
 * pays there at least as well: the choice is conservative, never the collapsing one.
 */
async function calibratedThreadsOf(file: string, gpu: ResolvedTrainOptions['gpu'], signal?: AbortSignal): Promise<number> {
  const m = await loadModel(file, { gpu });
  try {
    return (await m.calibrateThreads({ signal })).threads;
  } finally {
    m.dispose();
  }
}

/** The metadata gate (lib/model/check.ts) on the model and init adapter: the trainer's loader must never see less. */
async function checkTrainFiles(o: ResolvedTrainOptions): Promise<void> {
  await checkGgufFile(o.model, 'model file', 'model');
  if (o.lora) await checkGgufFile(o.lora, 'adapter file', 'train-adapter');
}

/** A native trainer for the run's model and LoRA options (continuing `o.lora` when given). */
export async function openTrainer(o: ResolvedTrainOptions): Promise<NativeTrainer> {
  await checkTrainFiles(o);
  if (!o.threadsGiven && calibrationEnabled()) o.threads = await calibratedThreadsOf(o.model, o.gpu, o.signal);
  const { addon, device } = addonFor(o.gpu);
  try {
    return await addon.createTrainer(o.model, {
      gpu: device,
      rank: o.rank, alpha: o.alpha, dropout: o.dropout, targets: targetMask(o.targets), seed: o.seed, threads: o.threads, checkpointing: o.checkpointing,
      ...(o.memoryLimit > 0 ? { checkpointAutoBytes: Math.max(256 * 2 ** 20, Math.floor(o.memoryLimit / 8)) } : {}),
      ...(o.lora ? { initAdapter: o.lora } : {}),
    });
  } catch (err) {
    throw mapNativeError(err, `setting up training on ${o.model}`);
  }
}
