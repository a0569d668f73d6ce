// Child-process entry for workers.test.ts: starts a sample-worker that samples in a loop, terminates it in
// the middle of a native job, then prints the worker's exit code. Run in its own process because a native
// crash during the worker's teardown would abort the whole process.
import { Worker } from 'node:worker_threads';
import type { SampleWorkerData } from './sample-worker.js';

const [model, delayMs = '300'] = process.argv.slice(2);
const workerData: SampleWorkerData = { model: model!, prompts: ['Question: What is 2 + 2?\nAnswer:', 'Hello'], maxTokens: 200, threads: 1, hold: true };
const w = new Worker(new URL('./sample-worker.js', import.meta.url), { workerData });
w.on('error', (e) => {
  console.error(`worker error: ${e.stack ?? e}`);
  process.exitCode = 3;
});
await new Promise((resolve) => w.once('message', resolve));
await new Promise((resolve) => setTimeout(resolve, Number(delayMs)));
console.log(`worker exit code ${await w.terminate()}`);
