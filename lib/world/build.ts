// Builds the toy world in a run folder: the three splits as GSM8K JSONL files, then the weak and the strong
// model, each pretrained from a random initialisation with the project's own trainer (LoRA of a high rank
// on the random base, merged into its weights). Every piece is a step with a manifest, so a second build
// with the same spec and seed reuses the models instead of training them again (the cache), and a crash
// mid-step leaves nothing a later build would trust.
import fs from 'node:fs';
import path from 'node:path';
import { mergeAdapterFile } from '../lora/merge.js';
import { createModel } from '../model/create.js';
import { RunFolder, type StepContext, type StepEvents, type StepOutcome } from '../pipeline/run/steps.js';
import { ALL_LORA_TARGETS } from '../train/options.js';
import { trainSft } from '../train/sft.js';
import { strongCorpus, weakCorpus, type CorpusDoc } from './corpus.js';
import { generateProblemsExcluding, generateSplits, type WorldProblem } from './problems.js';
import type { WorldModelSpec, WorldSpec } from './presets.js';

/** Bumped when the world's text or pretraining changes meaning, so cached models are not reused. */
const WORLD_FORMAT = 2; // 2: pretraining also adapts the output head

export interface World {
  dir: string;
  weakModel: string;
  strongModel: string;
  data: { train1: string; train2: string; test: string };
  steps: StepOutcome[];
}

const toJsonl = (ps: readonly WorldProblem[]) => ps.map((p) => JSON.stringify({ id: p.id, question: p.question, answer: p.answer })).join('\n') + '\n';

async function pretrain(ctx: StepContext, m: WorldModelSpec, seed: number, corpus: CorpusDoc[]): Promise<Record<string, unknown>> {
  const base = path.join(ctx.dir, 'random.gguf');
  const adapter = path.join(ctx.dir, 'pretrain-adapter.gguf');
  await createModel({ arch: 'llama', layers: m.layers, embd: m.embd, heads: m.heads, kvHeads: m.kvHeads, ff: m.ff, ctx: 1024, type: 'f32', seed, out: base });
  const r = await trainSft({
    // The head too: a random, frozen head leaves probability on the ~1,000 pieces the world never uses, and
    // samples at temperature 1 drift into them (docs/demo.md).
    model: base, out: adapter, data: corpus, targets: ALL_LORA_TARGETS, rank: m.rank, alpha: m.rank, epochs: m.epochs, batch: m.batch, lr: m.lr,
    seed, maxLen: 1024, warmupRatio: 0.02, signal: ctx.signal,
    onProgress: (p) => ctx.progress(p.step, p.totalSteps, `loss ${p.loss.toFixed(3)}`),
  });
  await mergeAdapterFile(base, adapter, path.join(ctx.dir, 'model.gguf'));
  // Keep the merged model and the loss log; the random base, adapter and resume checkpoint are scaffolding.
  fs.renameSync(r.log, path.join(ctx.dir, 'pretrain.log.json'));
  for (const f of [base, adapter, r.checkpoint]) fs.rmSync(f, { force: true });
  return { documents: corpus.length, steps: r.steps, firstLoss: r.history[0]?.loss, lastLoss: r.history.at(-1)?.loss, params: r.trainer.nParams };
}

export async function buildWorld(dir: string, spec: WorldSpec, seed: number, events: StepEvents, signal?: AbortSignal): Promise<World> {
  const folder = new RunFolder(dir, events, signal);
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
  const weak = await folder.run({
    name: '01-weak-model', inputs: { WORLD_FORMAT, seed, problems: spec.problems, model: spec.weak, data: data.manifest.files },
    run: (ctx) => pretrain(ctx, spec.weak, seed * 1000 + 2, weakCorpus(corpusProblems(spec.weak.corpus, seed * 1000 + 3))),
  });
  const strong = await folder.run({
    name: '02-strong-model', inputs: { WORLD_FORMAT, seed, problems: spec.problems, model: spec.strong, data: data.manifest.files },
    run: (ctx) => pretrain(ctx, spec.strong, seed * 1000 + 4, strongCorpus(corpusProblems(spec.strong.corpus, seed * 1000 + 5), {
      fewShotFraction: spec.strong.fewShotFraction, maxShots: spec.strong.maxShots, seed: seed * 1000 + 6,
    })),
  });
  return {
    dir, weakModel: weak.file('model.gguf'), strongModel: strong.file('model.gguf'),
    data: { train1: data.file('train1.jsonl'), train2: data.file('train2.jsonl'), test: data.file('test.jsonl') },
    steps: folder.steps,
  };
}
