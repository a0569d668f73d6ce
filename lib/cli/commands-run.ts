// `w2s run CONFIG`: the whole method from one config file, with a live view of the current step
// (step-events.ts). Completed steps whose inputs are unchanged are skipped.
import type { Command } from 'commander';
import { readConfig } from '../pipeline/run/config.js';
import { collectReport, writeReport } from '../report/report.js';
import { runMethod } from '../pipeline/run/method.js';
import { interruptSignal, intArg } from './args.js';
import { printStepEvents } from './step-events.js';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run the weak-to-strong method end to end from a JSON or YAML config (see docs/run-config.md)')
    .argument('<config>', 'config file (.json, .yaml or .yml)')
    .option('--jobs <n>', 'steps that may run at once (overrides the config\'s `jobs`; each holds its own model in memory)', intArg('--jobs', 1))
    .action(async (file: string, o: { jobs?: number }) => {
      const cfg = { ...readConfig(file), ...(o.jobs !== undefined ? { jobs: o.jobs } : {}) };
      const signal = interruptSignal();
      const started = Date.now();
      const result = await runMethod(cfg, printStepEvents(), signal);
      const ran = result.steps.filter((s) => !s.skipped).length;
      process.stderr.write(`${result.steps.length} steps (${ran} run, ${result.steps.length - ran} skipped) in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${result.out}/metrics.json\n`);
      const report = await writeReport(result.out, collectReport(result.out, `weak2strong run: ${file}`));
      process.stderr.write(`report: ${report.html}\n`);
      process.stdout.write(JSON.stringify(result.metrics.accuracy) + '\n');
    });

  program
    .command('report')
    .description('write report.json and a self-contained report.html (charts) for a finished run folder')
    .argument('<run-folder>', 'the `out` folder of a w2s run')
    .option('--title <text>', 'page title')
    .action(async (dir: string, o: { title?: string }) => {
      const report = await writeReport(dir, collectReport(dir, o.title ?? `weak2strong run: ${dir}`));
      process.stderr.write(`${report.json}\n${report.html}\n`);
    });
}
