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
  /** Seconds of prompt processing (every sequence's prompt, none shared) and of text generation, summed over `runs`. */
  ppSeconds: number;
  tgSeconds: number;
  /** Batches of `parallel` sequences run one after another (its -npl list repeats the count); the rates pool them. */
  runs: number;
}

/** The cached binary, building it when missing (minutes, once per llama.cpp commit); logs the build time. */
export async function batchedBenchBinary(log: (line: string) => void): Promise<string> {
  const mod = await import(pathToFileURL(path.join(packageRoot(), 'scripts', 'llama-server.mjs')).href) as {
    ensureLlamaTool(tool: string, o: { log: (l: string) => void }): Promise<string>;
  };
  return mod.ensureLlamaTool('llama-batched-bench', { log });
}

/**
 * One llama-batched-bench process: every parallel count at one thread count, rows parsed from its table.
 * `repeats[i]` (default 1) runs parallels[i] that many times in a row, pooled into one row: one batch of 64
 * steps lasts half a second here, so a lone run catches a quiet or a busy moment of the host, while ours
 * generates the whole job (all of its waves); repeating gives both the same tokens.
 */
export function runBatchedBench(bin: string, model: string, o: { promptTokens: number; newTokens: number; parallels: number[]; repeats?: number[]; threads: number; timeoutMs: number;
  /** The attention kernel (-fa on / off); its own default (auto: flash attention on the CPU) when absent. */
  attention?: 'flash' | 'plain' }): BatchedBenchRow[] {
  const maxPl = Math.max(...o.parallels);
  const ctx = maxPl * (o.promptTokens + o.newTokens) + 256;
  const npl = o.parallels.flatMap((p, i) => Array.from({ length: Math.max(1, o.repeats?.[i] ?? 1) }, () => p));
  const args = ['-m', model, '-c', String(ctx), '-b', '2048', '-ub', '512', '-npp', String(o.promptTokens), '-ntg', String(o.newTokens),
    '-npl', npl.join(','), '-t', String(o.threads), '-tb', String(o.threads), ...(o.attention ? ['-fa', o.attention === 'flash' ? 'on' : 'off'] : [])];
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: o.timeoutMs, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`llama-batched-bench ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  // |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
  const byParallel = new Map<number, BatchedBenchRow>();
  for (const line of `${r.stdout}\n${r.stderr}`.split('\n')) {
    const cells = line.split('|').map((c) => c.trim()).filter((c) => c !== '');
    if (cells.length !== 10 || !/^\d+$/.test(cells[0]!)) continue;
    const [pp, tg, b, , tpp, , ttg] = cells.map(Number);
    const row = byParallel.get(b!) ?? { parallel: b!, threads: o.threads, promptTokens: pp!, newTokens: tg!, tgTokensPerSecond: 0, ppTokensPerSecond: 0, ppSeconds: 0, tgSeconds: 0, runs: 0 };
    row.ppSeconds += tpp!;
    row.tgSeconds += ttg!;
    row.runs += 1;
    byParallel.set(b!, row);
  }
  const rows = [...byParallel.values()];
  if (rows.length === 0) throw new Error(`llama-batched-bench printed no result table: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' | ')}`);
  for (const row of rows) {
    // Its own S_TG and S_PP, pooled: all runs' tokens over all runs' seconds.
    row.tgTokensPerSecond = (row.runs * row.parallel * row.newTokens) / row.tgSeconds;
    row.ppTokensPerSecond = (row.runs * row.parallel * row.promptTokens) / row.ppSeconds;
  }
  return rows;
}
