// The compute queue's rule: jobs run at once while their threads fit the budget (the CPUs), strictly in
// the order they were queued; a job that asks for more than the budget runs alone; a job aborted while it
// waits never starts and does not hold up the ones behind it.
import test from 'ava';
import { JobQueue } from '../lib/job-queue.js';

/** A job that records when it starts and ends, and finishes when `release()` is called. */
function job(log: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return {
    release: () => release(),
    run: async () => {
      log.push(`${name}+`);
      await done;
      log.push(`${name}-`);
      return name;
    },
  };
}
const tick = () => new Promise((r) => setImmediate(r));

test('jobs that fit the budget run at once; the next waits for threads, in order', async (t) => {
  const q = new JobQueue(2);
  const log: string[] = [];
  const a = job(log, 'a');
  const b = job(log, 'b');
  const c = job(log, 'c');
  const d = job(log, 'd');
  const pa = q.run(a.run, { threads: 1 });
  const pb = q.run(b.run, { threads: 1 });
  const pc = q.run(c.run, { threads: 2 });
  const pd = q.run(d.run, { threads: 1 });
  await tick();
  t.deepEqual(log, ['a+', 'b+']);
  a.release();
  await pa;
  await tick();
  // c needs both threads: it waits for b, and d (which would fit) does not overtake it.
  t.deepEqual(log, ['a+', 'b+', 'a-']);
  b.release();
  await pb;
  await tick();
  t.deepEqual(log.slice(3), ['b-', 'c+']);
  c.release();
  d.release();
  t.deepEqual(await Promise.all([pc, pd]), ['c', 'd']);
  t.deepEqual(log.slice(5), ['c-', 'd+', 'd-']);
});

test('no thread count means the whole budget; more than the budget runs alone instead of never', async (t) => {
  const q = new JobQueue(2);
  const log: string[] = [];
  const a = job(log, 'a');
  const b = job(log, 'b');
  const pa = q.run(a.run);
  const pb = q.run(b.run, { threads: 64 });
  await tick();
  t.deepEqual(log, ['a+']);
  a.release();
  await pa;
  await tick();
  t.deepEqual(log, ['a+', 'a-', 'b+']);
  b.release();
  t.is(await pb, 'b');
});

test('a job aborted while it waits rejects at once, never starts, and lets the next one in', async (t) => {
  const q = new JobQueue(1);
  const log: string[] = [];
  const a = job(log, 'a');
  const b = job(log, 'b');
  const c = job(log, 'c');
  const pa = q.run(a.run, { threads: 1 });
  const ctl = new AbortController();
  const pb = q.run(b.run, { threads: 1, signal: ctl.signal });
  const pc = q.run(c.run, { threads: 1 });
  ctl.abort();
  await t.throwsAsync(pb, { name: 'AbortError' });
  a.release();
  await pa;
  await tick();
  t.deepEqual(log, ['a+', 'a-', 'c+']);
  c.release();
  t.is(await pc, 'c');
  // Already aborted: rejected without queueing.
  await t.throwsAsync(q.run(b.run, { signal: ctl.signal }), { name: 'AbortError' });
  t.false(log.includes('b+'));
});

test('a failing job frees its threads', async (t) => {
  const q = new JobQueue(1);
  await t.throwsAsync(q.run(async () => { throw new Error('boom'); }, { threads: 1 }), { message: 'boom' });
  t.is(await q.run(async () => 'next', { threads: 1 }), 'next');
});
