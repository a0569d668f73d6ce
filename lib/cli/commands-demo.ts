// `w2s demo`: the embedded toy world end to end (lib/world/demo.ts), a summary table and the verdict on
// stdout, and the report opened in the desktop's browser when there is one. `--seeds 1,2,3` runs several
// worlds and prints the mean accuracy per stage (how the README's figures are measured); `--rebuild-world`
// pretrains the world's models here instead of using the shipped ones.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { STAGES, verdict } from '../report/report.js';
import { worldKey } from '../world/build.js';
import { runDemo, type DemoResult } from '../world/demo.js';
import { WORLD_PRESETS } from '../world/presets.js';
import { findShippedWorld, shippedWorldsDir } from '../world/shipped.js';
import { interruptSignal, intArg } from './args.js';
import { printStepEvents } from './step-events.js';

function parseSeeds(text: string): number[] {
  const seeds = text.split(',').map((s) => Number(s.trim()));
  if (seeds.length === 0 || seeds.some((s) => !Number.isSafeInteger(s) || s < 0)) throw InvalidArgumentError.expected('comma-separated non-negative integers', '--seeds', text);
  return seeds;
}

function table(results: DemoResult[]): string {
  const mean = (k: string) => results.reduce((a, r) => a + (r.accuracy[k] ?? NaN), 0) / results.length;
  const head = ['stage', ...results.map((r) => `seed ${r.seed}`), ...(results.length > 1 ? ['mean'] : [])];
  const rows = STAGES.filter(([k]) => results.every((r) => typeof r.accuracy[k] === 'number')).map(([k, label]) =>
    [label, ...results.map((r) => `${(100 * r.accuracy[k]!).toFixed(1)}%`), ...(results.length > 1 ? [`${(100 * mean(k)).toFixed(1)}%`] : [])]);
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const keys = STAGES.map(([k]) => k);
  const means = Object.fromEntries(keys.map((k) => [k, results.every((r) => typeof r.accuracy[k] === 'number') ? mean(k) : undefined]));
  // PGR of the means (as the README's table), not the mean of the PGRs.
  const gap = (k: string) => (means[k] !== undefined && means.weak !== undefined && means.ceiling !== undefined && means.ceiling !== means.weak
    ? (means[k]! - means.weak) / (means.ceiling - means.weak) : null);
  const perSeed = results.length > 1
    ? [`ordering in each seed: ${results.map((r) => `seed ${r.seed} ${verdict(r.accuracy, r.pgr).ordered ? 'held' : 'did NOT hold'}`).join(', ')}`] : [];
  const v = verdict(means, { stage1: gap('stage1'), stage2: gap('stage2') });
  return [line(head), ...rows.map(line), '', `${results.length > 1 ? 'Means: ' : ''}${v.text}`, ...perSeed].join('\n') + '\n';
}

/** Opens `file` with the desktop's opener, detached; silently does nothing where there is none. */
function openInBrowser(file: string): void {
  const [cmd, args] = process.platform === 'darwin' ? ['open', [file]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', file]] : ['xdg-open', [file]];
  try {
    const child = spawn(cmd as string, args as string[], { detached: true, stdio: 'ignore' });
    child.on('error', () => {});
    child.unref();
  } catch {
    // no opener: the path is printed anyway
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('build a toy weak-to-strong world (two tiny models pretrained here, no downloads), run the whole method on it and write a report')
    .option('--quick', 'a smaller world and shorter training: every step in a few minutes, no claim about accuracy')
    .option('--seed <n>', 'seed of the world and the run', '1')
    .option('--seeds <list>', 'several seeds, e.g. 1,2,3: one world each, then the mean accuracy per stage')
    .option('--out <dir>', 'output folder (models are cached here: a re-run reuses them)', 'w2s-demo')
    .option('--rebuild-world', 'pretrain the two world models here (~20 min per seed on 2 cores) instead of using the shipped ones; they must pass the same quality gate')
    .option('--save-world <dir>', 'with --rebuild-world: copy the rebuilt models and their manifest entry into <dir> (how the shipped worlds/ is made)')
    .option('--jobs <n>', 'method steps that run at once, one thread each (default: 2 on 2 or more cores)', intArg('--jobs', 1))
    .option('--open', 'open report.html in the browser (default: when run interactively on a desktop)')
    .option('--no-open', 'do not open the report')
    .action(async (o: { quick?: boolean; seed: string; seeds?: string; out: string; open?: boolean; rebuildWorld?: boolean; saveWorld?: string; jobs?: number }) => {
      const preset = o.quick ? 'quick' : 'full';
      const seeds = parseSeeds(o.seeds ?? o.seed);
      if (o.saveWorld !== undefined && !o.rebuildWorld) throw new InvalidArgumentError('--save-world needs --rebuild-world: only a world pretrained here is saved');
      const signal = interruptSignal();
      const results: DemoResult[] = [];
      for (const seed of seeds) {
        // A rebuilt world has a folder of its own: the default run keeps using the shipped one.
        const out = path.join(o.out, `${preset}-seed${seed}${o.rebuildWorld ? '-rebuilt' : ''}`);
        process.stderr.write(`weak2strong demo: ${preset} world, seed ${seed} -> ${out}\n`);
        const shipped = o.rebuildWorld ? undefined : findShippedWorld(shippedWorldsDir(), worldKey(WORLD_PRESETS[preset]), seed);
        process.stderr.write(shipped
          ? `models: shipped with the package (built ${shipped.build.builtAt.slice(0, 10)} on ${shipped.build.host.cpu}, ${shipped.build.threads ?? 'default'} thread(s); worlds/manifest.json); --rebuild-world pretrains them here\n`
          : `models: pretrained here${o.rebuildWorld ? '' : ` (no shipped world for seed ${seed})`}: ${preset === 'quick' ? 'a few minutes' : 'about 15–20 minutes on 2 cores'}\n`);
        const saveWorld = o.saveWorld === undefined ? undefined
          : { dir: path.resolve(o.saveWorld), command: `w2s demo${o.quick ? ' --quick' : ''} --rebuild-world --seed ${seed} --save-world ${o.saveWorld}` };
        const r = await runDemo({ out, preset, seed, jobs: o.jobs, rebuildWorld: o.rebuildWorld, saveWorld, events: printStepEvents(seeds.length > 1 ? `seed ${seed}: ` : ''), signal });
        process.stderr.write(`seed ${seed}: world ${r.seconds.world.toFixed(0)} s (models ${r.worldSource === 'shipped' ? 'shipped with the package; --rebuild-world pretrains them here' : 'pretrained here'}), ` +
          `method ${r.seconds.run.toFixed(0)} s; report: ${r.report.html}\n`);
        results.push(r);
      }
      process.stdout.write(table(results));
      if (seeds.length > 1) {
        const summary = path.join(o.out, `${preset}-seeds-${seeds.join('-')}.json`);
        fs.mkdirSync(o.out, { recursive: true });
        await writeFileAtomic(summary, JSON.stringify(results.map((r) => ({ seed: r.seed, accuracy: r.accuracy, pgr: r.pgr, seconds: r.seconds })), null, 2) + '\n');
        process.stderr.write(`summary: ${summary}\n`);
      }
      const interactive = process.stdout.isTTY && !process.env.CI && (process.platform !== 'linux' || Boolean(process.env.DISPLAY || process.env.WAYLAND_DISPLAY));
      if (o.open ?? interactive) openInBrowser(results.at(-1)!.report.html);
    });
}
