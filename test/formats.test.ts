// The paper's file formats (lib/data/formats.ts): byte-exact round trips of every shared file, JSON/JSONL
// auto-detection, format errors, and the invariants the released Stage I / Stage II sets must satisfy.

import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { GSM8K_ANSWER_KEY, MATH_ANSWER_KEY, predOf } from '../lib/data/answer.js';
import { DataFormatError } from '../lib/data/errors.js';
import { parsePairs, parseResults, parseSft, serializeRecords, type SftRecord } from '../lib/data/formats.js';
import { dataPath, dataTest, GSM8K_PAPER, MATH_PAPER } from './helpers/shared-data.js';

const paperFiles = () => [GSM8K_PAPER, MATH_PAPER].flatMap((dir) => readdirSync(dataPath(dir)).map((f) => `${dir}/${f}`));
const parserOf = (file: string) => (file.endsWith('.jsonl') ? parseResults : file.includes('_paired') ? parsePairs : parseSft);

dataTest('every shared paper file round-trips byte for byte, and through the other format', (t) => {
  const files = paperFiles();
  t.true(files.length >= 13);
  for (const file of files) {
    const text = readFileSync(dataPath(file), 'utf8');
    const parse = parserOf(file) as (text: string, file?: string) => unknown[];
    const records = parse(text, file);
    const format = file.endsWith('.jsonl') ? 'jsonl' : 'json';
    t.true(serializeRecords(records, format) === text, `${file}: re-serialized bytes differ`);
    const other = format === 'json' ? 'jsonl' : 'json';
    t.deepEqual(parse(serializeRecords(records, other)), records, `${file} via ${other}`);
  }
});

/** The released Stage I sets of one round: weak and icl have the same ids; hybrid interleaves them. */
function stageOne(dir: string, name: string, round: number) {
  const load = (kind: string) => parseSft(readFileSync(dataPath(dir, `train_${name}_llama2_7b_iter${round}_${kind}.json`), 'utf8'));
  return { weak: load('weak'), icl: load('icl'), hybrid: load('hybrid') };
}

for (const [dir, name, round, key, bothEmpty] of [
  [GSM8K_PAPER, 'gsm8k', 1, GSM8K_ANSWER_KEY, 8],
  [GSM8K_PAPER, 'gsm8k', 2, GSM8K_ANSWER_KEY, 11],
  [MATH_PAPER, 'math', 1, MATH_ANSWER_KEY, 0],
] as const) {
  dataTest(`${name} round ${round}: weak and icl responses extract to the same answer (${bothEmpty} both empty)`, (t) => {
    const { weak, icl, hybrid } = stageOne(dir, name, round);
    t.deepEqual(icl.map((r) => r.id), weak.map((r) => r.id));
    t.deepEqual(hybrid, weak.flatMap((w, i) => [w, icl[i]!]));
    let empty = 0;
    const differing: SftRecord['id'][] = [];
    weak.forEach((w, i) => {
      const a = predOf(w.output, key);
      const b = predOf(icl[i]!.output, key);
      if (a !== b) differing.push(w.id);
      else if (a === '') empty++;
    });
    t.deepEqual(differing, []);
    t.is(empty, bothEmpty);
  });
}

for (const [dir, file, key] of [
  [GSM8K_PAPER, 'train_gsm8k_llama2_7b_iter2_hybrid_paired.json', GSM8K_ANSWER_KEY],
  [MATH_PAPER, 'train_math_llama2_7b_iter1_hybrid_paired.json', MATH_ANSWER_KEY],
] as const) {
  dataTest(`${file}: chosen and rejected extract to different answers`, (t) => {
    const pairs = parsePairs(readFileSync(dataPath(dir, file), 'utf8'));
    const same = pairs.filter((p) => predOf(p.output[0], key) === predOf(p.output[1], key));
    t.deepEqual(same.map((p) => p.id), []);
    t.true(pairs.every((p) => p.input === ''));
  });
}

dataTest('GSM8K pairs: the weak response (full weak set) is always one side', (t) => {
  const weak = new Map(parseSft(readFileSync(dataPath(GSM8K_PAPER, 'train_gsm8k_llama2_7b_full_weak.json'), 'utf8')).map((r) => [r.id, r]));
  const pairs = parsePairs(readFileSync(dataPath(GSM8K_PAPER, 'train_gsm8k_llama2_7b_iter2_hybrid_paired.json'), 'utf8'));
  const chosen = pairs.filter((p) => p.output[0] === weak.get(p.id)!.output).length;
  const rejected = pairs.filter((p) => p.output[1] === weak.get(p.id)!.output).length;
  t.log(`weak chosen ${chosen}, weak rejected ${rejected} of ${pairs.length}`);
  t.is(chosen + rejected, pairs.length);
  t.true(pairs.every((p) => p.instruction === weak.get(p.id)!.content));
});

test('JSON array and JSONL are auto-detected', (t) => {
  const rec = { id: 1, content: 'Question: q\nAnswer:', output: 'é\n#### 1' };
  t.deepEqual(parseSft(JSON.stringify([rec])), [rec]);
  t.deepEqual(parseSft(`\n${JSON.stringify(rec)}\n\n${JSON.stringify({ ...rec, id: 'b' })}\n`), [rec, { ...rec, id: 'b' }]);
  t.is(serializeRecords([rec], 'json'), '[\n    {\n        "id": 1,\n        "content": "Question: q\\nAnswer:",\n        "output": "\\u00e9\\n#### 1"\n    }\n]');
  t.is(serializeRecords([{ id: 0, result: true, s: '\u{1F600}' }], 'jsonl'), '{"id": 0, "result": true, "s": "\\ud83d\\ude00"}\n');
});

test('format errors name the field and line', (t) => {
  const e1 = t.throws(() => parseResults('{"id":0,"prompt":"p","response":"r","pred":"1","gold":"1","result":true}\n{"id":1,"prompt":"p"}'), { instanceOf: DataFormatError })!;
  t.regex(e1.message, /field "response" in result record 1 .*line 2/);
  const e2 = t.throws(() => parseSft('[\n  {"id": 0,\n   "content": }\n]', 'sft.json'), { instanceOf: DataFormatError }) as DataFormatError;
  t.is(e2.line, 3);
  t.throws(() => parsePairs('[{"id":0,"instruction":"i","input":"","output":["only one"]}]'), { message: /\[chosen, rejected\]/ });
  t.throws(() => parseSft('[{"id":1.5,"content":"c","output":"o"}]'), { message: /string or integer "id"/ });
});
