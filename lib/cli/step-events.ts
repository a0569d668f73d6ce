// Live view of a run folder's steps on stderr: a bar with ETA for the current step on a TTY (plain lines
// otherwise), a line per finished step with its first statistics. Shared by `w2s run` and `w2s demo`.
import type { StepEvents } from '../pipeline/run/steps.js';
import { createProgress, type ProgressReporter } from './progress.js';

export function printStepEvents(prefix = ''): StepEvents {
  let bar: ProgressReporter | undefined;
  let current = '';
  return {
    start(name, skipped) {
      current = name;
      if (!skipped) process.stderr.write(`▶ ${prefix}${name}\n`);
    },
    progress(name, done, total, extra) {
      if (name !== current) return;
      // Training steps report their loss; generation steps report tokens (their items are generated answers).
      bar ??= createProgress(`  ${prefix}${name}`, total, extra?.startsWith('loss') ? 'steps' : 'answers');
      bar.update(done, extra);
    },
    end(name, manifest, skipped) {
      bar?.stop();
      bar = undefined;
      const stats = Object.entries(manifest.stats).filter(([, v]) => typeof v === 'number').slice(0, 4)
        .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : (v as number).toFixed(3)}`).join(', ');
      process.stderr.write(skipped ? `✓ ${prefix}${name} (unchanged, skipped)\n` : `✓ ${prefix}${name} in ${manifest.seconds.toFixed(1)} s${stats ? `: ${stats}` : ''}\n`);
    },
  };
}
