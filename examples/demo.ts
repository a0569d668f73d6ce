// The embedded demo from the library: build the toy world (cached in ./w2s-demo-example), run the method,
// print the accuracy per stage and where the report is. `--quick` for the small world.
import { runDemo } from '../lib/index.js';

const quick = process.argv.includes('--quick');
const result = await runDemo({
  out: 'w2s-demo-example',
  preset: quick ? 'quick' : 'full',
  seed: 1,
  events: {
    start: (step, skipped) => { if (!skipped) console.error(`▶ ${step}`); },
    progress: () => {},
    end: (step, manifest, skipped) => console.error(`✓ ${step}${skipped ? ' (cached)' : ` ${manifest.seconds.toFixed(1)} s`}`),
  },
});
for (const [stage, acc] of Object.entries(result.accuracy)) console.log(`${stage.padEnd(12)} ${(100 * acc).toFixed(1)}%`);
console.log(`report: ${result.report.html} (${result.seconds.total.toFixed(0)} s)`);
