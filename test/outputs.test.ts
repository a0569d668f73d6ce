// Outputs never destroy inputs and bad output paths fail before any work (issue 16, probe items 3 and 6):
// every command and trainer refuses an output that is an input (same path, `a/../a`, symlink, hard link) or
// another output, a missing folder or a folder as a file; devices are written in place, never replaced.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { OutputError } from '../lib/errors.js';
import { checkOutputPaths } from '../lib/io/outputs.js';
import { writeFileAtomic } from '../lib/io/atomic.js';
import { trainSft } from '../lib/train/sft.js';
import { createModel } from '../lib/model/create.js';
import { TMP, tinyModel } from './helpers/models.js';

const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(TMP, 'outputs-'));

interface Run { code: number | null; stdout: string; stderr: string }

function w2s(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const ROWS = Array.from({ length: 8 }, (_, i) => ({ prompt: `Question: What is ${i} + 1?\nAnswer:`, response: ` ${i + 1}` }));
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

test('every command refuses an output that is one of its inputs, and the input is left byte-identical', async (t) => {
  const model = await tinyModel();
  const local = path.join(dir, 'model.gguf');
  fs.copyFileSync(model, local);
  const prompts = write('prompts.jsonl', jsonl([{ prompt: 'Hello' }]));
  const data = write('data.jsonl', jsonl(ROWS));
  const items = write('items.jsonl', jsonl([{ prompt: 'Hello', completion: ' world' }]));
  const scored = write('scored.jsonl', jsonl([{ response: 'x #### 1', gold: '1' }]));
  fs.mkdirSync(path.join(dir, 'a'));
  const aliasOfData = './a/../data.jsonl';
  fs.symlinkSync(prompts, path.join(dir, 'link.jsonl'));
  fs.linkSync(data, path.join(dir, 'hard.jsonl'));
  const cases: [string, string[], string][] = [
    ['sample --out = --prompts', ['sample', '--model', local, '--prompts', prompts, '--out', prompts], prompts],
    ['sample --out = --model', ['sample', '--model', local, '--prompts', prompts, '--out', 'model.gguf'], local],
    ['sample --out = symlink to --prompts', ['sample', '--model', local, '--prompts', prompts, '--out', 'link.jsonl'], prompts],
    ['logprob --out = --data', ['logprob', '--model', local, '--data', items, '--out', items], items],
    ['score --out = --in', ['score', '--in', scored, '--out', scored], scored],
    ['train --out = --model', ['train', 'sft', '--model', local, '--data', data, '--out', local], local],
    ['train --out = a/../data', ['train', 'sft', '--model', local, '--data', data, '--out', aliasOfData], data],
    ['train --log = --data', ['train', 'sft', '--model', local, '--data', data, '--out', 'x.gguf', '--log', data], data],
    ['train --log = hard link of --data', ['train', 'sft', '--model', local, '--data', data, '--out', 'x.gguf', '--log', 'hard.jsonl'], data],
    ['train --checkpoint = --model', ['train', 'sft', '--model', local, '--data', data, '--out', 'x.gguf', '--checkpoint', local], local],
    ['train --checkpoint = --out', ['train', 'sft', '--model', local, '--data', data, '--out', 'x.gguf', '--checkpoint', 'x.gguf'], local],
  ];
  const before = new Map([local, prompts, data, items, scored].map((f) => [f, sha(f)]));
  for (const [name, args, victim] of cases) {
    const r = await w2s(args);
    t.is(r.code, 2, `${name}: ${r.stderr}`);
    t.regex(r.stderr, /\[ERR_W2S_OUTPUT\]/, name);
    t.regex(r.stderr, /same file|choose another|its own path/, name);
    t.notRegex(r.stderr, /\n\s+at /, `${name}: no stack trace`);
    t.is(sha(victim), before.get(victim)!, `${name}: the input is unchanged`);
  }
  t.false(fs.existsSync(path.join(dir, 'x.gguf')), 'no adapter was written');
});

test('bad output folders fail before the model is even opened, with a typed message', async (t) => {
  const prompts = write('p2.jsonl', jsonl([{ prompt: 'Hello' }]));
  // The model does not exist: a command that did the work first would report that instead.
  const missing = await w2s(['sample', '--model', 'nope.gguf', '--prompts', prompts, '--out', 'no/such/folder/out.jsonl']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /folder of --out no\/such\/folder\/out\.jsonl does not exist; create .* first \[ERR_W2S_OUTPUT\]/);
  const folder = await w2s(['sample', '--model', 'nope.gguf', '--prompts', prompts, '--out', 'a']);
  t.is(folder.code, 2);
  t.regex(folder.stderr, /--out a is a folder; give a file path inside it/);
  const train = await w2s(['train', 'sft', '--model', 'nope.gguf', '--data', prompts, '--out', 'no/such/x.gguf']);
  t.is(train.code, 2);
  t.regex(train.stderr, /folder of out no\/such\/x\.gguf does not exist/);
});

test('a device output is written in place (never replaced by a regular file); a full disk is a typed error', async (t) => {
  const before = fs.statSync('/dev/full');
  const err = await t.throwsAsync(writeFileAtomic('/dev/full', 'x\n'), { instanceOf: OutputError });
  t.regex(err!.message, /Cannot write \/dev\/full: the disk is full: free space or choose another folder \(ENOSPC\)/);
  const after = fs.statSync('/dev/full');
  t.true(after.isCharacterDevice(), '/dev/full is still a device');
  t.is(after.rdev, before.rdev);
  await writeFileAtomic('/dev/null', 'discarded\n'); // devices that accept data work
  t.true(fs.statSync('/dev/null').isCharacterDevice());
  // GGUF outputs are written through a temp file and rename: a device is refused up front.
  await t.throwsAsync(createModel({ arch: 'llama', layers: 1, embd: 32, heads: 2, kvHeads: 2, ff: 64, ctx: 64, type: 'f32', seed: 1, out: '/dev/null' }),
    { instanceOf: OutputError, message: /out \/dev\/null is not a regular file/ });
  t.true(fs.statSync('/dev/null').isCharacterDevice());
});

test('the library trainers refuse outputs that alias inputs or each other before reading the data', async (t) => {
  const model = await tinyModel();
  const data = write('lib-data.jsonl', jsonl(ROWS));
  const before = sha(model);
  await t.throwsAsync(trainSft({ model, data, out: model, threads: 1 }), { instanceOf: OutputError, message: /out .* is the same file as model/ });
  await t.throwsAsync(trainSft({ model, data, out: path.join(dir, 'y.gguf'), log: path.join(dir, 'y.gguf'), threads: 1 }),
    { instanceOf: OutputError, message: /are the same file/ });
  // The data is a file that does not parse: the path check must come first.
  const garbage = write('garbage.jsonl', '{not json\n');
  await t.throwsAsync(trainSft({ model, data: garbage, out: garbage, threads: 1 }), { instanceOf: OutputError });
  t.is(sha(model), before);
});

test('checkOutputPaths: a checkpoint may be the resume file; missing inputs are left to their readers', async (t) => {
  const ckpt = write('run.ckpt', 'x');
  await checkOutputPaths([{ name: 'checkpoint', path: ckpt }], [{ name: 'model', path: path.join(dir, 'absent.gguf') }]);
  await t.throwsAsync(checkOutputPaths([{ name: 'out', path: ckpt }], [{ name: 'resume', path: ckpt }]), { instanceOf: OutputError });
  t.pass();
});
