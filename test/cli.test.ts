// The `w2s` command-line contract, run as a child process: model create, sample, logprob, --lora, --help,
// exit codes (2 for bad arguments or input, 130 when interrupted) and no output file left by a failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { loadModel } from '../lib/model.js';
import { writeRandomLora } from './helpers/lora.js';
import { TMP } from './helpers/models.js';

const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(TMP, 'cli-'));
const MODEL = path.join(dir, 'm.gguf');
const MODEL_2K = path.join(dir, 'm2k.gguf');
const CREATE = ['--arch', 'llama', '--layers', '2', '--embd', '64', '--heads', '4', '--kv-heads', '2', '--ff', '128', '--ctx', '256', '--type', 'q8_0', '--seed', '3'];
const PROMPTS = ['Question: What is 2 + 2?\nAnswer:', 'Question: Natalia sold 48 clips. How many?\nAnswer:', 'Hello'];
const SAMPLE_ARGS = ['--n', '2', '--temperature', '0.8', '--top-p', '0.95', '--top-k', '40', '--seed', '1', '--max-tokens', '8', '--stop', 'Question', '--parallel', '2'];
const SAMPLE_OPTIONS = { n: 2, temperature: 0.8, topP: 0.95, topK: 40, seed: 1, maxTokens: 8, stop: ['Question'], parallel: 2 };
const ITEMS = [
  { id: 'a', prompt: PROMPTS[0]!, completion: ' 4' },
  { id: 'b', prompt: PROMPTS[1]!, completion: ' She sold 48 clips. #### 48' },
];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node main.js …args`; `onStderr` may act on the stderr text seen so far (e.g. interrupt the child). */
function w2s(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function writeJsonl(name: string, rows: unknown[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

function readJsonl(file: string): Record<string, unknown>[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Files in the work folder, to check that a failed command leaves nothing (no output, no temp file). */
function listing(): string[] {
  return fs.readdirSync(dir).sort();
}

function toSnake(s: { promptIndex: number; sampleIndex: number; text: string; tokens: number; finishReason: string }) {
  return { prompt_index: s.promptIndex, sample_index: s.sampleIndex, text: s.text, tokens: s.tokens, finish_reason: s.finishReason };
}

test.before(async () => {
  // Created here (not in a test) so that every test can rely on them.
  const a = await w2s(['model', 'create', ...CREATE, '--out', MODEL]);
  const b = await w2s(['model', 'create', ...CREATE, '--vocab', '2000', '--out', MODEL_2K]);
  if (a.code !== 0 || b.code !== 0) throw new Error(`model create failed: ${a.stderr} ${b.stderr}`);
});

// The CLI runs spin all cores; running two at once on a small machine only makes both slow.
test.serial('model create writes a deterministic q8_0 model; --vocab pads the tokenizer to the given size', async (t) => {
  const again = path.join(dir, 'm-again.gguf');
  const r = await w2s(['model', 'create', ...CREATE, '--out', again]);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { nVocab: number; nLayer: number; type: string; path: string };
  t.is(info.type, 'q8_0');
  t.is(info.nLayer, 2);
  t.true(fs.readFileSync(again).equals(fs.readFileSync(MODEL)), 'same options and seed give the same bytes');
  fs.rmSync(again);
  const m = await loadModel(MODEL);
  const m2k = await loadModel(MODEL_2K);
  t.is(m.info.nVocab, info.nVocab);
  t.true(m.info.nVocab < 2000);
  t.is(m2k.info.nVocab, 2000);
  t.is(m2k.info.nEmbd, 64);
  t.is(m2k.info.nCtxTrain, 256);
  t.is(m2k.metadata()['general.file_type'], '7'); // LLAMA_FTYPE_MOSTLY_Q8_0
  m.dispose();
  m2k.dispose();
});

test.serial('sample writes one JSONL line per sample with exactly the documented keys, as the library samples', async (t) => {
  const prompts = writeJsonl('p.jsonl', PROMPTS.map((prompt) => ({ prompt, other: 1 })));
  const out = path.join(dir, 'o.jsonl');
  const r = await w2s(['sample', '--model', MODEL_2K, '--prompts', prompts, ...SAMPLE_ARGS, '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '', 'stdout stays empty; the summary goes to stderr');
  t.regex(r.stderr, /6 samples, \d+ tokens/);
  const rows = readJsonl(out);
  t.is(rows.length, PROMPTS.length * 2);
  for (const [i, row] of rows.entries()) {
    t.deepEqual(Object.keys(row).sort(), ['finish_reason', 'prompt_index', 'sample_index', 'text', 'tokens']);
    t.is(row.prompt_index, Math.floor(i / 2));
    t.is(row.sample_index, i % 2);
    t.is(typeof row.text, 'string');
    t.false((row.text as string).includes('Question'));
    t.true(Number.isInteger(row.tokens) && (row.tokens as number) <= 8);
    t.true(['stop', 'length', 'eos'].includes(row.finish_reason as string));
  }
  const m = await loadModel(MODEL_2K);
  t.deepEqual(rows, (await m.sample(PROMPTS, SAMPLE_OPTIONS)).map(toSnake));
  m.dispose();

  // --field picks another key of the rows: same prompts, same file.
  const questions = writeJsonl('q.jsonl', PROMPTS.map((question) => ({ question })));
  const outQ = path.join(dir, 'oq.jsonl');
  const rq = await w2s(['sample', '--model', MODEL_2K, '--prompts', questions, '--field', 'question', ...SAMPLE_ARGS, '--out', outQ]);
  t.is(rq.code, 0, rq.stderr);
  t.is(fs.readFileSync(outQ, 'utf8'), fs.readFileSync(out, 'utf8'));
  // Without --field, rows lacking "prompt" are an input error naming the line.
  const rMissing = await w2s(['sample', '--model', MODEL_2K, '--prompts', questions, '--out', path.join(dir, 'never.jsonl')]);
  t.is(rMissing.code, 2);
  t.regex(rMissing.stderr, /"prompt".*q\.jsonl:1/);
  t.false(fs.existsSync(path.join(dir, 'never.jsonl')));
});

test.serial('logprob prints the rows with logprob and tokens added, or writes them with --out', async (t) => {
  const data = writeJsonl('d.jsonl', ITEMS);
  const r = await w2s(['logprob', '--model', MODEL, '--data', data]);
  t.is(r.code, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(rows.length, ITEMS.length);
  const m = await loadModel(MODEL);
  const scores = await m.score(ITEMS);
  m.dispose();
  let maxDiff = 0;
  for (const [i, row] of rows.entries()) {
    t.deepEqual(Object.keys(row), ['id', 'prompt', 'completion', 'logprob', 'tokens']);
    t.like(row, ITEMS[i]!);
    t.is(row.tokens, scores[i]!.tokens);
    t.true((row.logprob as number) < 0);
    maxDiff = Math.max(maxDiff, Math.abs((row.logprob as number) - scores[i]!.sum));
  }
  t.log(`max |CLI logprob - library sum| = ${maxDiff.toExponential(2)}`);
  t.true(maxDiff < 1e-6);

  const out = path.join(dir, 'lp.jsonl');
  const r2 = await w2s(['logprob', '--model', MODEL, '--data', data, '--per-token', '--out', out]);
  t.is(r2.code, 0, r2.stderr);
  t.is(r2.stdout, '');
  const written = readJsonl(out);
  t.deepEqual(written.map(({ token_logprobs, ...rest }) => rest), rows);
  for (const [i, row] of written.entries()) {
    const per = row.token_logprobs as number[];
    t.is(per.length, scores[i]!.tokens);
    t.true(Math.abs(per.reduce((a, b) => a + b, 0) - (row.logprob as number)) < 1e-3);
  }
});

test.serial('every command has a working --help', async (t) => {
  const commands: [string[], string[]][] = [
    [[], ['model', 'sample', 'logprob', 'bench']],
    [['model'], ['create', 'info']],
    [['model', 'create'], ['--arch', '--layers', '--embd', '--heads', '--kv-heads', '--ff', '--ctx', '--vocab', '--type', '--seed', '--out']],
    [['model', 'info'], ['--model']],
    [['sample'], ['--model', '--lora', '--prompts', '--field', '--n', '--temperature', '--top-p', '--top-k', '--seed', '--max-tokens', '--stop', '--parallel', '--out']],
    [['logprob'], ['--model', '--lora', '--data', '--per-token', '--out']],
    [['bench'], ['sample']],
    [['bench', 'sample'], ['--model', '--n', '--max-tokens']],
  ];
  for (const [cmd, mentions] of commands) {
    const r = await w2s([...cmd, '--help']);
    const what = `w2s ${cmd.join(' ')} --help`;
    t.is(r.code, 0, what);
    t.true(r.stdout.startsWith(`Usage: w2s${cmd.length ? ' ' + cmd.join(' ') : ''} `), what);
    for (const m of mentions) t.true(r.stdout.includes(m), `${what} mentions ${m}`);
  }
  const viaHelp = await w2s(['help', 'sample']);
  t.is(viaHelp.code, 0);
  t.true(viaHelp.stdout.startsWith('Usage: w2s sample '));
});

test.serial('bad arguments and bad input exit with code 2, say what is wrong, and leave no output file', async (t) => {
  const prompts = writeJsonl('p-ok.jsonl', PROMPTS.map((prompt) => ({ prompt })));
  const data = writeJsonl('d-ok.jsonl', ITEMS);
  const badJson = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(badJson, `${JSON.stringify({ prompt: 'a' })}\n\n${JSON.stringify({ prompt: 'b' })}\n{"prompt": oops}\n`);
  const out = path.join(dir, 'fail.jsonl');
  const cases: [string, string[], RegExp][] = [
    ['--n 0', ['sample', '--model', MODEL, '--prompts', prompts, '--n', '0', '--out', out], /--n/],
    ['--max-tokens 1.5', ['sample', '--model', MODEL, '--prompts', prompts, '--max-tokens', '1.5', '--out', out], /--max-tokens/],
    ['an unknown option', ['sample', '--model', MODEL, '--prompts', prompts, '--bogus', '--out', out], /--bogus/],
    ['no --out', ['sample', '--model', MODEL, '--prompts', prompts], /--out/],
    ['a missing model', ['sample', '--model', path.join(dir, 'missing.gguf'), '--prompts', prompts, '--out', out], /missing\.gguf does not exist/],
    ['a missing prompts file', ['sample', '--model', MODEL, '--prompts', path.join(dir, 'nope.jsonl'), '--out', out], /nope\.jsonl does not exist/],
    ['a bad JSON line', ['sample', '--model', MODEL, '--prompts', badJson, '--out', out], /bad\.jsonl:4\b/],
    ['a model that is not GGUF', ['sample', '--model', prompts, '--prompts', prompts, '--out', out], /ERR_W2S_GGUF_FORMAT/],
    ['a prompt longer than --context', ['sample', '--model', MODEL, '--prompts', prompts, '--context', '4', '--out', out], /ERR_W2S_CONTEXT_OVERFLOW/],
    ['logprob with a bad JSON line', ['logprob', '--model', MODEL, '--data', badJson, '--out', out], /bad\.jsonl:4\b/],
    ['logprob with a missing model', ['logprob', '--model', path.join(dir, 'missing.gguf'), '--data', data, '--out', out], /missing\.gguf does not exist/],
    ['model create with --embd 0', ['model', 'create', ...CREATE, '--embd', '0', '--out', out], /--embd/],
    ['model create with embd not a multiple of heads', ['model', 'create', ...CREATE, '--embd', '66', '--out', out], /embd/],
  ];
  const before = listing();
  for (const [what, args, message] of cases) {
    const r = await w2s(args);
    t.is(r.code, 2, `${what}: exit code (stderr: ${r.stderr.trim()})`);
    t.regex(r.stderr, message, what);
    t.false(r.stderr.includes('    at '), `${what}: no stack trace`);
    t.deepEqual(listing(), before, `${what}: no file left behind`);
  }
  // A failing run does not touch an output file that already exists.
  fs.writeFileSync(out, 'keep me\n');
  const r = await w2s(['sample', '--model', MODEL, '--prompts', badJson, '--out', out]);
  t.is(r.code, 2);
  t.is(fs.readFileSync(out, 'utf8'), 'keep me\n');
  fs.rmSync(out);
});

test.serial('an interrupted sample exits with code 130 and writes nothing', async (t) => {
  const prompts = writeJsonl('p-long.jsonl', Array.from({ length: 16 }, (_, i) => ({ prompt: `Question ${i}: tell me a long story.\nAnswer:` })));
  const out = path.join(dir, 'interrupted.jsonl');
  let sent = false;
  // Interrupt once the job reports its first progress (the run would take many seconds more).
  const r = await w2s(['sample', '--model', MODEL_2K, '--prompts', prompts, '--n', '16', '--max-tokens', '240', '--temperature', '0.5', '--out', out], (text, child) => {
    if (!sent && /sample: \d+\/256 samples/.test(text)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  t.true(sent);
  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, /stopping/);
  t.regex(r.stderr, /ABORT_ERR/);
  t.false(fs.existsSync(out));
  t.false(listing().some((f) => f.includes('interrupted')), 'no temp file either');
});

test.serial('--lora applies an adapter in sample and logprob; an adapter for another model exits 2', async (t) => {
  const adapter = await writeRandomLora(MODEL, path.join(dir, 'a.lora.gguf'), { targets: { 0: ['attn_q', 'attn_v', 'ffn_down'], 1: ['attn_output', 'ffn_up'] }, seed: 3 });
  const prompts = writeJsonl('p-lora.jsonl', PROMPTS.map((prompt) => ({ prompt })));
  const greedy = ['--temperature', '0', '--max-tokens', '16'];
  const plainOut = path.join(dir, 'plain.jsonl');
  const loraOut = path.join(dir, 'lora.jsonl');
  t.is((await w2s(['sample', '--model', MODEL, '--prompts', prompts, ...greedy, '--out', plainOut])).code, 0);
  const r = await w2s(['sample', '--model', MODEL, '--lora', adapter, '--prompts', prompts, ...greedy, '--out', loraOut]);
  t.is(r.code, 0, r.stderr);
  const plain = readJsonl(plainOut);
  const withLora = readJsonl(loraOut);
  t.true(withLora.some((row, i) => row.text !== plain[i]!.text), 'the adapter changes some greedy text');

  const m = await loadModel(MODEL);
  const lora = await m.loadLora(adapter);
  t.deepEqual(withLora, (await m.sample(PROMPTS, { temperature: 0, maxTokens: 16, lora })).map(toSnake));
  const scores = await m.score(ITEMS, { lora });
  m.dispose();
  const data = writeJsonl('d-lora.jsonl', ITEMS);
  const lp = await w2s(['logprob', '--model', MODEL, '--lora', adapter, '--data', data]);
  t.is(lp.code, 0, lp.stderr);
  const rows = lp.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { logprob: number });
  t.true(rows.every((row, i) => Math.abs(row.logprob - scores[i]!.sum) < 1e-6));

  const narrow = path.join(dir, 'narrow.gguf');
  t.is((await w2s(['model', 'create', ...CREATE, '--embd', '32', '--out', narrow])).code, 0);
  const foreign = await writeRandomLora(narrow, path.join(dir, 'foreign.lora.gguf'), { targets: { 0: ['attn_q'] } });
  const out = path.join(dir, 'foreign.jsonl');
  const bad = await w2s(['sample', '--model', MODEL, '--lora', foreign, '--prompts', prompts, '--out', out]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /incorrect shape.*ERR_W2S_ADAPTER/);
  t.false(fs.existsSync(out));
  const missing = await w2s(['sample', '--model', MODEL, '--lora', path.join(dir, 'no.lora.gguf'), '--prompts', prompts, '--out', out]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /no\.lora\.gguf does not exist/);
});

test('integer options say the bound they were given', async (t) => {
  const { intArg } = await import('../lib/cli/args.js');
  t.throws(() => intArg('--paired', 2)('1'), { message: 'Expected integer >= 2 for --paired but received "1"' });
  t.throws(() => intArg('--steps', 1)('0'), { message: 'Expected positive integer for --steps but received "0"' });
  t.throws(() => intArg('--seed', 0)('-1'), { message: 'Expected non-negative integer for --seed but received "-1"' });
  t.throws(() => intArg('--n')('2.5'), { message: 'Expected integer for --n but received "2.5"' });
  t.is(intArg('--paired', 2)('2'), 2);
});
