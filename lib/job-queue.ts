// Runs a model's jobs one at a time: each job owns a context and all CPU threads, so running two at once
// would only make both slower (and double the KV memory).
export class JobQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job, job);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
