// Runs native compute jobs (sampling, scoring, a training step) so that their threads never outnumber the
// CPUs. ggml's worker threads spin while they wait: two jobs that each use every core are far slower at
// once than one after the other (measured: one sample call 2 s alone, 166 s beside a second 2-thread job
// on 2 cores). Jobs that together fit the CPUs, e.g. two 1-thread jobs on 2 cores (`w2s run` with
// `jobs: 2`, `generation.threads: 1`), run at once. Jobs start in the order they were queued.
import os from 'node:os';
import { AbortError } from './errors.js';

export interface JobOptions {
  /** Rejects at once if it aborts while the job waits; the job is then never started. */
  signal?: AbortSignal;
  /** CPU threads the job keeps busy. Defaults to the whole budget: the job runs alone. */
  threads?: number;
}

export class JobQueue {
  private busy = 0;
  private readonly waiting: { threads: number; start: () => void }[] = [];

  /** `budget`: threads that may run at once (the CPUs this process may use). */
  constructor(readonly budget = Math.max(1, os.availableParallelism())) {}

  /** Threads of the jobs running now. */
  get busyThreads(): number {
    return this.busy;
  }

  /** Queues `job`; it starts when it is first in line and its threads fit beside the running jobs'. */
  run<T>(job: () => Promise<T>, o: JobOptions = {}): Promise<T> {
    const threads = Math.min(this.budget, Math.max(1, Math.floor(o.threads ?? this.budget)));
    return new Promise<T>((resolve, reject) => {
      let started = false;
      const onAbort = () => {
        if (started) return;
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new AbortError());
        this.pump();
      };
      const entry = {
        threads,
        start: () => {
          started = true;
          o.signal?.removeEventListener('abort', onAbort);
          this.busy += threads;
          // Threads are given back before the caller hears of the result: its next job must not count them.
          const settle = () => {
            this.busy -= threads;
            this.pump();
          };
          job().then((v) => (settle(), resolve(v)), (err: unknown) => (settle(), reject(err)));
        },
      };
      if (o.signal?.aborted) return reject(new AbortError());
      o.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
      this.pump();
    });
  }

  private pump(): void {
    // Strictly in order: a big job at the head is never overtaken (it would starve behind small ones).
    while (this.waiting.length > 0 && (this.busy === 0 || this.busy + this.waiting[0]!.threads <= this.budget)) {
      this.waiting.shift()!.start();
    }
  }
}

/** The process-wide queue every native compute job goes through. */
export const computeQueue = new JobQueue();
