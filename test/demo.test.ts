// `w2s demo --quick` end to end: the toy world is built (splits, two pretrained models), the whole method
// runs on it, report.json has every stage, report.html renders in Chromium without errors, the models
// are cached (a second run trains nothing), and the CLI prints the summary table.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../lib/model.js';
import type { StepEvents } from '../lib/pipeline/run/steps.js';
import { runDemo } from '../lib/world/demo.js';
import { checkReportPage } from './helpers/browser.js';
import { TMP } from './helpers/models.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');

function recorder(): StepEvents & { ran: string[]; skipped: string[] } {
  const ran: string[] = [];
  const skipped: string[] = [];
  return { ran, skipped, start() {}, progress() {}, end(name, _m, wasSkipped) { (wasSkipped ? skipped : ran).push(name); } };
}

test.serial('quick demo: world, method, report; a second run reuses everything', async (t) => {
  const out = path.join(TMP, 'demo-quick');
  const first = recorder();
  const r = await runDemo({ out, preset: 'quick', seed: 3, events: first });
  t.deepEqual(first.skipped, []);
  t.true(first.ran.includes('01-weak-model') && first.ran.includes('02-strong-model') && first.ran.includes('21-pairs'), first.ran.join(' '));
  // The quick world's models are barely trained: Stage II may find no pair, and then the method skips it.
  const pairs = (JSON.parse(fs.readFileSync(path.join(out, 'run/21-pairs/manifest.json'), 'utf8')) as { stats: { pairs: number } }).stats.pairs;
  t.is(first.ran.some((n) => /^22-stage2-(dpo|orpo)$/.test(n)), pairs > 0);
  t.is(typeof r.accuracy.stage2 === 'number', pairs > 0);

  // The pretrained models are real llama.cpp models of the preset's sizes.
  const strong = await loadModel(path.join(out, 'world/02-strong-model/model.gguf'));
  t.is(strong.info.nLayer, 3);
  strong.dispose();

  const report = JSON.parse(fs.readFileSync(r.report.json, 'utf8')) as { accuracy: Record<string, number>; losses: Record<string, unknown[]>; timings: { step: string }[] };
  const stages = ['weak', 'strongBase', 'fullWeakFt', 'stage1', ...(pairs > 0 ? ['stage2'] : []), 'ceiling'];
  t.deepEqual(Object.keys(report.accuracy).sort(), [...stages].sort());
  for (const stage of stages) {
    t.true(report.accuracy[stage]! >= 0 && report.accuracy[stage]! <= 1, stage);
    t.is(report.accuracy[stage], r.accuracy[stage]);
  }
  t.true(Object.keys(report.losses).length >= 4);
  t.true(report.timings.some((x) => x.step === 'world/02-strong-model'));
  t.true(fs.existsSync(path.join(out, 'run.json')));

  const page = await checkReportPage(r.report.html);
  t.deepEqual(page.consoleErrors, []);
  t.deepEqual(page.pageErrors, []);
  t.is(page.chartsReady, 2);
  t.deepEqual(page.accuracyRows.map((row) => row[1]), stages.map((k) => `${(100 * r.accuracy[k]!).toFixed(1)}%`));
  for (const c of page.canvases) t.true(c.colouredPixels > 0.01 * c.width * c.height, `${c.id}: ${c.colouredPixels} coloured pixels`);

  const again = recorder();
  const r2 = await runDemo({ out, preset: 'quick', seed: 3, events: again });
  t.deepEqual(again.ran, []);
  t.deepEqual(r2.accuracy, r.accuracy);
});

test.serial('w2s demo: the summary table on stdout; a bad seed is a usage error', (t) => {
  const out = path.join(TMP, 'demo-cli');
  // Same preset and seed as above, copied in: the CLI path is exercised without training again.
  fs.cpSync(path.join(TMP, 'demo-quick'), path.join(out, 'quick-seed3'), { recursive: true });
  const ok = spawnSync(process.execPath, [cli, 'demo', '--quick', '--seed', '3', '--out', out, '--no-open'], { encoding: 'utf8' });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /Stage I\s+\d+\.\d%/);
  t.regex(ok.stdout, /weak floor < full weak FT < Stage I < Stage II \(this seed\): (yes|no)/);
  t.regex(ok.stderr, /02-strong-model \(unchanged, skipped\)/);
  const bad = spawnSync(process.execPath, [cli, 'demo', '--quick', '--seeds', '1,x', '--out', out, '--no-open'], { encoding: 'utf8' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--seeds/);
});
