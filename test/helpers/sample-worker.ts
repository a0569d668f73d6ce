// Worker-thread entry for workers.test.ts: loads the model named in workerData (the addon loads afresh in
// this thread), samples greedily (`repeat` times) and posts the texts and the sampling interval back; with `hold`, keeps sampling until terminated.
import { parentPort, workerData } from 'node:worker_threads';
import { loadModel } from '../../lib/model.js';

export interface SampleWorkerData {
  model: string;
  prompts: string[];
  maxTokens: number;
  threads?: number;
  /** Sample this many times (each must give the same texts). Defaults to 1. */
  repeat?: number;
  /** Post 'running' and then sample in a loop until the worker is terminated. */
  hold?: boolean;
}

const data = workerData as SampleWorkerData;
const model = await loadModel(data.model);
const options = { temperature: 0, maxTokens: data.maxTokens, threads: data.threads, highPrecision: true };
if (data.hold) {
  parentPort!.postMessage({ running: true });
  for (;;) await model.sample(data.prompts, options);
}
const started = Date.now();
const runs: string[][] = [];
for (let i = 0; i < (data.repeat ?? 1); i++) runs.push((await model.sample(data.prompts, options)).map((s) => s.text));
const finished = Date.now();
const same = runs.every((r) => JSON.stringify(r) === JSON.stringify(runs[0]));
parentPort!.postMessage({ texts: runs[0], same, started, finished, info: { nVocab: model.info.nVocab, nLayer: model.info.nLayer } });
model.dispose();
