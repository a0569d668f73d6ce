// `w2s bench sample --suite method`: every shape issue 14 names, in one command, on the same created model:
// (a) the default bench job at parallel 1, 8, 16 and 64; (b) the method's own jobs: 64 prompts of ~100
// tokens (zero-shot) and of ~400 tokens (three solved examples before the question, the length of a GSM8K
// 4-shot prompt; the same examples before every question, as the pipeline's weak-ICL step has), n = 1 and
// n = 10 samples each, 256 new tokens, at the sampler's default parallelism.
// Prints each shape's lines as it goes and a markdown table at the end (the README's).
import { BATCHED_BENCH_TARGET, bestRow, runSampleBench, type SampleBenchOptions, type SampleBenchRow } from './sample-bench.js';
import { median } from './stats.js';

export interface SampleShape {
  name: string;
  options: SampleBenchOptions;
}

export const METHOD_SHAPES: SampleShape[] = [
  { name: '(a) 16 prompts × 4, 64 new', options: { prompts: 16, n: 4, maxTokens: 64, parallel: [64, 16, 8, 1] } },
  { name: '(b) zero-shot ~100 tokens, n = 1', options: { prompts: 64, n: 1, maxTokens: 256, longQuestions: true } },
  { name: '(b) zero-shot ~100 tokens, n = 10', options: { prompts: 64, n: 10, maxTokens: 256, longQuestions: true } },
  { name: '(b) few-shot ~400 tokens, n = 1', options: { prompts: 64, n: 1, maxTokens: 256, fewShot: 3 } },
  { name: '(b) few-shot ~400 tokens, n = 10', options: { prompts: 64, n: 10, maxTokens: 256, fewShot: 3 } },
];

/** One shape's rows; `work` is its samples (prompts × n). */
export interface SuiteRow { shape: string; work: number; rows: SampleBenchRow[] }

/**
 * `paired`: closing rounds against llama-batched-bench (see SampleBenchOptions.paired), on the shapes named in
 * `pairedShapes` (default: (a) only, whose jobs take seconds; a (b) n = 10 round takes ~4 min here).
 */
export async function runSampleSuite(o: Pick<SampleBenchOptions, 'model' | 'threads' | 'batchedBench' | 'log' | 'paired'> & { pairedShapes?: 'a' | 'all' } = {}): Promise<SuiteRow[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const out: SuiteRow[] = [];
  const t0 = performance.now();
  for (const [i, shape] of METHOD_SHAPES.entries()) {
    log(`\n== ${shape.name} ==`);
    const rows = await runSampleBench({ ...shape.options, model: o.model, threads: o.threads, batchedBench: o.batchedBench, log,
      peerLimitFactor: 3.1, calibration: i === METHOD_SHAPES.length - 1, paired: i === 0 || o.pairedShapes === 'all' ? o.paired : 0 });
    out.push({ shape: shape.name, work: (shape.options.prompts ?? 16) * (shape.options.n ?? 4), rows });
  }
  log(`\nsuite: ${((performance.now() - t0) / 60000).toFixed(1)} min`);
  for (const line of suiteTable(out)) log(line);
  const paired = pairedTable(out);
  if (paired.length > 2) for (const line of ['', ...paired]) log(line);
  return out;
}

const f = (x: number | undefined, bound = false) => x === undefined ? '—' : `${bound ? '< ' : ''}${Math.round(x).toLocaleString('en-US')}`;

/** One row per shape and parallelism: best of the thread counts for each engine, and the two target ratios. */
export function suiteTable(suite: SuiteRow[]): string[] {
  const lines = [
    '| shape | parallel | weak2strong end to end | generation phase | llama-batched-bench TG | ratio (≥ 0.9) | node-llama-cpp | ratio (≥ 3) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const { shape, work, rows } of suite) {
    const nlc = bestRow(rows, 'node-llama-cpp');
    for (const p of [...new Set(rows.filter((r) => r.engine === 'weak2strong').map((r) => r.sequences))]) {
      const ours = bestRow(rows, 'weak2strong', p)!;
      const bb = bestRow(rows, 'llama-batched-bench', Math.min(p, work));
      const gen = ours.generationTokensPerSecond;
      const bbRatio = gen !== undefined && bb ? `${(gen / bb.tokensPerSecond).toFixed(2)}×` : '—';
      const nlcRatio = nlc ? `${nlc.stopped ? '> ' : ''}${(ours.tokensPerSecond / nlc.tokensPerSecond).toFixed(2)}×` : '—';
      lines.push(`| ${shape} | ${p}${ours.defaultParallel ? ' (default)' : ''} | ${f(ours.tokensPerSecond)} (${ours.threads} t) | ${f(gen)} | ` +
        `${bb ? `${f(bb.tokensPerSecond)} (${bb.threads} t)` : '—'} | ${bbRatio} | ${nlc ? `${f(nlc.tokensPerSecond, nlc.stopped)} (${nlc.threads} t)` : '—'} | ${nlcRatio} |`);
    }
  }
  return lines;
}

/** The paired rounds (rows with `round`): per shape and parallelism, each round's ratio and their median. */
export function pairedTable(suite: SuiteRow[]): string[] {
  const lines = [
    `| shape | parallel | rounds: generation phase / llama-batched-bench TG | median ratio (≥ ${BATCHED_BENCH_TARGET}) |`,
    '|---|---|---|---|',
  ];
  for (const { shape, work, rows } of suite) {
    for (const p of [...new Set(rows.filter((r) => r.engine === 'weak2strong' && r.round !== undefined).map((r) => r.sequences))]) {
      const ours = rows.filter((r) => r.engine === 'weak2strong' && r.round !== undefined && r.sequences === p);
      const ratios = ours.flatMap((r) => {
        const bb = rows.find((b) => b.engine === 'llama-batched-bench' && b.round === r.round && b.sequences === Math.min(p, work));
        return bb && r.generationTokensPerSecond !== undefined ? [r.generationTokensPerSecond / bb.tokensPerSecond] : [];
      });
      if (ratios.length === 0) continue;
      lines.push(`| ${shape} | ${p} | ${ratios.map((x) => x.toFixed(2)).join(', ')} | ${median(ratios).toFixed(2)}× |`);
    }
  }
  return lines;
}
