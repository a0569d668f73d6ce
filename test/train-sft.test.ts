// trainSft end to end: the loss falls, the adapter works in llama.cpp and node-llama-cpp, frozen base
// types, resume, damaged checkpoints, divergence and cancellation.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../lib/model.js';
import { epochOrder, makeBatch } from '../lib/train/batches.js';
import { addon } from '../lib/native.js';
import { trainSft } from '../lib/train/sft.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { convertMatricesToBf16, poisonTokenEmbedding } from './helpers/convert.js';
import { TMP, tinyModel } from './helpers/models.js';
import { referenceLogprobs } from './helpers/nlc.js';

const DATA = Array.from({ length: 12 }, (_, i) => ({
  prompt: `Question: What is ${i} + ${i + 3}?\nAnswer:`,
  response: ` ${i} + ${i + 3} = ${2 * i + 3}. #### ${2 * i + 3}`,
}));
const out = (name: string) => path.join(TMP, name);
const BASE = { data: DATA, batch: 4, lr: 5e-3, seed: 1, threads: 2, warmupRatio: 0 } as const;

test('training on a small fixed set halves the loss; llama.cpp and node-llama-cpp see the same adapter', async (t) => {
  const model = await tinyModel();
  const r = await trainSft({ ...BASE, model, out: out('halve.gguf'), epochs: 10 });
  const first = r.history[0]!.loss;
  const last = r.history.at(-1)!.loss;
  t.log(`${r.steps} steps: loss ${first.toFixed(3)} -> ${last.toFixed(3)}; ${r.trainer.nParams} LoRA parameters on ${r.trainer.backend}`);
  t.true(last < first / 2);
  t.true(fs.existsSync(r.log) && JSON.parse(fs.readFileSync(r.log, 'utf8')).history.length === r.steps);

  const m = await loadModel(model);
  const lora = await m.loadLora(r.adapter);
  const item = { prompt: DATA[2]!.prompt, completion: DATA[2]!.response };
  const [base] = await m.score([item]);
  const [ours] = await m.score([item], { lora });
  const { tokens } = m.tokenizePair(item.prompt, item.completion);
  const ref = await referenceLogprobs(model, tokens, base!.promptTokens, r.adapter);
  const maxDiff = ref.reduce((a, x, i) => Math.max(a, Math.abs(x - ours!.logprobs[i]!)), 0);
  t.log(`adapter moved the completion log-prob ${base!.sum.toFixed(3)} -> ${ours!.sum.toFixed(3)}; node-llama-cpp max diff ${maxDiff.toExponential(2)}`);
  t.true(ours!.sum > base!.sum + 1);
  t.true(maxDiff < 1e-4);
  m.dispose();
});

for (const type of ['f16', 'q8_0', 'q4_0'] as const) {
  test(`a ${type} frozen base trains`, async (t) => {
    const model = await tinyModel({ type });
    const r = await trainSft({ ...BASE, model, out: out(`type-${type}.gguf`), epochs: 4 });
    t.log(`${type}: loss ${r.history[0]!.loss.toFixed(3)} -> ${r.history.at(-1)!.loss.toFixed(3)}`);
    t.true(r.history.at(-1)!.loss < r.history[0]!.loss * 0.9);
  });
}

test('a BF16 base trains through the MUL_MAT input gradients; the autodiff reference mode (OUT_PROD has no BF16 kernel) refuses it', async (t) => {
  const bf16 = out('bf16.gguf');
  await convertMatricesToBf16(await tinyModel(), bf16);
  const r = await trainSft({ ...BASE, model: bf16, out: out('bf16-out.gguf'), epochs: 4 });
  t.log(`bf16: loss ${r.history[0]!.loss.toFixed(3)} -> ${r.history.at(-1)!.loss.toFixed(3)}`);
  t.true(r.history.at(-1)!.loss < r.history[0]!.loss * 0.9);
  // The training graph's base log-probs equal llama.cpp's on the BF16 file.
  const m = await loadModel(bf16);
  const item = { prompt: DATA[1]!.prompt, completion: DATA[1]!.response };
  const [scored] = await m.score([item]);
  const tr = await addon().createTrainer(bf16, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 1, threads: 1 });
  const ours = await tr.logprobs({ ...makeBatch([m.tokenizePair(item.prompt, item.completion)], 0), useLora: false });
  const diff = ours.reduce((a, x, i) => Math.max(a, Math.abs(x - scored!.logprobs[i]!)), 0);
  t.log(`bf16 base: max |train graph - llama.cpp| = ${diff.toExponential(2)} over ${ours.length} tokens`);
  t.true(diff < 1e-4);
  tr.dispose();
  m.dispose();
  const e = await t.throwsAsync(addon().createTrainer(bf16, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 1, threads: 1, frozenGrad: 'out_prod' }));
  t.regex(e!.message, /bf16 cannot be trained/i);
});

test('a resumed run continues exactly where the interrupted one stopped', async (t) => {
  const model = await tinyModel();
  const common = { ...BASE, model, epochs: 3, threads: 1, checkpointEvery: 2 };
  const full = await trainSft({ ...common, out: out('full.gguf') });
  const part = await trainSft({ ...common, out: out('part.gguf'), maxSteps: 4 });
  t.is(part.steps, 4);
  const resumed = await trainSft({ ...common, out: out('resumed.gguf'), resume: part.checkpoint });
  const tail = resumed.history.slice(4).map((h) => h.loss);
  const ref = full.history.slice(4).map((h) => h.loss);
  t.is(tail.length, full.steps - 4);
  const maxDiff = tail.reduce((a, x, i) => Math.max(a, Math.abs(x - ref[i]!)), 0);
  t.log(`steps 5..${full.steps}: max |resumed - uninterrupted| loss = ${maxDiff}`);
  t.deepEqual(tail, ref); // bitwise on CPU with one thread
  t.deepEqual(fs.readFileSync(resumed.adapter), fs.readFileSync(full.adapter));
});

test('a checkpoint cut short, or from another run, is refused', async (t) => {
  const model = await tinyModel();
  const r = await trainSft({ ...BASE, model, out: out('ck.gguf'), epochs: 1 });
  const bytes = fs.readFileSync(r.checkpoint);
  const cut = out('cut.ckpt');
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.8)));
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('ck2.gguf'), epochs: 1, resume: cut }), { code: 'ERR_W2S_CHECKPOINT' });
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('ck3.gguf'), epochs: 1, lr: 1e-3, resume: r.checkpoint }), { code: 'ERR_W2S_CHECKPOINT', message: /another run/ });
  t.false(fs.existsSync(out('ck2.gguf')) || fs.existsSync(out('ck3.gguf')));
});

test('a non-finite loss stops training with TrainingDivergedError and keeps the last good checkpoint', async (t) => {
  // One example uses a token whose embedding overflows: the step that meets it has an infinite loss.
  const clean = await tinyModel();
  const m = await loadModel(clean);
  const common = new Set(DATA.flatMap((d) => [...m.tokenize(d.prompt, { addSpecial: true }), ...m.tokenize(d.response)]));
  const [poisonId] = m.tokenize('ξ').filter((id) => !common.has(id));
  m.dispose();
  const model = out('poisoned.gguf');
  await poisonTokenEmbedding(clean, model, poisonId!);
  const data = [...DATA.slice(0, 6), { prompt: 'Question: ξ?\nAnswer:', response: ' ξ' }];
  // A seed whose order puts the poisoned example (index 6) third: steps 1 and 2 are good.
  const seed = [...Array(100).keys()].find((sd) => epochOrder(data.length, sd, 0).indexOf(6) === 2)!;
  const o = { ...BASE, model, data, batch: 1, out: out('nan.gguf'), epochs: 1, checkpointEvery: 1, seed };
  const e = await t.throwsAsync(trainSft(o), { code: 'ERR_W2S_TRAIN_NONFINITE' });
  t.log(e!.message);
  t.regex(e!.message, /loss at step 3 is NaN/);
  t.false(fs.existsSync(o.out));
  const ck = await readGgufMetadata(`${o.out}.ckpt`);
  t.is(Number(ck.values.get('w2s.checkpoint.step')), 2);
});

test('an AbortSignal stops training within a step', async (t) => {
  const model = await tinyModel();
  const controller = new AbortController();
  const seen: number[] = [];
  await t.throwsAsync(trainSft({
    ...BASE, model, out: out('abort.gguf'), epochs: 50, signal: controller.signal,
    onProgress: (p) => { seen.push(p.step); if (p.step === 3) controller.abort(); },
  }), { name: 'AbortError' });
  t.deepEqual(seen, [1, 2, 3]);
  t.false(fs.existsSync(out('abort.gguf')));
});

test('bad data and options are typed errors', async (t) => {
  const model = await tinyModel();
  const bad = out('bad.jsonl');
  fs.writeFileSync(bad, '{"prompt":"a","response":"b"}\n{"question":"x"}\n');
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('x.gguf'), data: bad }), { code: 'ERR_W2S_DATA_FORMAT', message: /bad\.jsonl:2/ });
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('x.gguf'), data: out('none.jsonl') }), { code: 'ERR_W2S_FILE_NOT_FOUND' });
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('x.gguf'), rank: 0 }), { message: 'Expected integer in [1, 4096] for rank but received 0 of type number' });
  await t.throwsAsync(trainSft({ ...BASE, model, out: out('x.gguf'), targets: ['q', 'x' as never] }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});
