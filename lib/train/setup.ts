// The common start of every trainer: check the model (and init adapter) files, tokenize with the model's
// vocabulary alone, and open the native trainer (which reads the weights itself).
import { checkGgufFile, loadModel, type Model } from '../model.js';
import { addon, mapNativeError, type NativeTrainer } from '../native.js';
import { targetMask, type ResolvedTrainOptions } from './options.js';

export async function tokenizeWithVocab<T>(o: ResolvedTrainOptions, tokenize: (vocab: Model) => T): Promise<T> {
  await checkGgufFile(o.model, 'model file');
  if (o.lora) await checkGgufFile(o.lora, 'adapter file');
  const vocab = await loadModel(o.model, { vocabOnly: true });
  try {
    return tokenize(vocab);
  } finally {
    vocab.dispose();
  }
}

/** A native trainer for the run's model and LoRA options (continuing `o.lora` when given). */
export async function openTrainer(o: ResolvedTrainOptions): Promise<NativeTrainer> {
  try {
    return await addon().createTrainer(o.model, {
      rank: o.rank, alpha: o.alpha, dropout: o.dropout, targets: targetMask(o.targets), seed: o.seed, threads: o.threads,
      ...(o.lora ? { initAdapter: o.lora } : {}),
    });
  } catch (err) {
    throw mapNativeError(err, `setting up training on ${o.model}`);
  }
}
