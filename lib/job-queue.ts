// Runs native compute jobs one at a time per process. Each job (sampling, scoring, a training step) uses
// every physical core, and ggml's worker threads spin while they wait: two jobs at once on a small machine
// are far slower than the two one after the other (measured: one sample call 2 s alone, 166 s beside a
// second 2-thread job on 2 cores).
import { AbortError } from './errors.js';

export class JobQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * Queues `job`. If `signal` aborts while the job is still waiting, the returned promise rejects at once
   * and the job is skipped when its turn comes.
   */
  run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const turn = this.tail.then(
      () => (signal?.aborted ? Promise.reject(new AbortError()) : job()),
      () => (signal?.aborted ? Promise.reject(new AbortError()) : job()),
    );
    this.tail = turn.catch(() => undefined);
    if (!signal) return turn;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new AbortError());
      signal.addEventListener('abort', onAbort, { once: true });
      turn.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }
}

/** The process-wide queue every native compute job goes through. */
export const computeQueue = new JobQueue();
