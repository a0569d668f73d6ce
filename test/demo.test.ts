// `w2s demo --quick` end to end: the toy world is set up from the shipped models (splits, the two models
// copied and hash-checked, the gate), the whole method runs on it, report.json has every stage,
// report.html renders in Chromium without errors with its verdict, tables and charts filled (a screenshot is
// kept in <tmpdir>/w2s-report-screenshots/), a second run trains nothing, and the CLI prints the summary
// table. Rebuilding the world's models is world-shipped.test.ts's.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
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
  const r = await runDemo({ out, preset: 'quick', seed: 1, events: first });
  t.deepEqual(first.skipped, []);
  t.is(r.worldSource, 'shipped');
  t.true(first.ran.includes('01-weak-model') && first.ran.includes('02-strong-model') && first.ran.includes('21-pairs'), first.ran.join(' '));
  const world = JSON.parse(fs.readFileSync(path.join(out, 'world/02-strong-model/manifest.json'), 'utf8')) as { stats: { shipped?: string } };
  t.is(world.stats.shipped, 'quick-seed1/strong.gguf');
  // The quick world's models are barely trained: Stage II may find no pair, and then the method skips it.
  const pairs = (JSON.parse(fs.readFileSync(path.join(out, 'run/21-pairs/manifest.json'), 'utf8')) as { stats: { pairs: number } }).stats.pairs;
  t.is(first.ran.some((n) => /^22-stage2-(dpo|orpo)$/.test(n)), pairs > 0);
  t.is(typeof r.accuracy.stage2 === 'number', pairs > 0);

  // The pretrained models are real llama.cpp models of the preset's sizes.
  const strong = await loadModel(path.join(out, 'world/02-strong-model/model.gguf'));
  t.is(strong.info.nLayer, 3);
  strong.dispose();

  const report = JSON.parse(fs.readFileSync(r.report.json, 'utf8')) as {
    verdict: string; accuracy: Record<string, number>; losses: Record<string, unknown[]>; preference: Record<string, { margin: number }[]>; timings: { step: string }[];
  };
  const stages = ['weak', 'strongBase', 'fullWeakFt', 'stage1', ...(pairs > 0 ? ['stage2'] : []), 'ceiling'];
  t.deepEqual(Object.keys(report.accuracy).sort(), [...stages].sort());
  for (const stage of stages) {
    t.true(report.accuracy[stage]! >= 0 && report.accuracy[stage]! <= 1, stage);
    t.is(report.accuracy[stage], r.accuracy[stage]);
  }
  t.true(Object.keys(report.losses).length >= 4);
  t.true(report.timings.some((x) => x.step === 'world/02-strong-model'));
  t.regex(report.verdict, /^Ordering (held|did NOT hold): weak floor \d+\.\d% [<=>] full weak FT \d+\.\d% [<=>] Stage I \d+\.\d%\. /);
  t.is(Object.keys(report.preference).length, pairs > 0 ? 1 : 0);
  t.true(fs.existsSync(path.join(out, 'run.json')));
  // The method runs with the preset's one thread (the demo's tiny models are fastest so: README).
  t.is((JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')) as { generation: { threads: number } }).generation.threads, 1);

  const shots = path.join(os.tmpdir(), 'w2s-report-screenshots');
  fs.mkdirSync(shots, { recursive: true });
  const screenshot = path.join(shots, 'demo-quick.png');
  const page = await checkReportPage(r.report.html, { screenshot });
  t.log(`screenshot: ${screenshot}`);
  t.deepEqual(page.consoleErrors, []);
  t.deepEqual(page.pageErrors, []);
  const charts = ['accuracy', 'selection', ...(pairs > 0 ? ['pairs'] : []), 'losses', ...(pairs > 0 ? ['preference-0'] : [])];
  t.deepEqual(page.canvases.map((c) => c.id), charts);
  t.is(page.chartsReady, charts.length);
  t.is(page.verdict, report.verdict);
  t.deepEqual(page.accuracyRows.map((row) => row[1]), stages.map((k) => `${(100 * r.accuracy[k]!).toFixed(1)}%`));
  // The quick world's preference run is a step or two (a few pairs): its chart is points, not lines, so only
  // the other charts must fill 1% of their canvas (report-browser.test.ts checks a long preference curve).
  for (const c of page.canvases) {
    t.true(c.colouredPixels > (c.id === 'preference-0' ? 0 : 0.01 * c.width * c.height), `${c.id}: ${c.colouredPixels} coloured pixels`);
  }
  // The selection, pair and gate tables hold this run's numbers.
  const sel = (JSON.parse(fs.readFileSync(path.join(out, 'run/04-select-1/manifest.json'), 'utf8')) as { stats: { total: number; kept: number } }).stats;
  t.is(page.tables['selection-table']![0]![1], String(sel.total));
  t.regex(page.tables['selection-table']![0]![2]!, new RegExp(`^${sel.kept} \\(`));
  t.deepEqual(page.tables['pairs-table']!.find((row) => row[0] === 'pairs'), ['pairs', '', String(pairs)]);
  t.is(page.tables['gate-table']!.length, 4);
  t.true(page.tables['gate-table']!.every((row) => row[3] === 'pass'));

  const again = recorder();
  const r2 = await runDemo({ out, preset: 'quick', seed: 1, events: again });
  t.deepEqual(again.ran, []);
  t.deepEqual(r2.accuracy, r.accuracy);
});

test.serial('w2s demo: the summary table on stdout; a bad seed is a usage error', (t) => {
  const out = path.join(TMP, 'demo-cli');
  // Same preset and seed as above, copied in: the CLI path is exercised without training again.
  fs.cpSync(path.join(TMP, 'demo-quick'), path.join(out, 'quick-seed1'), { recursive: true });
  const ok = spawnSync(process.execPath, [cli, 'demo', '--quick', '--seed', '1', '--out', out, '--no-open'], { encoding: 'utf8' });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /Stage I\s+\d+\.\d%/);
  t.regex(ok.stdout, /Ordering (held|did NOT hold): weak floor .*PGR: Stage I /);
  t.regex(ok.stderr, /models: shipped with the package \(built \d{4}-\d\d-\d\d on .*worlds\/manifest\.json\); --rebuild-world pretrains them here/);
  t.regex(ok.stderr, /02-strong-model \(unchanged, skipped\)/);
  const save = spawnSync(process.execPath, [cli, 'demo', '--quick', '--save-world', path.join(out, 'w'), '--out', out, '--no-open'], { encoding: 'utf8' });
  t.is(save.status, 2);
  t.regex(save.stderr, /--save-world needs --rebuild-world/);
  const bad = spawnSync(process.execPath, [cli, 'demo', '--quick', '--seeds', '1,x', '--out', out, '--no-open'], { encoding: 'utf8' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--seeds/);
});
