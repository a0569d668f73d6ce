// Builds the toy world in a run folder: the three splits as GSM8K JSONL files, the weak and the strong
// model, and the quality gate. Each model is either copied from the package's shipped worlds (worlds/,
// hashes checked against its manifest) or pretrained here from a random initialisation with the project's
// own trainer (LoRA of a high rank on the random base, merged into its weights). Every piece is a step with a
// manifest, so a second build with the same spec and seed reuses the models (the cache), and a crash
// mid-step leaves nothing a later build would trust.
import fs from 'node:fs';
import path from 'node:path';
import { W2sError } from '../errors.js';
import { mergeAdapterFile } from '../lora/merge.js';
import { createModel } from '../model/create.js';
import { RunFolder, sha256, type StepContext, type StepEvents, type StepOutcome } from '../pipeline/run/steps.js';
import { ALL_LORA_TARGETS } from '../train/options.js';
import { trainSft } from '../train/sft.js';
import { strongCorpus, weakCorpus, type CorpusDoc } from './corpus.js';
import { GATE_MEASURES, gateFailures, measureWorld, type GateFigures } from './gate.js';
import { generateProblemsExcluding, generateSplits, type WorldProblem } from './problems.js';
import type { WorldModelSpec, WorldSpec } from './presets.js';
import { findShippedWorld, shippedWorldsDir, verifiedShippedFile, type ShippedFile, type ShippedWorld } from './shipped.js';

/** Bumped when the world's text or pretraining changes meaning, so cached models are not reused. */
const WORLD_FORMAT = 4; // 2: pretraining also adapts the output head; 3: WorldSpec.spacedShare; 4: models stored as Q8_0

/** What the two models depend on: a shipped world is used only when its key equals the preset's. */
export function worldKey(spec: WorldSpec): string {
  return sha256(JSON.stringify({ WORLD_FORMAT, problems: spec.problems, weak: spec.weak, strong: spec.strong, splits: spec.splits, ...spacingKey(spec) }));
}

/** WorldSpec.spacedShare's default. */
const SPACED_SHARE = 0.5;
/** The spacing as a key of the model steps' inputs: absent at the default (format 3's first worlds had no key). */
const spacingKey = (spec: WorldSpec) => ((spec.spacedShare ?? SPACED_SHARE) === SPACED_SHARE ? {} : { spacedShare: spec.spacedShare });

export interface BuildWorldOptions {
  /**
   * `shipped` (default): copy the models of the package's shipped world for this spec and seed when there is
   * one (else pretrain them); `rebuild`: always pretrain them here.
   */
  source?: 'shipped' | 'rebuild';
  /** Folder of shipped worlds. Defaults to the package's worlds/. */
  shippedDir?: string;
  /**
   * Measure the gate on copied shipped models too. Defaults to false: their figures are the ones recorded
   * when they were built (the hashes say they are the same bytes), which saves the measurement's time.
   */
  measureShipped?: boolean;
}

export interface World {
  dir: string;
  weakModel: string;
  strongModel: string;
  data: { train1: string; train2: string; test: string };
  steps: StepOutcome[];
  /** The shipped world the models were copied from, or undefined when they were pretrained here. */
  shipped?: ShippedWorld;
  /** The quality gate's figures (they passed, or buildWorld threw): measured here, or recorded at build for shipped models. */
  gate: GateFigures;
  /** Whether `gate` was measured on this machine. */
  gateMeasuredHere: boolean;
}

const toJsonl = (ps: readonly WorldProblem[]) => ps.map((p) => JSON.stringify({ id: p.id, question: p.question, answer: p.answer })).join('\n') + '\n';

async function pretrain(ctx: StepContext, m: WorldModelSpec, seed: number, corpus: CorpusDoc[], threads?: number): Promise<Record<string, unknown>> {
  const base = path.join(ctx.dir, 'random.gguf');
  const adapter = path.join(ctx.dir, 'pretrain-adapter.gguf');
  await createModel({ arch: 'llama', layers: m.layers, embd: m.embd, heads: m.heads, kvHeads: m.kvHeads, ff: m.ff, ctx: 1024, type: 'f32', seed, out: base });
  const r = await trainSft({
    // The head too: a random, frozen head leaves probability on the ~1,000 pieces the world never uses, and
    // samples at temperature 1 drift into them (docs/demo.md).
    model: base, out: adapter, data: corpus, targets: ALL_LORA_TARGETS, rank: m.rank, alpha: m.rank, epochs: m.epochs, batch: m.batch, lr: m.lr,
    seed, maxLen: 1024, warmupRatio: 0.02, threads, signal: ctx.signal,
    onProgress: (p) => ctx.progress(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
  });
  // Stored as Q8_0: the shipped worlds stay small (the full strong model is 4.2 MB in F32, 1.2 MB in Q8_0), and
  // the method then trains on a quantized base as most users' models are. Pretraining itself ran in F32.
  await mergeAdapterFile(base, adapter, path.join(ctx.dir, 'model.gguf'), { store: 'q8_0' });
  // Keep the merged model and the loss log; the random base, adapter and resume checkpoint are scaffolding.
  fs.renameSync(r.log, path.join(ctx.dir, 'pretrain.log.json'));
  for (const f of [base, adapter, r.checkpoint]) fs.rmSync(f, { force: true });
  return { documents: corpus.length, steps: r.steps, firstLoss: r.history[0]?.loss, lastLoss: r.history.at(-1)?.loss, params: r.trainer.nParams };
}

/** Copies a shipped model into the step after checking it against the manifest; its stats are the build's. */
function copyShipped(ctx: StepContext, dir: string, f: ShippedFile, stats: Record<string, unknown>): Record<string, unknown> {
  fs.copyFileSync(verifiedShippedFile(dir, f), path.join(ctx.dir, 'model.gguf'));
  return { ...stats, shipped: f.path };
}

export async function buildWorld(dir: string, spec: WorldSpec, seed: number, events: StepEvents, signal?: AbortSignal, o: BuildWorldOptions = {}): Promise<World> {
  const folder = new RunFolder(dir, events, signal);
  const shippedDir = o.shippedDir ?? shippedWorldsDir();
  const shipped = o.source === 'rebuild' ? undefined : findShippedWorld(shippedDir, worldKey(spec), seed);
  const splits = generateSplits(spec.splits, seed * 1000 + 1, spec.problems);
  const data = await folder.run({
    name: '00-data', inputs: { WORLD_FORMAT, seed, problems: spec.problems, splits: spec.splits },
    async run(ctx) {
      for (const [name, ps] of Object.entries(splits)) fs.writeFileSync(path.join(ctx.dir, `${name}.jsonl`), toJsonl(ps));
      return { ...spec.splits };
    },
  });
  // Pretraining never sees a question of the splits (the method's data stays unseen, as in the paper).
  const inSplits = new Set(Object.values(splits).flat().map((p) => p.question));
  const corpusProblems = (n: number, s: number) => generateProblemsExcluding(n, s, spec.problems, inSplits);
  // Inputs of a pretrained model are those of before shipping (a cached pretrained world stays valid); a copied
  // one also names the shipped file's hash.
  const modelInputs = (m: WorldModelSpec, f: ShippedFile | undefined) => ({
    WORLD_FORMAT, seed, problems: spec.problems, model: m, ...spacingKey(spec), data: data.manifest.files, ...(f ? { shipped: f.sha256 } : {}),
  });
  const weak = await folder.run({
    name: '01-weak-model', inputs: modelInputs(spec.weak, shipped?.files.weak),
    run: (ctx) => shipped
      ? Promise.resolve(copyShipped(ctx, shippedDir, shipped.files.weak, shipped.stats.weak))
      : pretrain(ctx, spec.weak, seed * 1000 + 2, weakCorpus(corpusProblems(spec.weak.corpus, seed * 1000 + 3), { spacedShare: spec.spacedShare ?? SPACED_SHARE, seed: seed * 1000 + 8 }), spec.threads),
  });
  const strongProblems = () => corpusProblems(spec.strong.corpus, seed * 1000 + 5);
  const strong = await folder.run({
    name: '02-strong-model', inputs: modelInputs(spec.strong, shipped?.files.strong),
    run: (ctx) => shipped
      ? Promise.resolve(copyShipped(ctx, shippedDir, shipped.files.strong, shipped.stats.strong))
      : pretrain(ctx, spec.strong, seed * 1000 + 4, strongCorpus(strongProblems(), {
        fewShotFraction: spec.strong.fewShotFraction, maxShots: spec.strong.maxShots, seed: seed * 1000 + 6, spacedShare: spec.spacedShare ?? SPACED_SHARE,
      }), spec.threads),
  });

  // The gate: held-out problems that neither the splits nor the pretraining corpora contain.
  const recorded = shipped && !o.measureShipped;
  const gate = await folder.run({
    name: '03-gate', inputs: {
      WORLD_FORMAT, seed, weak: weak.hash('model.gguf'), strong: strong.hash('model.gguf'), questions: spec.gate.questions, maxTokens: spec.gate.maxTokens,
      ...(recorded ? { recorded: true } : {}),
    },
    async run(ctx) {
      if (recorded) return { ...shipped.gate, recorded: 'at build time (worlds/manifest.json)' };
      const seen = new Set([...inSplits, ...corpusProblems(spec.weak.corpus, seed * 1000 + 3).map((p) => p.question), ...strongProblems().map((p) => p.question)]);
      const problems: WorldProblem[] = generateProblemsExcluding(spec.gate.questions + 4, seed * 1000 + 7, spec.problems, seen);
      const figures = await measureWorld(weak.file('model.gguf'), strong.file('model.gguf'), problems, spec.gate, {
        threads: spec.threads, signal: ctx.signal, onProgress: (d, t) => ctx.progress(d, t),
      });
      return { ...figures };
    },
  });
  const figures = Object.fromEntries(Object.keys(GATE_MEASURES).map((k) => [k, gate.manifest.stats[k]])) as GateFigures;
  // Checked outside the step, so a cached measurement is checked against the bands of today's preset.
  const failures = gateFailures(figures, spec.gate);
  if (failures.length > 0) {
    throw new W2sError('ERR_W2S_WORLD_GATE', `The world in ${dir} fails its quality gate (${path.join(gate.dir, 'manifest.json')}):\n  ${failures.join('\n  ')}\n` +
      (shipped ? 'These are the shipped models: the package may be damaged.' : 'Pretraining on this machine produced other models than the preset expects; the method\'s results would not mean what the README says.'));
  }
  return {
    dir, weakModel: weak.file('model.gguf'), strongModel: strong.file('model.gguf'),
    data: { train1: data.file('train1.jsonl'), train2: data.file('train2.jsonl'), test: data.file('test.jsonl') },
    steps: folder.steps, shipped, gate: figures, gateMeasuredHere: !gate.manifest.stats.recorded,
  };
}
