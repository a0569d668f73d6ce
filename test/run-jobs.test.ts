// `jobs` in a run config: independent steps overlap, and that changes when a step runs, never what it
// computes. One job runs the steps in the method's sequential order; two give byte-identical step files;
// a failing step stops its siblings, the run rejects with that step's error and leaves no partial folder.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig, type RunConfig } from '../lib/pipeline/run/config.js';
import { computeQueue } from '../lib/job-queue.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import type { StepEvents } from '../lib/pipeline/run/steps.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTestSerial, gsm8kDataYaml } from './helpers/shared-data.js';

async function config(name: string, jobs: number): Promise<RunConfig> {
  const weak = await tinyModel({ ctx: 1024, seed: 21 });
  const strong = await tinyModel({ ctx: 2048, embd: 96, heads: 4, kvHeads: 2, ff: 192, seed: 22 });
  const file = path.join(TMP, `${name}.yaml`);
  const text = [
    `out: ${JSON.stringify(path.join(TMP, name))}`,
    `jobs: ${jobs}`,
    `weak: { model: ${JSON.stringify(weak)} }`,
    `strong: { model: ${JSON.stringify(strong)} }`,
    ...gsm8kDataYaml({ train1: 16, train2: 16, test: 16 }),
    // One thread per step: two jobs then use two cores, and results do not depend on a thread count.
    'generation: { maxTokens: 16, threads: 1, parallel: 8 }',
    'train:',
    '  weak: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    '  strong: { epochs: 1, batch: 8, lr: 0.001, maxLen: 256 }',
    '  preference: { epochs: 1, batch: 4, maxLen: 256 }',
    'stage1: { keepEmpty: true }',
    'stage2: { samples: 4, minConfidence: 0.5, rejectConfidence: 0.5 }',
    '',
  ].join('\n');
  fs.writeFileSync(file, text);
  return parseConfig(text, file);
}

/** Events that record the start order and the most steps running at once. */
function recorder(onStart?: (name: string) => void) {
  const started: string[] = [];
  let running = 0;
  let most = 0;
  let busiest = 0;
  const busyIn = new Set<string>();
  const events: StepEvents = {
    start(name, skipped) {
      if (skipped) return;
      started.push(name);
      most = Math.max(most, ++running);
      onStart?.(name);
    },
    progress(name) {
      // Native work of two steps at once, not just two steps taking turns on the compute queue.
      busiest = Math.max(busiest, computeQueue.busyThreads);
      if (computeQueue.busyThreads > 1) busyIn.add(name);
    },
    end(_name, _m, skipped) {
      if (!skipped) running--;
    },
  };
  return { events, started, most: () => most, busiestThreads: () => busiest, busyIn };
}

/** Every file of every step folder with its bytes, but training logs and checkpoints (they hold wall-clock times and paths). */
function stepFiles(out: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const step of fs.readdirSync(out).filter((e) => /^\d\d-/.test(e)).sort()) {
    for (const f of fs.readdirSync(path.join(out, step)).filter((f) => f !== 'manifest.json' && !f.endsWith('.log.json') && !f.endsWith('.ckpt'))) {
      files.set(`${step}/${f}`, fs.readFileSync(path.join(out, step, f)));
    }
  }
  return files;
}

dataTestSerial('jobs: 2 overlaps steps and writes the same step files as jobs: 1, which runs them in sequential order', async (t) => {
  const one = recorder();
  const a = await runMethod(await config('jobs1', 1), one.events);
  const two = recorder();
  const b = await runMethod(await config('jobs2', 2), two.events);

  // The method's sequential order (method.md §4–§7), and one step at a time.
  t.deepEqual(one.started, [
    '01-weak-sft', '02-d-weak', '03-weak-icl', '04-select-1', '05-strong-sft-1', '10-full-weak-ft', '11-ceiling',
    '20-stage2-sample', '21-pairs', ...(one.started.includes('22-stage2-orpo') ? ['22-stage2-orpo'] : []),
    '30-eval-weak', '30-eval-strong-base', '30-eval-full-weak-ft', '30-eval-stage1', ...(one.started.includes('30-eval-stage2') ? ['30-eval-stage2'] : []), '30-eval-ceiling',
  ]);
  t.is(one.most(), 1);
  t.is(two.most(), 2, `start order with 2 jobs: ${two.started.join(', ')}`);
  t.is(one.busiestThreads(), 1, [...one.busyIn].join(', '));
  t.is(two.busiestThreads(), 2, 'two 1-thread native jobs ran at once');
  t.notDeepEqual(two.started, one.started, 'two jobs start independent steps earlier');
  t.deepEqual([...two.started].sort(), [...one.started].sort());

  const fa = stepFiles(a.out);
  const fb = stepFiles(b.out);
  t.deepEqual([...fb.keys()], [...fa.keys()]);
  for (const [k, v] of fa) t.true(v.equals(fb.get(k)!), `${k} differs between 1 and 2 jobs`);
  t.deepEqual(b.metrics, a.metrics);
  // metrics.json lists the steps in the sequential order whatever the jobs.
  t.deepEqual(b.steps.map((s) => s.name), a.steps.map((s) => s.name));
  t.log(`1 job: ${a.steps.reduce((x, s) => x + s.seconds, 0).toFixed(1)} s of steps; 2 jobs: order ${two.started.join(', ')}`);
});

dataTestSerial('with jobs: 2 a failing step stops the run with its own error; nothing partial remains and a re-run resumes', async (t) => {
  const cfg = await config('jobs-fail', 2);
  // Stage I's SFT fails while a baseline runs beside it.
  const boom = new Error('injected failure in 05-strong-sft-1');
  const rec = recorder((name) => { if (name === '05-strong-sft-1') throw boom; });
  const err = await t.throwsAsync(runMethod(cfg, rec.events));
  t.is(err, boom);
  t.deepEqual(fs.readdirSync(cfg.out).filter((e) => e.startsWith('.tmp-')), []);
  // Nothing started after the failure's abort reached the scheduler, and the failed step has no folder.
  t.false(fs.existsSync(path.join(cfg.out, '05-strong-sft-1')));
  t.false(rec.started.includes('20-stage2-sample'), rec.started.join(', '));
  // Whatever finished is kept: the re-run skips it.
  const finished = fs.readdirSync(cfg.out).filter((e) => fs.existsSync(path.join(cfg.out, e, 'manifest.json')));
  t.true(finished.includes('01-weak-sft'));
  const again = recorder();
  const r = await runMethod(cfg, again.events);
  for (const f of finished) t.false(again.started.includes(f), `${f} ran again`);
  t.is(typeof (r.metrics.accuracy as Record<string, number>).ceiling, 'number');
});
