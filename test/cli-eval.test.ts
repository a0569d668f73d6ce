// `w2s score` reproduces the paper's verdicts on its released results; `w2s eval` reports accuracy,
// pass@k and maj@k consistent with its own result records.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, readJsonl } from './helpers/shared-data.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
const w2s = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

dataTest('w2s score gives the paper\'s pred and result on all 7,000 released weak answers', (t) => {
  const stripped = path.join(TMP, 'to-score.jsonl');
  const rows = readJsonl<{ id: string; response: string; gold: string; pred: string; result: boolean }>('paper', 'gsm8k', 'llama2_7b', 'weak_zero_shot_train_2.results.jsonl');
  fs.writeFileSync(stripped, rows.map((r) => JSON.stringify({ id: r.id, response: r.response, gold: r.gold })).join('\n') + '\n');
  const out = path.join(TMP, 'scored.jsonl');
  const r = w2s('score', '--in', stripped, '--key', '####', '--out', out);
  t.is(r.status, 0, r.stderr);
  const scored = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(scored.length, rows.length);
  const mismatches = scored.filter((s, i) => s.pred !== rows[i]!.pred || s.result !== rows[i]!.result).length;
  t.log(`${mismatches} mismatches in ${rows.length} rows; ${r.stderr.trim()}`);
  t.is(mismatches, 0);
  const bad = path.join(TMP, 'bad-score.jsonl');
  fs.writeFileSync(bad, '{"response": "x #### 1"}\n');
  const e = w2s('score', '--in', bad, '--out', path.join(TMP, 'never.jsonl'));
  t.is(e.status, 2);
  t.regex(e.stderr, /bad-score\.jsonl:1/);
  t.false(fs.existsSync(path.join(TMP, 'never.jsonl')));
});

test('w2s eval: accuracy, pass@k and maj@k agree with its own greedy records', async (t) => {
  const model = await tinyModel({ ctx: 1024 });
  const data = path.join(TMP, 'eval.jsonl');
  fs.writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ question: `What is ${i} + 1?`, answer: `${i} + 1 = ${i + 1}\n#### ${i + 1}` })).join('\n') + '\n');
  const out = path.join(TMP, 'eval-out.jsonl');
  const r = w2s('eval', '--model', model, '--data', data, '--key', '####', '--k', '3', '--max-tokens', '12', '--threads', '2', '--out', out);
  t.is(r.status, 0, r.stderr);
  const metrics = JSON.parse(r.stdout.trim());
  const records = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(metrics.problems, 6);
  t.is(records.length, 6);
  t.is(metrics.accuracy, records.filter((x) => x.result).length / 6);
  for (const k of ['pass@3', 'maj@3']) t.true(metrics[k] >= 0 && metrics[k] <= 1, k);
  t.true(metrics['pass@3'] >= metrics['maj@3']);
  for (const rec of records) t.deepEqual(Object.keys(rec).slice(0, 6), ['id', 'prompt', 'response', 'pred', 'gold', 'result']);
});
