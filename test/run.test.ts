// `w2s run` end to end on tiny created models and 30 questions of the shared GSM8K splits: every step's
// artifacts and manifest exist, counts are consistent, an interrupted run resumes at the interrupted
// step, and a second run is a no-op.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../lib/pipeline/run/config.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import type { StepEvents } from '../lib/pipeline/run/steps.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, gsm8kDataYaml } from './helpers/shared-data.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
const quiet: StepEvents = { start() {}, progress() {}, end() {} };

async function writeConfig(name: string): Promise<string> {
  const weak = await tinyModel({ ctx: 1024, seed: 11 });
  const strong = await tinyModel({ ctx: 2048, embd: 96, heads: 4, kvHeads: 2, ff: 192, seed: 12 });
  const file = path.join(TMP, `${name}.yaml`);
  fs.writeFileSync(file, [
    `out: ${JSON.stringify(path.join(TMP, name))}`,
    `weak: { model: ${JSON.stringify(weak)} }`,
    `strong: { model: ${JSON.stringify(strong)} }`,
    ...gsm8kDataYaml({ train1: 30, train2: 30, test: 30 }),
    'generation: { maxTokens: 24, threads: 2 }',
    'train:',
    '  weak: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    '  strong: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    '  preference: { epochs: 1, batch: 4, maxLen: 256 }',
    // Random tiny models rarely produce an answer: keep questions where both answers are empty, so every
    // step has data (the paper's release kept such questions too).
    'stage1: { keepEmpty: true, iterations: 2 }',
    'stage2: { samples: 4, minConfidence: 0.5, rejectConfidence: 0.5 }',
    '',
  ].join('\n'));
  return file;
}

dataTest('w2s run: all steps, consistent counts, resume after an interruption, a second run is a no-op', async (t) => {
  const file = await writeConfig('run1');
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);

  // 1. Interrupt the run as the weak-ICL step starts: nothing of that step may remain.
  const controller = new AbortController();
  await t.throwsAsync(runMethod(cfg, { ...quiet, start: (name) => { if (name === '03-weak-icl') controller.abort(); } }, controller.signal), { name: 'AbortError' });
  t.true(fs.existsSync(path.join(cfg.out, '02-d-weak', 'manifest.json')));
  t.false(fs.existsSync(path.join(cfg.out, '03-weak-icl')));
  t.deepEqual(fs.readdirSync(cfg.out).filter((e) => e.startsWith('.tmp-')), []);

  // 2. The CLI finishes the run, reusing the first two steps.
  const first = spawnSync(process.execPath, [cli, 'run', file], { encoding: 'utf8' });
  t.is(first.status, 0, first.stderr);
  t.regex(first.stderr, /01-weak-sft \(unchanged, skipped\)/);
  t.regex(first.stderr, /02-d-weak \(unchanged, skipped\)/);
  t.regex(first.stderr, /✓ 03-weak-icl in/);
  const metrics = JSON.parse(fs.readFileSync(path.join(cfg.out, 'metrics.json'), 'utf8'));
  const steps = metrics.steps as { name: string; stats: Record<string, number> }[];
  const stat = (name: string) => steps.find((s) => s.name === name)!.stats;
  t.log(steps.map((s) => `${s.name}: ${JSON.stringify(s.stats).slice(0, 140)}`).join('\n'));

  // The run writes its report beside metrics.json.
  const report = JSON.parse(fs.readFileSync(path.join(cfg.out, 'report.json'), 'utf8'));
  t.deepEqual(report.accuracy, metrics.metrics.accuracy);
  t.true(Object.keys(report.losses).includes('01-weak-sft'));
  t.true(fs.readFileSync(path.join(cfg.out, 'report.html'), 'utf8').includes('<canvas id="losses">'));
  // Every step that ran a model or a trainer records its device (issue 12): here the CPU build on the CPU.
  const timing = (name: string) => (report.timings as { step: string; device?: string }[]).find((x) => x.step === name);
  t.is(timing('01-weak-sft')?.device, 'CPU');
  t.regex(timing('30-eval-weak')?.device ?? '', /^CPU \((cpu|cuda|vulkan) build\)$/);
  t.is(timing('04-select-1')?.device, undefined, 'a step without a model records none');
  // Every step folder has its manifest and the files it lists.
  for (const s of steps) {
    const m = JSON.parse(fs.readFileSync(path.join(cfg.out, s.name, 'manifest.json'), 'utf8'));
    for (const f of Object.keys(m.files)) t.true(fs.existsSync(path.join(cfg.out, s.name, f)), `${s.name}/${f}`);
  }
  // Iteration 2: strong models on the weak and the icl sets regenerate train_2, are reselected, and M_plus
  // is retrained from the base on the new hybrid set.
  for (const s of ['01-weak-sft', '05-strong-weak-1', '05-strong-icl-1', '08-strong-sft-2', '10-full-weak-ft', '11-ceiling']) {
    t.true(fs.existsSync(path.join(cfg.out, s, 'adapter.gguf')), s);
  }
  for (const s of ['06-gen-weak-1', '06-gen-icl-1']) t.is(stat(s).questions, 30);
  const sel2 = stat('07-select-2');
  t.is(stat('08-strong-sft-2').rows, 2 * sel2.kept);
  // Counts: 30 questions per generation; the selection keeps what its stats say, the hybrid set twice that.
  for (const s of ['02-d-weak', '03-weak-icl']) t.is(stat(s).questions, 30);
  const sel = stat('04-select-1');
  const readJson = (p: string) => JSON.parse(fs.readFileSync(path.join(cfg.out, p), 'utf8')) as unknown[];
  t.is(readJson('04-select-1/weak.json').length, sel.kept);
  t.is(readJson('04-select-1/hybrid.json').length, 2 * sel.kept);
  // SFT trains on every selected row, except those it skips and counts (prompt over maxLen, empty response).
  t.is(stat('05-strong-weak-1').rows, sel.kept);
  const sft = stat('05-strong-icl-1');
  t.is(sft.rows, sel.kept);
  t.is(sft.examples + sft.skippedPromptTooLong + sft.skippedEmptyResponse, sft.rows);
  t.true(sft.examples > 0);
  t.is(stat('20-stage2-sample').samples, 120);
  t.is(fs.readFileSync(path.join(cfg.out, '20-stage2-sample', 'samples.jsonl'), 'utf8').trim().split('\n').length, 120);
  t.is(readJson('21-pairs/pairs.json').length, stat('21-pairs').pairs);
  for (const e of ['weak', 'strongBase', 'fullWeakFt', 'stage1', 'ceiling']) t.is(typeof metrics.metrics.accuracy[e], 'number', e);

  // 3. A second run changes nothing.
  const before = fs.statSync(path.join(cfg.out, '08-strong-sft-2', 'adapter.gguf')).mtimeMs;
  const second = spawnSync(process.execPath, [cli, 'run', file], { encoding: 'utf8' });
  t.is(second.status, 0, second.stderr);
  t.notRegex(second.stderr, /▶/);
  t.regex(second.stderr, new RegExp(`${steps.length} steps \\(0 run, ${steps.length} skipped\\)`));
  t.is(fs.statSync(path.join(cfg.out, '08-strong-sft-2', 'adapter.gguf')).mtimeMs, before);

  // 4. Changing one step's options redoes that step and what depends on it, nothing upstream.
  fs.appendFileSync(file, 'eval: { k: 2 }\n');
  const third = spawnSync(process.execPath, [cli, 'run', file], { encoding: 'utf8' });
  t.is(third.status, 0, third.stderr);
  t.regex(third.stderr, /08-strong-sft-2 \(unchanged, skipped\)/);
  t.regex(third.stderr, /✓ 30-eval-stage1 in/);
});

test('config errors name the key and suggest the right one', (t) => {
  const base = 'out: r\nweak: {model: w.gguf}\nstrong: {model: s.gguf}\ndata: {train1: a, train2: b, test: c}\n';
  t.throws(() => parseConfig(`${base}stage2: {algoritm: dpo}\n`, 'c.yaml'), { message: 'c.yaml: unknown key "stage2.algoritm" (did you mean "algorithm"?)' });
  t.throws(() => parseConfig(`${base}stage3: {}\n`, 'c.yaml'), { message: /unknown key "stage3" \(did you mean "stage1"\?\)/ });
  t.throws(() => parseConfig(`${base}stage2: {samples: 0}\n`, 'c.yaml'), { message: /stage2\.samples/ });
  t.throws(() => parseConfig('{"out": 1}', 'c.json'), { message: /c\.json: out:/ });
  // The sampler's attention kernel: optional (absent keeps old step hashes), one of three when given.
  t.false('attention' in parseConfig(base, 'c.yaml').generation);
  t.is(parseConfig(`${base}generation: {attention: plain}\n`, 'c.yaml').generation.attention, 'plain');
  t.throws(() => parseConfig(`${base}generation: {attention: fast}\n`, 'c.yaml'), { message: /generation\.attention/ });
  const c = parseConfig(`${base}data: {format: math, train1: a, train2: b, test: c}\n`.replace(/data: \{train1: a, train2: b, test: c\}\n/, ''), '/x/c.yaml');
  t.is(c.key, 'The answer is:');
  t.is(c.out, '/x/r');
  t.is(c.stage2.minConfidence, 0.6);
  // Memory-only training keys: optional (absent keeps old step hashes), validated when given.
  t.false('checkpointing' in c.train.strong);
  const m = parseConfig(`${base}train: {strong: {checkpointing: 'on', memoryLimit: 8000000000}}\n`, 'c.yaml');
  t.is(m.train.strong.checkpointing, 'on');
  t.is(m.train.strong.memoryLimit, 8e9);
  t.throws(() => parseConfig(`${base}train: {strong: {checkpointing: sometimes}}\n`, 'c.yaml'), { message: /train\.strong\.checkpointing/ });
});
