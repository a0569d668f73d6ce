// `w2s bench remote`: sampling tokens/s through llama-server (OpenAI completions, one request per sample, as
// `w2s sample --endpoint` sends them) against the local native sampler, on the same created model, machine and
// thread count, in the same run; prints the ratio.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadModel } from '../model.js';
import { RemoteGenerator } from '../remote/openai.js';
import { startLlamaServer } from '../remote/llama-server.js';
import { physicalCores } from '../threads.js';
import { benchModel, benchPrompts } from './sample-bench.js';

export interface RemoteBenchOptions {
  model?: string;
  /** llama-server binary; default: the cached build (scripts/llama-server.mjs builds it when missing). */
  server?: string;
  prompts?: number;
  n?: number;
  maxTokens?: number;
  threads?: number;
  /** Sequences llama-server decodes together (-np) and requests in flight. Defaults to 16. */
  parallel?: number;
  log?: (line: string) => void;
}

export interface RemoteBenchRow {
  engine: 'local' | 'llama-server' | 'llama-server (n per request)';
  generated: number;
  seconds: number;
  tokensPerSecond: number;
}

async function serverBinary(log: (l: string) => void): Promise<string> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const mod = await import(pathToFileURL(path.join(root, 'scripts', 'llama-server.mjs')).href) as { ensureLlamaServer(o: { log: (l: string) => void }): Promise<string> };
  return mod.ensureLlamaServer({ log });
}

export async function runRemoteBench(o: RemoteBenchOptions = {}): Promise<RemoteBenchRow[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const modelFile = o.model ?? (await benchModel(path.join(os.tmpdir(), 'weak2strong-bench')));
  const prompts = benchPrompts(o.prompts ?? 16);
  const n = o.n ?? 10;
  const maxTokens = o.maxTokens ?? 64;
  const threads = o.threads ?? physicalCores();
  const parallel = o.parallel ?? 16;
  const binary = o.server ?? (await serverBinary(log));
  const rows: RemoteBenchRow[] = [];
  const opts = { n, maxTokens, temperature: 1, seed: 1 };
  log(`model ${modelFile}; ${prompts.length} prompts × ${n} samples × ${maxTokens} new tokens at T = 1; ${threads} threads each; llama-server -np ${parallel}`);

  const model = await loadModel(modelFile);
  try {
    await model.sample(prompts.slice(0, 2), { n: 1, maxTokens: 4, threads });
    const start = performance.now();
    const samples = await model.sample(prompts, { ...opts, threads });
    const seconds = (performance.now() - start) / 1000;
    const generated = samples.reduce((a, s) => a + s.tokens, 0);
    rows.push({ engine: 'local', generated, seconds, tokensPerSecond: generated / seconds });
    log(`local sampler                 : ${generated} tokens in ${seconds.toFixed(2)} s = ${(generated / seconds).toFixed(1)} tokens/s`);
  } finally {
    model.dispose();
  }

  const server = await startLlamaServer({ binary, model: modelFile, alias: 'bench', parallel, contextSize: parallel * 1024, threads });
  try {
    for (const group of [false, true]) {
      const gen = new RemoteGenerator({ endpoint: server.url, model: 'bench', concurrency: group ? Math.max(1, Math.floor(parallel / n)) : parallel, groupSamples: group });
      await gen.sample(prompts.slice(0, 2), { n: 1, maxTokens: 4 });
      const start = performance.now();
      const samples = await gen.sample(prompts, opts);
      const seconds = (performance.now() - start) / 1000;
      const generated = samples.reduce((a, s) => a + s.tokens, 0);
      const engine = group ? 'llama-server (n per request)' : 'llama-server';
      rows.push({ engine, generated, seconds, tokensPerSecond: generated / seconds });
      log(`${engine.padEnd(30)}: ${generated} tokens in ${seconds.toFixed(2)} s = ${(generated / seconds).toFixed(1)} tokens/s`);
    }
  } finally {
    await server.stop();
  }
  const local = rows[0]!;
  const remote = rows[1]!;
  log(`ratio local / llama-server: ${(local.tokensPerSecond / remote.tokensPerSecond).toFixed(2)}×`);
  return rows;
}
