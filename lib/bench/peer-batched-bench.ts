// llama.cpp's own batched generation benchmark (`llama-batched-bench`, built from the bundled source by
// scripts/llama-server.mjs and cached outside the clone) as a peer of `w2s bench sample`: its text-generation
// tokens/s (S_TG) at the same parallelism, prompt length and new tokens, one process per thread count.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../native.js';

export interface BatchedBenchRow {
  parallel: number;
  threads: number;
  promptTokens: number;
  newTokens: number;
  /** Text generation: new tokens of all sequences / generation seconds. */
  tgTokensPerSecond: number;
  /** Prompt processing tokens/s. */
  ppTokensPerSecond: number;
  /** Seconds of prompt processing (every sequence's prompt, none shared) and of text generation. */
  ppSeconds: number;
  tgSeconds: number;
}

/** The cached binary, building it when missing (minutes, once per llama.cpp commit); logs the build time. */
export async function batchedBenchBinary(log: (line: string) => void): Promise<string> {
  const mod = await import(pathToFileURL(path.join(packageRoot(), 'scripts', 'llama-server.mjs')).href) as {
    ensureLlamaTool(tool: string, o: { log: (l: string) => void }): Promise<string>;
  };
  return mod.ensureLlamaTool('llama-batched-bench', { log });
}

/** One llama-batched-bench run: every parallel count at one thread count. Rows parsed from its table. */
export function runBatchedBench(bin: string, model: string, o: { promptTokens: number; newTokens: number; parallels: number[]; threads: number; timeoutMs: number }): BatchedBenchRow[] {
  const maxPl = Math.max(...o.parallels);
  const ctx = maxPl * (o.promptTokens + o.newTokens) + 256;
  const args = ['-m', model, '-c', String(ctx), '-b', '2048', '-ub', '512', '-npp', String(o.promptTokens), '-ntg', String(o.newTokens),
    '-npl', o.parallels.join(','), '-t', String(o.threads), '-tb', String(o.threads)];
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: o.timeoutMs, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`llama-batched-bench ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  // |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
  const rows: BatchedBenchRow[] = [];
  for (const line of `${r.stdout}\n${r.stderr}`.split('\n')) {
    const cells = line.split('|').map((c) => c.trim()).filter((c) => c !== '');
    if (cells.length !== 10 || !/^\d+$/.test(cells[0]!)) continue;
    const [pp, tg, b, , tpp, spp, ttg, stg] = cells.map(Number);
    rows.push({ parallel: b!, threads: o.threads, promptTokens: pp!, newTokens: tg!, tgTokensPerSecond: stg!, ppTokensPerSecond: spp!, ppSeconds: tpp!, tgSeconds: ttg! });
  }
  if (rows.length === 0) throw new Error(`llama-batched-bench printed no result table: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' | ')}`);
  return rows;
}
