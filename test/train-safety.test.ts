// Training must not crash or lose work: damaged checkpoints are refused before use (content checksum,
// values, step), killed writers' temp files are cleaned up, an abort checkpoints the last completed step
// (and resuming from it is bitwise the uninterrupted run), and the step plan does not grow with epochs.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbortError, CheckpointError, InvalidArgumentError } from '../lib/errors.js';
import { parseGgufMetadata, readGgufMetadata } from '../lib/gguf/reader.js';
import { atomicTempName } from '../lib/io/atomic.js';
import { isLiveProcess, removeStaleTemps, tempOwnerPid } from '../lib/io/stale-temp.js';
import { epochOrder, planSteps, type StepPlan } from '../lib/train/batches.js';
import { trainDpo } from '../lib/train/preference.js';
import { trainSft } from '../lib/train/sft.js';
import { TMP, tinyModel } from './helpers/models.js';

const DATA = Array.from({ length: 12 }, (_, i) => ({
  prompt: `Question: What is ${i} + ${i + 3}?\nAnswer:`,
  response: ` ${i} + ${i + 3} = ${2 * i + 3}. #### ${2 * i + 3}`,
}));
const BASE = { data: DATA, batch: 4, lr: 5e-3, seed: 1, threads: 1, warmupRatio: 0 } as const;
const out = (name: string) => path.join(TMP, `safety-${name}`);
const stepOf = async (ckpt: string) => Number((await readGgufMetadata(ckpt)).values.get('w2s.checkpoint.step'));

// ---- the checkpoint checksum, written out independently of native/core/lora.cpp -----------------------------
const MASK = (1n << 64n) - 1n;
class Fnv {
  h = 0xcbf29ce484222325n;
  bytes(b: Uint8Array) {
    for (const x of b) this.h = ((this.h ^ BigInt(x)) * 0x100000001b3n) & MASK;
  }
  u64(v: bigint | number) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.bytes(b);
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
}

async function checksumOf(file: Uint8Array): Promise<bigint> {
  const meta = await parseGgufMetadata(file);
  const h = new Fnv();
  h.str('w2s-checkpoint-fnv1a64-v1');
  for (const key of ['general.architecture', 'adapter.lora.alpha', 'w2s.lora.rank', 'w2s.lora.targets', 'w2s.checkpoint.step', 'w2s.checkpoint.state']) {
    h.str(key);
    const v = meta.values.get(key)!;
    if (typeof v === 'string') h.str(v);
    else if (key === 'adapter.lora.alpha') {
      const b = new DataView(new ArrayBuffer(4));
      b.setFloat32(0, v as number, true);
      h.u64(b.getUint32(0, true));
    } else h.u64(v as number | bigint);
  }
  h.u64(meta.tensors.length);
  for (const t of meta.tensors) {
    h.str(t.name);
    h.u64(t.type);
    for (let d = 0; d < 4; d++) h.u64(t.ne[d] ?? 1);
    h.u64(t.bytes);
    h.bytes(file.subarray(meta.dataOffset + t.offset, meta.dataOffset + t.offset + t.bytes));
  }
  return h.h;
}

/** Byte offset of the value of KV `key` (after its key string and u32 type). */
function kvValueOffset(file: Buffer, key: string): number {
  const at = file.indexOf(Buffer.from(key, 'utf8'));
  if (at < 0) throw new Error(`no key ${key}`);
  return at + Buffer.byteLength(key) + 4;
}

/** Rewrites the stored checksum so it matches the (edited) content: damage that the checksum cannot see. */
async function resign(file: Buffer): Promise<Buffer> {
  file.writeBigUInt64LE(await checksumOf(file), kvValueOffset(file, 'w2s.checkpoint.checksum'));
  return file;
}

async function tensorAt(file: Buffer, name: string): Promise<{ start: number; count: number }> {
  const meta = await parseGgufMetadata(file);
  const t = meta.tensors.find((x) => x.name === name)!;
  return { start: meta.dataOffset + t.offset, count: t.bytes / 4 };
}

// One run of 6 steps stopped at step 3: its checkpoint is what each damage test edits.
const COMMON = { ...BASE, epochs: 2 };
let source: Promise<{ model: string; checkpoint: string; full: Buffer }> | undefined;
function sourceRun() {
  source ??= (async () => {
    const model = await tinyModel();
    const r = await trainSft({ ...COMMON, model, out: out('src.gguf'), maxSteps: 3 });
    const full = await trainSft({ ...COMMON, model, out: out('src-full.gguf') });
    return { model, checkpoint: r.checkpoint, full: fs.readFileSync(full.adapter) };
  })();
  return source;
}

/** Resumes from `bytes` (written to a file of its own) and expects a refusal; checks nothing was used or written. */
async function expectRefused(t: import('ava').ExecutionContext, name: string, bytes: Buffer, message: RegExp): Promise<void> {
  const { model } = await sourceRun();
  const resume = out(`${name}.ckpt`);
  fs.writeFileSync(resume, bytes);
  const o = { ...COMMON, model, out: out(`${name}.gguf`), resume };
  const steps: number[] = [];
  const e = await t.throwsAsync(trainSft({ ...o, onProgress: (p) => steps.push(p.step) }));
  t.log(e!.message);
  t.true(e instanceof CheckpointError, `${e!.name}: ${e!.message}`);
  t.is((e as CheckpointError).code, 'ERR_W2S_CHECKPOINT');
  t.regex(e!.message, message);
  t.regex(e!.message, /delete it and start the run again/);
  t.deepEqual(steps, []); // not one step trained on the damaged state
  t.false(fs.existsSync(o.out) || fs.existsSync(`${o.out}.ckpt`) || fs.existsSync(`${o.out}.log.json`));
  t.deepEqual(fs.readFileSync(resume), bytes);
}

test('the checkpoint carries a checksum equal to an independent FNV-1a of its content, and an intact copy resumes', async (t) => {
  const { model, checkpoint, full } = await sourceRun();
  const bytes = fs.readFileSync(checkpoint);
  const stored = (await parseGgufMetadata(bytes)).values.get('w2s.checkpoint.checksum');
  t.is(typeof stored, 'bigint');
  t.is(stored, await checksumOf(bytes));
  const copy = out('intact.ckpt');
  fs.writeFileSync(copy, bytes);
  const r = await trainSft({ ...COMMON, model, out: out('intact.gguf'), resume: copy });
  t.is(r.history.length, 6);
  t.deepEqual(fs.readFileSync(r.adapter), full);
});

test('a bit flip in tensor data is refused as damaged', async (t) => {
  const bytes = Buffer.from(fs.readFileSync((await sourceRun()).checkpoint));
  const { start } = await tensorAt(bytes, 'blk.1.ffn_up.weight.lora_b');
  bytes[start + 5]! ^= 0x10;
  await expectRefused(t, 'bitflip', bytes, /damaged \(its content does not match its checksum\)/);
});

test('an edited step is refused: without a matching checksum, and with one when the run state disagrees', async (t) => {
  const src = fs.readFileSync((await sourceRun()).checkpoint);
  const edited = Buffer.from(src);
  edited.writeBigUInt64LE(2n, kvValueOffset(edited, 'w2s.checkpoint.step'));
  await expectRefused(t, 'step-kv', edited, /damaged \(its content does not match its checksum\)/);
  // Same edit, checksum recomputed: the tensors say step 2, the run state step 3.
  await expectRefused(t, 'step-kv-signed', await resign(Buffer.from(edited)), /damaged \(its run state is at step 3, its tensors at step 2\)/);
  // The run state's step edited instead (same length), checksum recomputed.
  const state = Buffer.from(src);
  const at = state.indexOf('"step":3,"history"');
  t.true(at > 0);
  state.write('"step":2', at);
  await expectRefused(t, 'step-state-signed', await resign(state), /damaged \(its run state is at step 2, its tensors at step 3\)/);
});

test('a negative AdamW second moment or a non-finite value is refused even with a valid checksum', async (t) => {
  const src = fs.readFileSync((await sourceRun()).checkpoint);
  const neg = Buffer.from(src);
  const v = await tensorAt(neg, 'blk.0.attn_q.weight.lora_a.adam_v');
  const k = [...Array(v.count).keys()].find((i) => neg.readFloatLE(v.start + 4 * i) > 0)!;
  neg.writeFloatLE(-neg.readFloatLE(v.start + 4 * k), v.start + 4 * k);
  await expectRefused(t, 'neg-v', await resign(neg), new RegExp(`tensor blk\\.0\\.attn_q\\.weight\\.lora_a\\.adam_v holds a negative AdamW second moment -\\d[0-9.e-]* at element ${k}`));
  for (const [name, value] of [['nan', NaN], ['inf', Infinity]] as const) {
    const bad = Buffer.from(src);
    const a = await tensorAt(bad, 'blk.1.attn_v.weight.lora_a');
    bad.writeFloatLE(value, a.start + 4 * 7);
    await expectRefused(t, `${name}-a`, await resign(bad), /tensor blk\.1\.attn_v\.weight\.lora_a holds a non-finite value (-?nan|inf) at element 7/);
  }
});

test('a checkpoint without a checksum, or with a KV of the wrong type, is refused without aborting the process', async (t) => {
  const src = fs.readFileSync((await sourceRun()).checkpoint);
  const old = Buffer.from(src);
  old.write('w2s.checkpoint.checksuX', kvValueOffset(old, 'w2s.checkpoint.checksum') - 4 - 'w2s.checkpoint.checksum'.length);
  const { model } = await sourceRun();
  const file = out('nosum.ckpt');
  fs.writeFileSync(file, old);
  const e = await t.throwsAsync(trainSft({ ...COMMON, model, out: out('nosum.gguf'), resume: file }));
  t.true(e instanceof CheckpointError);
  t.regex(e!.message, /has no content checksum \(written by an older weak2strong\); delete it and start the run again/);
  t.false(fs.existsSync(out('nosum.gguf')));
  // The step as i64 (type 11, same size): gguf_get_val_u64 would have asserted and killed Node.
  const typed = Buffer.from(src);
  typed.writeUInt32LE(11, kvValueOffset(typed, 'w2s.checkpoint.step') - 4);
  await expectRefused(t, 'step-type', typed, /damaged \(key w2s\.checkpoint\.step has type i64, expected u64\)/);
  const sumType = Buffer.from(src);
  sumType.writeUInt32LE(11, kvValueOffset(sumType, 'w2s.checkpoint.checksum') - 4);
  await expectRefused(t, 'sum-type', sumType, /damaged \(its checksum is not a u64\)/);
});

// ---- stale temp files ----------------------------------------------------------------------------------------
/** A PID that surely ran and is gone: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  if (r.pid === undefined || isLiveProcess(r.pid)) throw new Error('could not get a dead PID');
  return r.pid;
}

test('tempOwnerPid matches exactly the two writers\' temp names', (t) => {
  t.is(tempOwnerPid('a.gguf', 'a.gguf.tmp-123'), 123);
  t.is(tempOwnerPid('a.gguf', path.basename(atomicTempName('/x/a.gguf', 4567))), 4567);
  for (const name of ['a.gguf', 'a.gguf.tmp-', 'a.gguf.tmp-0', 'a.gguf.tmp-12a', 'a.gguf.tmp-12.bak', 'xa.gguf.tmp-12', '.a.gguf.tmp-12',
    '.a.gguf.tmp-12-', 'a.gguf.tmp-12-34', 'b.gguf.tmp-12', 'a.gguf.tmp-012', 'a.gguf.tmp-12345678901']) {
    t.is(tempOwnerPid('a.gguf', name), undefined, name);
  }
  t.true(isLiveProcess(process.pid));
  t.true(isLiveProcess(0)); // a process group, never treated as dead
});

test('stale temp files of this run\'s outputs are removed at the start of training; nothing else is touched', async (t) => {
  const dir = fs.mkdtempSync(path.join(TMP, 'stale-'));
  const target = path.join(dir, 'run.gguf');
  const dead = deadPid();
  const stale = [`${target}.tmp-${dead}`, `${target}.ckpt.tmp-${dead}`, atomicTempName(`${target}.log.json`, dead)];
  const kept = [
    `${target}.tmp-${process.ppid}`, // a live writer (our parent; not this process, whose own writes use its PID)
    `${target}.tmp-${dead}.bak`, `${target}.tmp-x${dead}`, path.join(dir, `other.gguf.tmp-${dead}`), path.join(dir, `.run.gguf.tmp-${dead}`),
    path.join(dir, 'notes.txt'),
  ];
  for (const f of [...stale, ...kept]) fs.writeFileSync(f, 'x');
  const folder = `${target}.ckpt.tmp-${deadPid()}`; // not a regular file
  fs.mkdirSync(folder);
  const link = `${target}.tmp-${deadPid()}`;
  fs.symlinkSync(path.join(dir, 'notes.txt'), link);

  const r = await trainSft({ ...BASE, model: await tinyModel(), out: target, epochs: 1, maxSteps: 1 });
  t.is(r.steps, 1);
  for (const f of stale) t.false(fs.existsSync(f), f);
  for (const f of [...kept, folder]) t.true(fs.existsSync(f), f);
  t.true(fs.lstatSync(link).isSymbolicLink());
  t.deepEqual(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'x');
  // Exactly the kept files, the run's outputs and nothing else (no temp of the run itself).
  const expected = [...kept, folder, link, target, `${target}.ckpt`, `${target}.log.json`].map((f) => path.basename(f)).sort();
  t.deepEqual(fs.readdirSync(dir).sort(), expected);

  // The helper alone: a resume file that happens to have a temp's name stays.
  const resumeLike = `${target}.ckpt.tmp-${dead}`;
  fs.writeFileSync(resumeLike, 'x');
  t.deepEqual(await removeStaleTemps([`${target}.ckpt`], [resumeLike]), []);
  t.true(fs.existsSync(resumeLike));
  t.deepEqual(await removeStaleTemps([`${target}.ckpt`]), [resumeLike]);
});

// ---- abort ---------------------------------------------------------------------------------------------------
test('an abort between steps checkpoints the last step; resuming gives the uninterrupted adapter bitwise', async (t) => {
  const model = await tinyModel();
  const common = { ...BASE, model, epochs: 3 }; // 9 steps
  const full = await trainSft({ ...common, out: out('ab-full.gguf') });
  const controller = new AbortController();
  const o = { ...common, out: out('ab-part.gguf'), signal: controller.signal, checkpointEvery: 2 };
  const e = await t.throwsAsync(trainSft({ ...o, onProgress: (p) => { if (p.step === 5) controller.abort(); } }));
  t.log(e!.message);
  t.true(e instanceof AbortError);
  t.is(e!.name, 'AbortError');
  const ckpt = `${o.out}.ckpt`;
  t.is(e!.message, `Training was aborted after step 5 of 9; checkpoint ${ckpt} holds step 5: continue with --resume ${ckpt} (API: resume: '${ckpt}')`);
  t.is(await stepOf(ckpt), 5); // not the periodic one of step 4
  t.false(fs.existsSync(o.out));
  const resumed = await trainSft({ ...common, out: out('ab-resumed.gguf'), resume: ckpt });
  t.deepEqual(resumed.history.map((h) => h.loss), full.history.map((h) => h.loss));
  t.deepEqual(fs.readFileSync(resumed.adapter), fs.readFileSync(full.adapter));
});

test('an abort inside a step drops that step and checkpoints the one before; resuming is bitwise the full run', async (t) => {
  const model = await tinyModel();
  const common = { ...BASE, model, epochs: 3, gradAccum: 2 }; // 3 micro-batches per epoch: steps of 2 + 1, 6 steps
  const full = await trainSft({ ...common, out: out('mid-full.gguf') });
  // The loop reads `aborted` once per micro-batch: reads 0, 1 (step 1), 2 (step 2), 3, 4 (step 3). Abort at read 4,
  // after step 3's first micro-batch was accumulated.
  const signal = new AbortController().signal;
  let reads = 0;
  Object.defineProperty(signal, 'aborted', { get: () => reads++ >= 4 });
  const o = { ...common, out: out('mid-part.gguf'), signal };
  const steps: number[] = [];
  const e = await t.throwsAsync(trainSft({ ...o, onProgress: (p) => steps.push(p.step) }));
  t.true(e instanceof AbortError);
  t.deepEqual(steps, [1, 2]);
  t.regex(e!.message, /aborted after step 2 of 6; checkpoint .*mid-part\.gguf\.ckpt holds step 2: continue with --resume /);
  t.is(await stepOf(`${o.out}.ckpt`), 2);
  const resumed = await trainSft({ ...common, out: out('mid-resumed.gguf'), resume: `${o.out}.ckpt` });
  t.deepEqual(fs.readFileSync(resumed.adapter), fs.readFileSync(full.adapter));
});

test('an abort with nothing new to save writes no checkpoint and says which one to use', async (t) => {
  const model = await tinyModel();
  const controller = new AbortController();
  controller.abort();
  const o = { ...BASE, model, epochs: 2, out: out('ab-none.gguf'), signal: controller.signal };
  const e = await t.throwsAsync(trainSft(o));
  t.true(e instanceof AbortError);
  t.is(e!.message, 'Training was aborted before its first step completed; no checkpoint was written');
  t.false(fs.existsSync(`${o.out}.ckpt`));
  // Right after a resume: the resume file is the checkpoint to go on from.
  const part = await trainSft({ ...BASE, model, epochs: 2, out: out('ab-none-src.gguf'), maxSteps: 2 });
  const e2 = await t.throwsAsync(trainSft({ ...o, resume: part.checkpoint }));
  t.true(e2 instanceof AbortError);
  t.is(e2!.message, `Training was aborted; no step completed since the checkpoint of step 2 (${part.checkpoint}): continue with --resume ${part.checkpoint} (API: resume: '${part.checkpoint}')`);
  t.false(fs.existsSync(`${o.out}.ckpt`));
});

test('DPO: the abort checkpoint keeps the reference log-probs, and resuming is bitwise the full run', async (t) => {
  const model = await tinyModel();
  const pairs = DATA.slice(0, 8).map((d, i) => ({ prompt: d.prompt, chosen: d.response, rejected: ` ${i} + ${i + 3} = ${2 * i + 5}. #### ${2 * i + 5}` }));
  const common = { ...BASE, data: pairs, model, epochs: 2 }; // 4 steps
  const full = await trainDpo({ ...common, out: out('dpo-full.gguf') });
  const controller = new AbortController();
  const o = { ...common, out: out('dpo-part.gguf'), signal: controller.signal };
  const e = await t.throwsAsync(trainDpo({ ...o, onProgress: (p) => { if (p.step === 1) controller.abort(); } }));
  t.true(e instanceof AbortError);
  t.regex(e!.message, /after step 1 of 4/);
  const resumed = await trainDpo({ ...common, out: out('dpo-resumed.gguf'), resume: `${o.out}.ckpt` });
  t.deepEqual(resumed.history.map((h) => h.loss), full.history.map((h) => h.loss));
  t.deepEqual(fs.readFileSync(resumed.adapter), fs.readFileSync(full.adapter));
});

// ---- the step plan -------------------------------------------------------------------------------------------
/** The eager plan as it was built before: every epoch materialised. */
function eagerPlan(n: number, epochs: number, batch: number, gradAccum: number, seed: number): StepPlan[] {
  const steps: StepPlan[] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = epochOrder(n, seed, epoch);
    const micro: number[][] = [];
    for (let i = 0; i < order.length; i += batch) micro.push(order.slice(i, i + batch));
    for (let i = 0; i < micro.length; i += gradAccum) steps.push({ epoch, micro: micro.slice(i, i + gradAccum) });
  }
  return steps;
}

test('the lazy step plan equals the eager one step for step', (t) => {
  for (const [n, epochs, batch, gradAccum, seed] of [[12, 3, 4, 1, 1], [13, 2, 4, 2, 7], [1, 4, 8, 3, 0], [10, 3, 3, 4, 5], [7, 1, 1, 1, 2]] as const) {
    const lazy = planSteps(n, epochs, batch, gradAccum, seed);
    const eager = eagerPlan(n, epochs, batch, gradAccum, seed);
    t.is(lazy.length, eager.length);
    t.deepEqual(Array.from({ length: lazy.length }, (_, s) => lazy.at(s)), eager, `${[n, epochs, batch, gradAccum, seed]}`);
    // Out of order (resume starts mid-run) gives the same steps.
    t.deepEqual(lazy.at(eager.length - 1), eager.at(-1));
    t.deepEqual(lazy.at(0), eager[0]);
  }
  t.throws(() => planSteps(12, 3, 4, 1, 1).at(9), { instanceOf: RangeError });
  const huge = planSteps(12, 10_000_000, 4, 1, 1);
  t.is(huge.length, 30_000_000);
  t.deepEqual(huge.at(0), planSteps(12, 1, 4, 1, 1).at(0));
  t.deepEqual(huge.at(huge.length - 1).epoch, 9_999_999);
  const e = t.throws(() => planSteps(12, 2 ** 52, 4, 1, 1), { instanceOf: InvalidArgumentError });
  t.regex(e!.message, /for epochs but received 4503599627370496/);
});

test('10,000,000 epochs with maxSteps 1 finish quickly with bounded memory and train the same first step as 1 epoch', async (t) => {
  const model = await tinyModel();
  const one = await trainSft({ ...BASE, model, epochs: 1, maxSteps: 1, out: out('ep1.gguf') });
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().heapUsed); }, 5);
  const t0 = performance.now();
  let many;
  try {
    many = await trainSft({ ...BASE, model, epochs: 10_000_000, maxSteps: 1, out: out('ep1e7.gguf') });
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, process.memoryUsage().heapUsed);
  const seconds = (performance.now() - t0) / 1000;
  t.log(`10M epochs, 1 step: ${seconds.toFixed(2)} s, heap +${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
  t.is(many.steps, 1);
  t.true(seconds < 30);
  t.true(peak - before < 64 * 2 ** 20);
  t.is(many.history[0]!.loss, one.history[0]!.loss);
  t.is(many.history[0]!.lr, one.history[0]!.lr);
  t.deepEqual(fs.readFileSync(many.adapter), fs.readFileSync(one.adapter));
  await t.throwsAsync(trainSft({ ...BASE, model, epochs: 2 ** 52, maxSteps: 1, out: out('ep-huge.gguf') }), { instanceOf: InvalidArgumentError, message: /for epochs/ });
});

test('w2s train sft --epochs 10000000 --max-steps 1 runs one step', async (t) => {
  const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
  const data = out('cli.jsonl');
  fs.writeFileSync(data, DATA.map((d) => JSON.stringify(d)).join('\n') + '\n');
  const target = out('cli-huge.gguf');
  const r = spawnSync(process.execPath, [cli, 'train', 'sft', '--model', await tinyModel(), '--data', data, '--out', target,
    '--epochs', '10000000', '--max-steps', '1', '--threads', '1'], { encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout.trim(), /^step 1\/1 epoch \d loss /);
  t.true(fs.existsSync(target));
});
