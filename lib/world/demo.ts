// The embedded demo: build the toy world (splits + two pretrained models, cached in <out>/world), run the
// whole method on it with the real steps (<out>/run, config saved as <out>/run.json so `w2s run` can
// re-run it) and write report.json / report.html in <out>.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { parseConfig } from '../pipeline/run/config.js';
import { runMethod } from '../pipeline/run/method.js';
import type { StepEvents } from '../pipeline/run/steps.js';
import { collectReport, writeReport } from '../report/report.js';
import { InvalidArgumentError } from '../errors.js';
import { buildWorld } from './build.js';
import { WORLD_PRESETS, type WorldSpec } from './presets.js';

export interface DemoOptions {
  /** Output folder (world cache, run folder, report). */
  out: string;
  /** `full` (default) or `quick`, or a complete spec. */
  preset?: 'full' | 'quick' | WorldSpec;
  /** Seeds the world (problems, model initialisation, pretraining) and every seeded step of the run. */
  seed?: number;
  events: StepEvents;
  signal?: AbortSignal;
}

export interface DemoResult {
  out: string;
  seed: number;
  accuracy: Record<string, number>;
  pgr: Record<string, number | null>;
  report: { json: string; html: string };
  seconds: { world: number; run: number; total: number };
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const seed = o.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 1e6) throw InvalidArgumentError.expected('integer in 0 … 1000000', 'seed', seed);
  const presetName = typeof o.preset === 'string' ? o.preset : o.preset ? 'custom' : 'full';
  const spec = typeof o.preset === 'object' ? o.preset : WORLD_PRESETS[o.preset ?? 'full'];
  if (!spec) throw InvalidArgumentError.expected('"full", "quick" or a world spec', 'preset', o.preset);
  const out = path.resolve(o.out);
  const began = performance.now();
  const world = await buildWorld(path.join(out, 'world'), spec, seed, o.events, o.signal);
  const worldSeconds = (performance.now() - began) / 1000;

  // The run config as a user would write it; paths relative to it.
  const rel = (p: string) => path.relative(out, p);
  const config = {
    out: 'run',
    weak: { model: rel(world.weakModel) },
    strong: { model: rel(world.strongModel) },
    data: { train1: rel(world.data.train1), train2: rel(world.data.train2), test: rel(world.data.test) },
    ...spec.run,
    prompt: { demos: { strategy: 'random', seed } },
    stage2: { ...(spec.run.stage2 as object | undefined), seed },
  };
  const configFile = path.join(out, 'run.json');
  await writeFileAtomic(configFile, JSON.stringify(config, null, 2) + '\n');
  const cfg = parseConfig(fs.readFileSync(configFile, 'utf8'), configFile);
  const result = await runMethod(cfg, o.events, o.signal);
  const total = (performance.now() - began) / 1000;

  const report = collectReport(result.out, `weak2strong demo (${presetName} world, seed ${seed})`, {
    seed, preset: presetName, problems: spec.problems, splits: spec.splits, weakModel: spec.weak, strongModel: spec.strong,
    pretraining: Object.fromEntries(world.steps.map((s) => [s.manifest.step, s.manifest.stats])),
  });
  report.timings = [...world.steps.map((s) => ({ step: `world/${s.manifest.step}`, seconds: s.manifest.seconds, skipped: s.skipped })), ...report.timings];
  const files = await writeReport(out, report);
  const metrics = result.metrics as { accuracy: Record<string, number>; pgr: Record<string, number | null> };
  return { out, seed, accuracy: metrics.accuracy, pgr: metrics.pgr, report: files, seconds: { world: worldSeconds, run: total - worldSeconds, total } };
}
