// The embedded demo: build the toy world (splits + two pretrained models, shipped or rebuilt, and the
// quality gate; cached in <out>/world), run the whole method on it with the real steps (<out>/run, config
// saved as <out>/run.json so `w2s run` can re-run it) and write report.json / report.html in <out>.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { parseConfig } from '../pipeline/run/config.js';
import { runMethod } from '../pipeline/run/method.js';
import type { StepEvents } from '../pipeline/run/steps.js';
import { collectReport, writeReport } from '../report/report.js';
import { InvalidArgumentError } from '../errors.js';
import { buildWorld, worldKey } from './build.js';
import { GATE_MEASURES } from './gate.js';
import { WORLD_PRESETS, type WorldSpec } from './presets.js';
import { saveWorld } from './shipped.js';

export interface DemoOptions {
  /** Output folder (world cache, run folder, report). */
  out: string;
  /** `full` (default) or `quick`, or a complete spec. */
  preset?: 'full' | 'quick' | WorldSpec;
  /** Seeds the world (problems, model initialisation, pretraining) and every seeded step of the run. */
  seed?: number;
  /**
   * Method steps that run at once (the run config's `jobs`). Defaults to 2 on a machine with 2 or more
   * cores, else 1: the preset's steps use one thread each, so two overlap on two cores.
   */
  jobs?: number;
  /** Pretrain the two models here instead of copying the shipped ones (the gate applies either way). */
  rebuildWorld?: boolean;
  /** Folder of shipped worlds. Defaults to the package's worlds/. */
  shippedDir?: string;
  /** After the gate passes, copy the world's models and a manifest entry into this folder (how worlds/ is made). */
  saveWorld?: { dir: string; command: string };
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
  /** Where the world's models came from: the package's shipped world, or pretraining on this machine. */
  worldSource: 'shipped' | 'trained';
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const seed = o.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 1e6) throw InvalidArgumentError.expected('integer in 0 … 1000000', 'seed', seed);
  const presetName = typeof o.preset === 'string' ? o.preset : o.preset ? 'custom' : 'full';
  const spec = typeof o.preset === 'object' ? o.preset : WORLD_PRESETS[o.preset ?? 'full'];
  if (!spec) throw InvalidArgumentError.expected('"full", "quick" or a world spec', 'preset', o.preset);
  const out = path.resolve(o.out);
  const began = performance.now();
  const world = await buildWorld(path.join(out, 'world'), spec, seed, o.events, o.signal, { source: o.rebuildWorld ? 'rebuild' : 'shipped', shippedDir: o.shippedDir });
  const worldSeconds = (performance.now() - began) / 1000;
  const modelStep = (name: string) => world.steps.find((s) => s.manifest.step === name)!.manifest;
  if (o.saveWorld) {
    if (world.shipped) throw new InvalidArgumentError('saveWorld needs a world pretrained here (rebuildWorld), not a copy of the shipped one');
    await saveWorld(o.saveWorld.dir, {
      preset: presetName, seed, worldKey: worldKey(spec), weakModel: world.weakModel, strongModel: world.strongModel, command: o.saveWorld.command,
      threads: spec.threads ?? null, seconds: { weak: modelStep('01-weak-model').seconds, strong: modelStep('02-strong-model').seconds },
      stats: { weak: modelStep('01-weak-model').stats, strong: modelStep('02-strong-model').stats }, gate: world.gate,
    });
  }

  // The run config as a user would write it; paths relative to it.
  const rel = (p: string) => path.relative(out, p);
  const config = {
    out: 'run',
    weak: { model: rel(world.weakModel) },
    strong: { model: rel(world.strongModel) },
    data: { train1: rel(world.data.train1), train2: rel(world.data.train2), test: rel(world.data.test) },
    ...spec.run,
    jobs: o.jobs ?? Math.min(2, os.availableParallelism()),
    // The world's thread count is the method's too (generation.threads is also the trainers').
    ...(spec.threads !== undefined ? { generation: { ...(spec.run.generation as object | undefined), threads: spec.threads } } : {}),
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
    models: world.shipped
      ? { source: 'shipped with the package (worlds/manifest.json)', ...world.shipped.build, files: world.shipped.files }
      : { source: 'pretrained on this machine', threads: spec.threads ?? 'default' },
    pretraining: { weak: modelStep('01-weak-model').stats, strong: modelStep('02-strong-model').stats },
    gate: Object.fromEntries((Object.keys(GATE_MEASURES) as (keyof typeof GATE_MEASURES)[]).map((k) => [k, {
      measure: GATE_MEASURES[k], value: world.gate[k], band: spec.gate.bands[k],
    }])),
    gateMeasured: world.gateMeasuredHere ? `here, on ${spec.gate.questions} held-out questions` : 'when the shipped models were built (same bytes: sha256 checked)',
  });
  report.timings = [...world.steps.map((s) => ({ step: `world/${s.manifest.step}`, seconds: s.manifest.seconds, skipped: s.skipped })), ...report.timings];
  const files = await writeReport(out, report);
  const metrics = result.metrics as { accuracy: Record<string, number>; pgr: Record<string, number | null> };
  return {
    out, seed, accuracy: metrics.accuracy, pgr: metrics.pgr, report: files, seconds: { world: worldSeconds, run: total - worldSeconds, total },
    worldSource: world.shipped ? 'shipped' : 'trained',
  };
}
