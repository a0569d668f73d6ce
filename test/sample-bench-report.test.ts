// The sampling benchmark's report: best rows per engine (a stopped run is only a bound), the two target
// ratios per parallelism (generation phase vs llama-batched-bench's text generation; end to end vs
// node-llama-cpp), and the suite's markdown table. Rows are made up here: no engine runs.
import test from 'ava';
import { bestRow, summarize, type SampleBenchRow } from '../lib/bench/sample-bench.js';
import { suiteTable } from '../lib/bench/sample-suite.js';

const row = (r: Partial<SampleBenchRow> & Pick<SampleBenchRow, 'engine' | 'threads' | 'tokensPerSecond' | 'sequences'>): SampleBenchRow =>
  ({ generated: 1000, seconds: 1000 / r.tokensPerSecond, ...r });

const rows: SampleBenchRow[] = [
  row({ engine: 'weak2strong', threads: 1, tokensPerSecond: 600, sequences: 64, defaultParallel: true }),
  row({ engine: 'weak2strong', threads: 2, tokensPerSecond: 1000, sequences: 64, defaultParallel: true, generationTokensPerSecond: 1200 }),
  row({ engine: 'weak2strong', threads: 1, tokensPerSecond: 300, sequences: 8, generationTokensPerSecond: 310 }),
  // A stopped run's figure is an upper bound, above the finished one: never the best.
  row({ engine: 'weak2strong', threads: 2, tokensPerSecond: 900, sequences: 8, stopped: true }),
  row({ engine: 'node-llama-cpp', threads: 1, tokensPerSecond: 290, sequences: 64, stopped: true }),
  row({ engine: 'node-llama-cpp', threads: 2, tokensPerSecond: 310, sequences: 64, stopped: true }),
  row({ engine: 'llama-batched-bench', threads: 2, tokensPerSecond: 1500, sequences: 64, endToEndTokensPerSecond: 800 }),
  row({ engine: 'llama-batched-bench', threads: 2, tokensPerSecond: 400, sequences: 8, endToEndTokensPerSecond: 250 }),
];

test('the best row skips stopped runs unless every run of the engine was stopped', (t) => {
  t.is(bestRow(rows, 'weak2strong', 8)!.threads, 1);
  t.is(bestRow(rows, 'weak2strong')!.tokensPerSecond, 1000);
  const nlc = bestRow(rows, 'node-llama-cpp')!;
  t.true(nlc.stopped);
  t.is(nlc.tokensPerSecond, 310);
});

test('summary lines: node-llama-cpp as a bound, generation phase against text generation per parallelism', (t) => {
  const lines = summarize(rows, 64);
  t.log(lines.join('\n'));
  t.regex(lines[0]!, /node-llama-cpp < 310\.0 tokens\/s .*ratio > 3\.23×/);
  t.regex(lines[1]!, /^parallel 64: generation phase 1200\.0 vs llama-batched-bench text generation 1500\.0: ratio 0\.80×.*end to end 1000\.0 vs its 800\.0.*: 1\.25×/);
  t.regex(lines[2]!, /^parallel 8: generation phase 310\.0 .* 400\.0: ratio 0\.78×/);
});

test('the suite table has one row per shape and parallelism, with both ratios', (t) => {
  const lines = suiteTable([{ shape: 'x', work: 64, rows }]);
  t.log(lines.join('\n'));
  t.is(lines.length, 4);
  t.regex(lines[2]!, /^\| x \| 64 \(default\) \| 1,000 \(2 t\) \| 1,200 \| 1,500 \(2 t\) \| 0\.80× \| < 310 \(2 t\) \| > 3\.23× \|$/);
  t.regex(lines[3]!, /^\| x \| 8 \| 300 \(1 t\) \| 310 \| 400 \(2 t\) \| 0\.78× \|/);
});
