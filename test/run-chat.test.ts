// `w2s run` with `prompt.template: chat`: every prompt through the prompted model's own chat template (Phi-3's
// real tokenizer and template in random-weight models), few-shot demonstrations as earlier turns, training
// rows whose loss covers the assistant turn only, control tokens parsed; a model without a template is refused
// before any step runs. And the config: chat's defaults, and plain configs parse (and hash) as before.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { chatFewShotPrompt, chatPrompt } from '../lib/data/chat.js';
import type { ResultRecord, SftRecord } from '../lib/data/formats.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { createModel } from '../lib/model/create.js';
import { loadModel } from '../lib/model.js';
import { tokenizerFingerprint } from '../lib/model/tokenizer-fingerprint.js';
import { parseConfig } from '../lib/pipeline/run/config.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import { buildSftRows } from '../lib/pipeline/token-ids.js';
import { tokenizeSft } from '../lib/train/sft-data.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, gsm8kDataYaml, readJsonl } from './helpers/shared-data.js';

const PHI3 = path.resolve('../shared/models/vocab/ggml-vocab-phi-3.gguf');
const SYSTEM = 'Solve the problem. End with #### and the answer.';
const quiet = { start() {}, progress() {}, end() {} };
const jsonl = <T>(file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);

async function phi3Model(name: string, seed: number, embd = 64): Promise<string> {
  const out = path.join(TMP, `${name}.gguf`);
  if (!fs.existsSync(out)) await createModel({ arch: 'llama', layers: 1, embd, heads: 4, kvHeads: 2, ff: 2 * embd, ctx: 1024, type: 'f32', seed, out, vocabFrom: PHI3 });
  return out;
}

function config(name: string, weak: string, strong: string, extra: string[] = []): string {
  const file = path.join(TMP, `${name}.yaml`);
  fs.writeFileSync(file, [
    `out: ${JSON.stringify(path.join(TMP, name))}`,
    `weak: { model: ${JSON.stringify(weak)} }`,
    `strong: { model: ${JSON.stringify(strong)} }`,
    ...gsm8kDataYaml({ train1: 6, train2: 6, test: 2 }),
    `prompt: { template: chat, system: ${JSON.stringify(SYSTEM)}, shots: 2 }`,
    'generation: { maxTokens: 10, threads: 2 }',
    'train: { weak: { batch: 6, maxLen: 384 }, strong: { batch: 6, maxLen: 384 } }',
    'stage1: { keepEmpty: true }',
    'stage2: { enabled: false }',
    'baselines: { fullWeakFt: false, ceiling: false }',
    ...extra,
    '',
  ].join('\n'));
  return file;
}

dataTest('chat run: prompts are each model\'s template rendering, demos are earlier turns, loss on the assistant turn only', async (t) => {
  const weak = await phi3Model('phi-weak', 3);
  const strong = await phi3Model('phi-strong', 4, 96);
  const file = config('chat-run', weak, strong);
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);
  t.deepEqual(cfg.generation.stop, [], 'chat: the end of turn ends a sample');
  const r = await runMethod(cfg, quiet);
  const train2 = readJsonl<{ id: string; question: string }>('gsm8k', 'train_2.jsonl').slice(0, 6);
  const wm = await loadModel(weak, { vocabOnly: true });
  const sm = await loadModel(strong, { vocabOnly: true });
  try {
    const expectStrong = (q: string) => `<|system|>\n${SYSTEM}<|end|>\n<|user|>\n${q}<|end|>\n<|assistant|>\n`;
    t.is(chatPrompt(sm, train2[0]!.question, { system: SYSTEM }), expectStrong(train2[0]!.question));
    // Sampling prompts: the zero-shot rendering of the generating model, recorded as the record's prompt.
    const dWeak = jsonl<ResultRecord>(path.join(cfg.out, '02-d-weak', 'results.jsonl'));
    dWeak.forEach((row, i) => t.is(row.prompt, chatPrompt(wm, train2[i]!.question, { system: SYSTEM })));
    const icl = jsonl<ResultRecord>(path.join(cfg.out, '03-weak-icl', 'results.jsonl'));
    icl.forEach((row, i) => t.is(row.prompt, expectStrong(train2[i]!.question)));
    // Few-shot: the demonstrations are user/assistant turns before the question.
    const demos = JSON.parse(fs.readFileSync(path.join(cfg.out, '03-weak-icl', 'demos.json'), 'utf8')) as { question: string; answer: string }[];
    t.is(demos.length, 2);
    t.is(chatFewShotPrompt(sm, 'Q?', demos, { system: SYSTEM }),
      `<|system|>\n${SYSTEM}<|end|>\n` + demos.map((d) => `<|user|>\n${d.question}<|end|>\n<|assistant|>\n${d.answer}<|end|>\n`).join('') + '<|user|>\nQ?<|end|>\n<|assistant|>\n');

    // Training rows: the strong model's rendering as prompt, the answer + end-of-turn marker as response, and
    // (same vocabulary on both sides) the generated ids of the answer followed by the marker's tokens.
    const trained = JSON.parse(fs.readFileSync(path.join(cfg.out, '05-strong-sft-1', 'train.json'), 'utf8')) as SftRecord[];
    const hybrid = JSON.parse(fs.readFileSync(path.join(cfg.out, '04-select-1', 'hybrid.json'), 'utf8')) as SftRecord[];
    t.true(trained.length > 0);
    const [end] = sm.tokenize('<|end|>', { parseSpecial: true });
    const controls = ['<|user|>', '<|assistant|>', '<|system|>'].map((c) => sm.tokenize(c, { parseSpecial: true })[0]!);
    const byId = new Map(train2.map((p) => [String(p.id), p.question] as const));
    trained.forEach((row, i) => {
      const q = byId.get(String(row.id))!;
      t.is(row.content, expectStrong(q));
      t.is(row.output, `${hybrid[i]!.output}<|end|>\n`);
      t.deepEqual(row.token_ids!.slice(0, hybrid[i]!.token_ids!.length), hybrid[i]!.token_ids);
    });
    // The examples the trainer gets: the prompt (control tokens parsed) is masked; the targets are the
    // assistant's tokens, its <|end|>, and EOS; no other turn's control token is a target.
    const fp = await tokenizerFingerprint(strong);
    const built = buildSftRows({ model: sm, fingerprint: fp, chat: { system: SYSTEM }, question: (id) => byId.get(String(id))! }, hybrid);
    t.is(built.generatedIds, hybrid.length);
    const tok = tokenizeSft(sm, built.examples, 4096, true);
    tok.examples.forEach((ex, k) => {
      const row = trained[tok.kept[k]!]!;
      const promptIds = sm.tokenize(row.content, { addSpecial: true, parseSpecial: true });
      t.deepEqual(ex.tokens.slice(0, ex.nPrompt), promptIds);
      t.true(controls.every((c) => promptIds.includes(c)));
      const targets = ex.tokens.slice(ex.nPrompt);
      t.deepEqual(targets, [...row.token_ids!, sm.info.eos]);
      t.true(targets.includes(end!));
      t.false(targets.some((x) => controls.includes(x)));
    });
    // Gold rows (weak SFT on train_1) are text: trained with control tokens parsed.
    const log = JSON.parse(fs.readFileSync(path.join(cfg.out, '01-weak-sft', 'adapter.gguf.log.json'), 'utf8'));
    t.is(log.options.parseSpecial, true);
    const gold = JSON.parse(fs.readFileSync(path.join(cfg.out, '01-weak-sft', 'train.json'), 'utf8')) as SftRecord[];
    t.regex(gold[0]!.content, /^<\|system\|>\n/);
    t.regex(gold[0]!.output, /<\|end\|>\n$/);
    t.is(typeof (r.metrics.accuracy as Record<string, number>).stage1, 'number');
  } finally {
    wm.dispose();
    sm.dispose();
  }
});

dataTest('chat run: a model without a chat template is refused, naming the file, before any step runs', async (t) => {
  const weak = await tinyModel({ ctx: 1024 });
  const strong = await phi3Model('phi-strong-2', 5);
  const file = config('chat-refused', weak, strong);
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);
  const started: string[] = [];
  const err = await t.throwsAsync(runMethod(cfg, { ...quiet, start: (n) => started.push(n) }), { instanceOf: InvalidArgumentError });
  t.true(err!.message.includes(weak), err!.message);
  t.regex(err!.message, /the weak model .* has no chat template/);
  t.deepEqual(started, []);
  t.deepEqual(fs.existsSync(cfg.out) ? fs.readdirSync(cfg.out).filter((e) => /^\d\d-/.test(e)) : [], []);
});

test('config: chat template and system; plain configs parse as before (their step hashes hold)', (t) => {
  const base = 'out: r\nweak: {model: w.gguf}\nstrong: {model: s.gguf}\ndata: {train1: a, train2: b, test: c}\n';
  // The exact serialisations the steps hash, as before chat existed (captured from the previous code).
  const plain = parseConfig(base, '/x/c.yaml');
  t.is(JSON.stringify(plain.generation), '{"maxTokens":1024,"stop":["Question","Answer"],"symbolic":false}');
  t.is(JSON.stringify(plain.prompt), '{"template":"Question: {question}\\nAnswer:","shots":4,"demos":{"strategy":"random","seed":0}}');
  t.is(JSON.stringify(parseConfig(`${base}generation: {parallel: 3, stop: [x]}\n`, '/x/c.yaml').generation), '{"maxTokens":1024,"stop":["x"],"parallel":3,"symbolic":false}');
  const chat = parseConfig(`${base}prompt: {template: chat, system: Be brief.}\n`, '/x/c.yaml');
  t.deepEqual(chat.generation.stop, []);
  t.is(chat.prompt.system, 'Be brief.');
  t.deepEqual(parseConfig(`${base}prompt: {template: chat}\ngeneration: {stop: ['<|end|>']}\n`, '/x/c.yaml').generation.stop, ['<|end|>']);
  t.throws(() => parseConfig(`${base}prompt: {system: Be brief.}\n`, 'c.yaml'), { instanceOf: InvalidArgumentError, message: /prompt\.system applies to chat prompts only/ });
  t.throws(() => parseConfig(`${base}prompt: {template: 'Q: A:'}\n`, 'c.yaml'), { message: /prompt\.template: Expected "chat" or a template containing "\{question\}"/ });
});
