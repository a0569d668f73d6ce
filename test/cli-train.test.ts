// `w2s train sft` from the command line: both data shapes, a loss line per step, the adapter, the log.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TMP, tinyModel } from './helpers/models.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
const w2s = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const rows = Array.from({ length: 8 }, (_, i) => ({ q: `Question: ${i} + 1?\nAnswer:`, a: ` ${i + 1}. #### ${i + 1}` }));

test('train sft takes JSONL {prompt, response} and the paper\'s JSON {content, output}, printing a loss line per step', (t) => {
  const model = tinyModel();
  return model.then((file) => {
    const jsonl = path.join(TMP, 'sft.jsonl');
    fs.writeFileSync(jsonl, rows.map((r) => JSON.stringify({ prompt: r.q, response: r.a })).join('\n') + '\n');
    const json = path.join(TMP, 'sft.json');
    fs.writeFileSync(json, JSON.stringify(rows.map((r, i) => ({ id: i, content: r.q, output: r.a }))));
    const outs: string[] = [];
    for (const data of [jsonl, json]) {
      const out = path.join(TMP, `cli-${path.extname(data).slice(1)}.gguf`);
      const r = w2s('train', 'sft', '--model', file, '--data', data, '--out', out, '--epochs', '2', '--batch', '4', '--lr', '1e-3', '--seed', '2', '--threads', '2', '--checkpoint-every', '1');
      t.is(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      t.is(lines.length, 4);
      lines.forEach((l, i) => t.regex(l, new RegExp(`^step ${i + 1}/4 epoch \\d loss \\d+\\.\\d{4} lr `)));
      const log = JSON.parse(fs.readFileSync(`${out}.log.json`, 'utf8'));
      t.is(log.kind, 'sft');
      t.is(log.history.length, 4);
      t.true(fs.existsSync(`${out}.ckpt`));
      outs.push(out);
    }
    // Same rows, same seed: the two data shapes train the same adapter.
    t.deepEqual(fs.readFileSync(outs[0]!), fs.readFileSync(outs[1]!));
    const bad = w2s('train', 'sft', '--model', file, '--data', jsonl, '--out', path.join(TMP, 'bad.gguf'), '--rank', '0');
    t.is(bad.status, 2);
    t.regex(bad.stderr, /--rank/);
  });
});
