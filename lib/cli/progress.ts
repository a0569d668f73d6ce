// Progress for long CLI commands: a bar with ETA on a TTY (cli-progress), plain throttled lines otherwise
// (CI logs, pipes). Always on stderr, so stdout stays machine-readable.
import cliProgress from 'cli-progress';

export interface ProgressReporter {
  update(done: number, extra?: string): void;
  /** Prints a line to stdout (above the bar on a TTY, so the two never garble each other). */
  log(line: string): void;
  stop(final?: string): void;
}

export function createProgress(label: string, total: number, unit: string): ProgressReporter {
  if (process.stderr.isTTY) {
    const multi = new cliProgress.MultiBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | ETA {eta_formatted} | {extra}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const bar = multi.create(total, 0, { extra: '' });
    return {
      update: (done, extra = '') => bar.update(done, { extra }),
      log: (line) => (process.stdout.isTTY ? multi.log(`${line}\n`) : process.stdout.write(`${line}\n`)),
      stop: (final) => {
        multi.stop();
        if (final) process.stderr.write(`${final}\n`);
      },
    };
  }
  const start = Date.now();
  let lastPrint = 0;
  return {
    update(done, extra = '') {
      const now = Date.now();
      if (now - lastPrint < 2000 && done < total) return;
      lastPrint = now;
      const elapsed = (now - start) / 1000;
      const eta = done > 0 ? ((total - done) * elapsed) / done : NaN;
      process.stderr.write(`${label}: ${done}/${total} ${unit} (${elapsed.toFixed(1)} s elapsed${Number.isFinite(eta) ? `, ETA ${eta.toFixed(1)} s` : ''})${extra ? ` ${extra}` : ''}\n`);
    },
    log(line) {
      process.stdout.write(`${line}\n`);
    },
    stop(final) {
      if (final) process.stderr.write(`${final}\n`);
    },
  };
}
