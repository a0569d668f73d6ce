// The common start of every trainer: check the model (and init adapter) files, then tokenize with the
// model's vocabulary alone (the native trainer reads the weights itself).
import { checkGgufFile, loadModel, type Model } from '../model.js';
import type { ResolvedTrainOptions } from './options.js';

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
