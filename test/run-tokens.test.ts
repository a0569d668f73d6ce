// `w2s run` trains on the tokens that were generated (lib/pipeline/token-ids.ts): records carry the sampler's
// ids trimmed to the stored response, the strong model trains on its own generations' ids (which tokenizing
// their text does not give back: random-weight samples are non-canonical splits), and on the weak model's
// text when the two vocabularies differ. Stage II pairs do the same per side.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { postprocessResponse, type Problem } from '../lib/data/datasets.js';
import type { PairRecord, ResultRecord, SftRecord } from '../lib/data/formats.js';
import { loadModel } from '../lib/model.js';
import { tokenizerFingerprint } from '../lib/model/tokenizer-fingerprint.js';
import { generate } from '../lib/pipeline/generate.js';
import { buildPairs } from '../lib/pipeline/pairs.js';
import { parseConfig } from '../lib/pipeline/run/config.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import { buildPreferenceRows, buildSftRows, responseIds } from '../lib/pipeline/token-ids.js';
import { makeBatch } from '../lib/train/batches.js';
import { tokenizePairs } from '../lib/train/preference-data.js';
import { tokenizeSft } from '../lib/train/sft-data.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, gsm8kDataYaml } from './helpers/shared-data.js';

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const readJsonl = <T>(file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);

// Weak: the built-in vocabulary padded by 64 filler pieces, so its tokenizer differs from the strong model's.
const weakModel = () => tinyModel({ ctx: 1024, seed: 11, vocab: 998 + 64 });
const strongModel = () => tinyModel({ ctx: 1024, embd: 96, heads: 4, kvHeads: 2, ff: 192, seed: 12 });

dataTest('w2s run trains the strong model on its own generated ids, and on the weak text when the vocabularies differ', async (t) => {
  const [weak, strong] = await Promise.all([weakModel(), strongModel()]);
  const [fw, fs_] = await Promise.all([tokenizerFingerprint(weak), tokenizerFingerprint(strong)]);
  t.not(fw, fs_);
  const file = path.join(TMP, 'tokens.yaml');
  fs.writeFileSync(file, [
    `out: ${JSON.stringify(path.join(TMP, 'tokens-run'))}`,
    `weak: { model: ${JSON.stringify(weak)} }`,
    `strong: { model: ${JSON.stringify(strong)} }`,
    ...gsm8kDataYaml({ train1: 8, train2: 10, test: 2 }),
    'prompt: { shots: 2 }',
    'generation: { maxTokens: 16, threads: 2 }',
    'train: { weak: { batch: 8, maxLen: 256 }, strong: { batch: 8, maxLen: 256 } }',
    'stage1: { keepEmpty: true }',
    'stage2: { enabled: false }',
    'baselines: { fullWeakFt: false, ceiling: false }',
    '',
  ].join('\n'));
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);
  const r = await runMethod(cfg, { start() {}, progress() {}, end() {} });
  const stat = (name: string) => r.steps.find((s) => s.name === name)!.stats as Record<string, number>;
  const dWeak = readJsonl<ResultRecord>(path.join(cfg.out, '02-d-weak', 'results.jsonl'));
  const icl = readJsonl<ResultRecord>(path.join(cfg.out, '03-weak-icl', 'results.jsonl'));
  const wm = await loadModel(weak, { vocabOnly: true });
  const sm = await loadModel(strong, { vocabOnly: true });
  try {
    // Records: ids of exactly the stored response, tagged with their generator's tokenizer.
    for (const [rows, m, f] of [[dWeak, wm, fw], [icl, sm, fs_]] as const) {
      for (const row of rows) {
        t.is(row.tokenizer, f);
        t.true(Array.isArray(row.token_ids) && row.token_ids.length > 0);
        t.is(postprocessResponse(m.detokenize(row.token_ids!)), row.response);
      }
    }
    // The strong model's own (ICL) answers are trained on their ids; the weak answers (other vocabulary) on text.
    const trained = JSON.parse(fs.readFileSync(path.join(cfg.out, '05-strong-sft-1', 'train.json'), 'utf8')) as SftRecord[];
    const hybrid = JSON.parse(fs.readFileSync(path.join(cfg.out, '04-select-1', 'hybrid.json'), 'utf8')) as SftRecord[];
    t.is(trained.length, hybrid.length);
    t.true(hybrid.length > 0);
    const iclById = new Map(icl.map((x) => [String(x.id), x]));
    let nonCanonical = 0;
    trained.forEach((row, i) => {
      const src = hybrid[i]!;
      t.is(row.output, src.output);
      if (src.tokenizer === fw) {
        t.is(row.token_ids, undefined, 'weak text: no ids from another vocabulary');
      } else {
        t.is(src.tokenizer, fs_);
        t.deepEqual(row.token_ids, iclById.get(String(row.id))!.token_ids);
        // What the text path would train instead (the boundary rule): not the generated ids.
        const pair = sm.tokenizePair(row.content, row.output);
        if (!same(pair.tokens.slice(pair.nPrompt), row.token_ids!)) nonCanonical += 1;
      }
    });
    t.log(`${nonCanonical} of ${trained.length / 2} strong rows differ from their text's tokenization`);
    t.true(nonCanonical > 0, 'the test needs generated ids that re-tokenization does not reproduce');
    const s = stat('05-strong-sft-1');
    t.is(s.generatedIds, hybrid.filter((x) => x.tokenizer === fs_).length);
    t.is(s.textRows, hybrid.filter((x) => x.tokenizer === fw).length);
    t.true(s.generatedIds > 0 && s.textRows > 0);

    // The batch the trainer gets from these rows holds the prompt's tokens, then the generated ids, then EOS.
    const train2 = hybrid.map((x) => ({ id: x.id, question: '' })) as Problem[];
    const built = buildSftRows({ model: sm, fingerprint: fs_, question: (id) => train2.find((p) => p.id === id)!.question }, hybrid);
    const tok = tokenizeSft(sm, built.examples, 4096);
    const k = hybrid.findIndex((x) => x.tokenizer === fs_);
    const ex = tok.examples[tok.kept.indexOf(k)]!;
    const batch = makeBatch([ex], 0);
    const promptIds = sm.tokenize(hybrid[k]!.content, { addSpecial: true });
    t.deepEqual([...batch.tokens].slice(0, ex.tokens.length), [...promptIds, ...hybrid[k]!.token_ids!, sm.info.eos]);
    // Loss only on the response: targets start at the prompt's last position.
    t.is([...batch.targets].findIndex((x) => x !== -1), promptIds.length - 1);
  } finally {
    wm.dispose();
    sm.dispose();
  }
});

test('responseIds: trims whole tokens to the stored response; a response no whole tokens give has none', async (t) => {
  const m = await loadModel(await strongModel(), { vocabOnly: true });
  try {
    const body = m.tokenize('The cost is 12 dollars');
    // Single tokens whose text is exactly '.' and '\n' (tokenizing them alone would add SentencePiece's '▁').
    const find = (text: string) => [Array.from({ length: m.info.nVocab }, (_, i) => i).find((i) => m.detokenize([i]) === text)!];
    const dot = find('.');
    const nl = find('\n');
    t.true(dot[0] !== undefined && nl[0] !== undefined);
    // Trailing newline and dot tokens are what post-processing strips: dropped.
    const ids = [...body, ...dot, ...nl, ...nl];
    t.deepEqual(responseIds(m, 'The cost is 12 dollars', ids), body);
    // Leading newline tokens too; the stored response must come out of the remaining ids exactly.
    t.deepEqual(responseIds(m, 'The cost is 12 dollars', [...nl, ...body]), body);
    t.is(responseIds(m, 'The cost is 13 dollars', ids), undefined);
    t.is(responseIds(m, '', ids), undefined);
  } finally {
    m.dispose();
  }
});

test('Stage II pairs: the strong side on its sampled ids, the weak side (another vocabulary) on its text', async (t) => {
  const [weak, strong] = await Promise.all([weakModel(), strongModel()]);
  const [fw, fs_] = await Promise.all([tokenizerFingerprint(weak), tokenizerFingerprint(strong)]);
  const problems: Problem[] = [{ id: 0, question: 'Natalia sold 48 clips. How many?', gold: '48' }, { id: 1, question: 'What is 2 + 2?', gold: '4' }];
  const prompts = problems.map((p) => `Question: ${p.question}\nAnswer:`);
  const wm = await loadModel(weak);
  const sm = await loadModel(strong);
  try {
    const weakRows = (await generate(wm, problems, prompts, prompts, { key: '####', maxTokens: 12, threads: 2, tokenizer: fw })).map((x) => x[0]!);
    const samples = await generate(sm, problems, prompts, prompts, { key: '####', maxTokens: 12, threads: 2, n: 3, temperature: 1, seed: 5, tokenizer: fs_ });
    // Random models answer nothing: give the weak answer one pred and two of three samples another, so the
    // weak side is rejected against a confident majority.
    weakRows.forEach((w) => { w.pred = 'weak'; });
    for (const per of samples) per.forEach((s, i) => { s.pred = i < 2 ? 'major' : 'other'; });
    const built = buildPairs(problems.map((p, i) => ({ id: p.id, prompt: prompts[i]!, weak: weakRows[i]!, samples: samples[i]! })), { minConfidence: 0.5, rejectConfidence: 0.6 });
    t.is(built.pairs.length, 2);
    const pair = built.pairs[0]! as PairRecord;
    t.deepEqual(pair.tokenizer, [fs_, fw]);
    t.deepEqual(pair.token_ids![1], weakRows[0]!.token_ids);
    const rows = buildPreferenceRows({ model: sm, fingerprint: fs_, question: () => '' }, built.pairs);
    t.is(rows.generatedIds, 2);
    t.is(rows.text, 2);
    t.is(rows.examples[0]!.rejectedTokens, undefined);
    const chosenIds = pair.token_ids![0]!;
    const tok = tokenizePairs(sm, rows.examples, 4096);
    const p0 = tok.pairs[tok.kept.indexOf(0)]!;
    const promptIds = sm.tokenize(prompts[0]!, { addSpecial: true });
    t.deepEqual(p0.chosen.tokens, [...promptIds, ...chosenIds, sm.info.eos]);
    t.is(p0.chosen.nPrompt, promptIds.length);
    // The rejected (weak) side is the strong model's tokenization of the weak text (the boundary rule).
    const text = sm.tokenizePair(prompts[0]!, pair.output[1]);
    t.deepEqual(p0.rejected.tokens, [...text.tokens, sm.info.eos]);
  } finally {
    wm.dispose();
    sm.dispose();
  }
});
