// The sampling benchmark's report: best rows per engine (a stopped run is only a bound), the two target
// ratios per parallelism (generation phase vs llama-batched-bench's text generation; end to end vs
// node-llama-cpp), and the suite's markdown table. Rows are made up here: no engine runs.
import test from 'ava';
import { batchedBenchRepeats, bestRow, pairedVerdict, summarize, type SampleBenchRow } from '../lib/bench/sample-bench.js';
import { pairedTable, suiteTable } from '../lib/bench/sample-suite.js';

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

test('llama-batched-bench repeats its batches to generate what our job generates, up to ~40k tokens', (t) => {
  t.is(batchedBenchRepeats(8, 64, 64), 8);     // (a) at parallel 8: our 8 waves
  t.is(batchedBenchRepeats(64, 64, 64), 1);
  t.is(batchedBenchRepeats(1, 64, 64), 64);
  t.is(batchedBenchRepeats(64, 640, 256), 2);  // (b) n = 10: capped (10 would be 163,840 tokens)
  t.is(batchedBenchRepeats(64, 64, 1024), 1);  // never below one batch
});

test('paired rounds: the median ratio judges the target; a shortfall inside our own spread is called so', (t) => {
  const met = pairedVerdict(8, [900, 950, 920], [1000, 1000, 1000]);
  t.regex(met[0]!, /median 0\.920× .*Target >= 0\.9: met$/);
  // 0.85 is 5.6% short of 0.9, less than our runs' spread: 920 lands 8.2% above their median, 850.
  const noisy = pairedVerdict(8, [800, 850, 920], [1000, 1000, 1000]);
  t.regex(noisy[0]!, /median 0\.850× .*met within the noise \(5\.6% short, less than our runs' own ±8\.2%\)/);
  const missed = pairedVerdict(8, [800, 805, 810], [1000, 1000, 1000]);
  t.regex(missed[0]!, /median 0\.805× .*missed \(10\.6% short, more than our runs' ±0\.6%\)/);
});

test('paired rows are left out of the best rows and tabled per round', (t) => {
  const paired = [
    ...rows,
    row({ engine: 'weak2strong', threads: 2, tokensPerSecond: 5000, sequences: 8, generationTokensPerSecond: 360, round: 1 }),
    row({ engine: 'llama-batched-bench', threads: 2, tokensPerSecond: 400, sequences: 8, round: 1 }),
    row({ engine: 'weak2strong', threads: 2, tokensPerSecond: 5000, sequences: 8, generationTokensPerSecond: 380, round: 2 }),
    row({ engine: 'llama-batched-bench', threads: 2, tokensPerSecond: 380, sequences: 8, round: 2 }),
  ];
  t.is(bestRow(paired, 'weak2strong', 8)!.tokensPerSecond, 300);
  t.deepEqual(summarize(paired, 64), summarize(rows, 64));
  const lines = pairedTable([{ shape: 'x', work: 64, rows: paired }]);
  t.log(lines.join('\n'));
  t.is(lines.length, 3);
  t.is(lines[2], '| x | 8 | 0.90, 1.00 | 0.95× |');
});
