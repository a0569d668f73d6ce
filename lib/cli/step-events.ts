// Live view of a run folder's steps on stderr: a bar with ETA for each running step on a TTY (one bar per
// step when several run at once, `jobs` > 1), plain throttled lines otherwise, and a line per finished
// step with its first statistics. Shared by `w2s run` and `w2s demo`.
import cliProgress from 'cli-progress';
import type { StepEvents } from '../pipeline/run/steps.js';
import { createProgress, type ProgressReporter } from './progress.js';

interface Bars {
  add(label: string, total: number, unit: string): ProgressReporter;
  /** A line above the bars (they would garble a plain write on a TTY). */
  line(text: string): void;
}

/** All running steps' bars in one cli-progress MultiBar, created while at least one bar is shown. */
function ttyBars(): Bars {
  let multi: cliProgress.MultiBar | undefined;
  let shown = 0;
  return {
    add(label, total, unit) {
      multi ??= new cliProgress.MultiBar({ format: '{label} [{bar}] {percentage}% | {value}/{total} {unit} | ETA {eta_formatted} | {extra}', stream: process.stderr, hideCursor: true, etaBuffer: 50 },
        cliProgress.Presets.shades_classic);
      const bar = multi.create(total, 0, { label, unit, extra: '' });
      shown++;
      return {
        update: (done, extra = '') => bar.update(done, { extra }),
        log: (l) => process.stdout.write(`${l}\n`),
        stop: () => {
          multi?.remove(bar);
          if (--shown === 0) {
            multi?.stop();
            multi = undefined;
          }
        },
      };
    },
    line(text) {
      if (multi) multi.log(`${text}\n`);
      else process.stderr.write(`${text}\n`);
    },
  };
}

const plainBars: Bars = { add: createProgress, line: (text) => process.stderr.write(`${text}\n`) };

export function printStepEvents(prefix = ''): StepEvents {
  const bars = process.stderr.isTTY ? ttyBars() : plainBars;
  const running = new Map<string, ProgressReporter>();
  return {
    start(name, skipped) {
      if (!skipped) bars.line(`▶ ${prefix}${name}`);
    },
    progress(name, done, total, extra) {
      // Training steps report their loss; generation steps report tokens (their items are generated answers).
      let bar = running.get(name);
      if (!bar) running.set(name, (bar = bars.add(`  ${prefix}${name}`, total, extra?.startsWith('loss') ? 'steps' : 'answers')));
      bar.update(done, extra);
    },
    end(name, manifest, skipped) {
      running.get(name)?.stop();
      running.delete(name);
      const stats = Object.entries(manifest.stats).filter(([, v]) => typeof v === 'number').slice(0, 4)
        .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : (v as number).toFixed(3)}`).join(', ');
      bars.line(skipped ? `✓ ${prefix}${name} (unchanged, skipped)` : `✓ ${prefix}${name} in ${manifest.seconds.toFixed(1)} s${stats ? `: ${stats}` : ''}`);
    },
  };
}
