// `w2s score` (answer extraction and verdicts on a results file) and `w2s eval` (greedy accuracy, and
// pass@k / maj@k from k samples, of a model + adapter on a dataset).
import type { Command } from 'commander';
import { check, checkSymbolic } from '../data/answer.js';
import { DataFormatError } from '../data/errors.js';
import { formatPrompt, loadProblems, type DatasetFormat } from '../data/datasets.js';
import { toJsonl, writeFileAtomic } from '../io/atomic.js';
import { checkOutputPaths } from '../io/outputs.js';
import { modelInputs } from './commands-infer.js';
import { loadModel } from '../model.js';
import { generate } from '../pipeline/generate.js';
import { greedyAccuracy, majAtK, passAtK } from '../pipeline/metrics.js';
import { intArg, interruptSignal, readRows } from './args.js';
import { createProgress } from './progress.js';

export function registerEvalCommands(program: Command): void {
  program
    .command('score')
    .description('extract and normalize answers: rows {response, gold} get pred and result (paper-faithful by default)')
    .requiredOption('--in <file>', 'JSONL (or JSON array) rows with response and gold')
    .option('--key <key>', "answer key: '####' (GSM8K) or 'The answer is:' (MATH)", '####')
    .option('--symbolic', 'LaTeX-aware symbolic equivalence instead of string equality')
    .requiredOption('--out <file>', 'output JSONL')
    .action(async (o) => {
      await checkOutputPaths([{ name: '--out', path: o.out }], [{ name: '--in', path: o.in }]);
      const rows = await readRows(o.in);
      const out = [];
      let correct = 0;
      for (const { row, line } of rows) {
        if (typeof row.response !== 'string' || (typeof row.gold !== 'string' && typeof row.gold !== 'number')) {
          throw new DataFormatError('Expected string fields "response" and "gold"', { file: o.in, line });
        }
        const r = o.symbolic ? await checkSymbolic(row.response, String(row.gold), o.key) : check(row.response, String(row.gold), o.key);
        correct += r.correct ? 1 : 0;
        out.push({ ...row, pred: r.pred, result: r.correct });
      }
      await writeFileAtomic(o.out, toJsonl(out));
      process.stderr.write(`${correct}/${rows.length} correct (${((100 * correct) / Math.max(1, rows.length)).toFixed(1)}%) -> ${o.out}\n`);
    });

  program
    .command('eval')
    .description('greedy accuracy (and pass@k / maj@k with --k) of a model on a dataset')
    .requiredOption('--model <file>', 'GGUF model')
    .option('--lora <file>', 'GGUF LoRA adapter')
    .requiredOption('--data <file>', 'dataset file')
    .option('--format <format>', 'gsm8k | math | jsonl', 'gsm8k')
    .option('--key <key>', "answer key: '####' or 'The answer is:'", '####')
    .option('--k <k>', 'also draw k samples at T = 1 for pass@k and maj@k', intArg('--k', 1))
    .option('--max-tokens <n>', 'new tokens per answer', intArg('--max-tokens', 1), 1024)
    .option('--limit <n>', 'first N problems only', intArg('--limit', 1))
    .option('--seed <n>', 'sampling seed', intArg('--seed', 0), 0)
    .option('--threads <n>', 'CPU threads', intArg('--threads', 1))
    .option('--out <file>', 'write the greedy result records (JSONL)')
    .action(async (o) => {
      if (o.out) await checkOutputPaths([{ name: '--out', path: o.out }], modelInputs(o, { name: '--data', path: o.data }));
      const signal = interruptSignal();
      const problems = (await loadProblems(o.data, o.format as DatasetFormat)).slice(0, o.limit ?? Infinity);
      const prompts = problems.map((p) => formatPrompt(p.question));
      const model = await loadModel(o.model);
      try {
        const lora = o.lora ? await model.loadLora(o.lora) : undefined;
        const bar = createProgress('eval', problems.length * (1 + (o.k ?? 0)), 'answers');
        let base = 0;
        const onProgress = (p: { finished: number }) => bar.update(base + p.finished);
        const common = { key: o.key, maxTokens: o.maxTokens, threads: o.threads, lora, signal, onProgress };
        const greedy = (await generate(model, problems, prompts, prompts, common)).map((r) => r[0]!);
        base = problems.length;
        const metrics: Record<string, number> = { problems: problems.length, accuracy: greedyAccuracy(greedy.map((r) => r.result)) };
        if (o.k) {
          const sampled = await generate(model, problems, prompts, prompts, { ...common, n: o.k, temperature: 1, seed: o.seed });
          metrics[`pass@${o.k}`] = passAtK(sampled.map((s) => s.map((r) => r.result)), o.k);
          metrics[`maj@${o.k}`] = majAtK(sampled, o.k);
        }
        bar.stop();
        if (o.out) await writeFileAtomic(o.out, toJsonl(greedy));
        process.stdout.write(JSON.stringify(metrics) + '\n');
      } finally {
        model.dispose();
      }
    });
}
