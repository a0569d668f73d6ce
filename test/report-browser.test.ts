// report.html in a real browser (headless Debian Chromium): the string checks in report.test.ts cannot tell
// whether the inlined Chart.js runs and draws. Needs /usr/bin/chromium and fails (never skips) without it.
// The screenshot of the full page is kept in <tmpdir>/w2s-report-screenshots/ for a person to look at.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderHtml, verdict, writeReport, type Report } from '../lib/report/report.js';
import { checkReportPage } from './helpers/browser.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-report-browser-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));
const shots = path.join(os.tmpdir(), 'w2s-report-screenshots');
fs.mkdirSync(shots, { recursive: true });

/** A loss curve shaped like a real run's: decaying with a little deterministic wiggle. */
function curve(start: number, end: number, n = 20): { step: number; loss: number }[] {
  return Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: end + (start - end) * Math.exp(-i / 5) + 0.05 * Math.sin(i) }));
}

const dpo = curve(0.69, 0.3).map((p, i) => ({ ...p, margin: 0.02 * i, accuracy: Math.min(1, 0.5 + 0.03 * i) }));
// Every stage the report knows, so the table and the bar chart are as full as after a complete run; the
// selection and pair statistics have the shapes metrics.json gives them (lib/pipeline/select.ts, pairs.ts).
const accuracy = { weak: 0.21, strongBase: 0.12, fullWeakFt: 0.3, stage1: 0.36, stage2: 0.41, ceiling: 0.55 };
const pgr = { fullWeakFt: 0.26, stage1: 0.44, stage2: 0.59 };
const report: Report = {
  title: 'gsm8k toy run <seed 7>',
  verdict: verdict(accuracy, pgr).text,
  accuracy, pgr,
  losses: { '01-weak-sft': curve(2.4, 0.9), '10-stage1-sft': curve(1.9, 0.7), '20-stage2-dpo': dpo.map(({ step, loss }) => ({ step, loss })) },
  preference: { '20-stage2-dpo': dpo },
  selection: [{ step: '04-select-1', total: 400, kept: 137, droppedEmpty: 12, droppedDisagree: 251, keptCorrect: 121, precision: 121 / 137, weakAccuracy: 0.44 }],
  pairs: {
    questions: 400, pairs: 96, weakChosenQuestions: 80, weakChosenPairs: 80, weakRejectedQuestions: 16, weakRejectedPairs: 16,
    skipped: { 'low-confidence': 250, 'empty-majority': 4, 'no-negatives': 40, 'uncertain-disagreement': 10 }, chosenCorrect: 90, rejectedCorrect: 3,
  },
  timings: [
    { step: '01-weak-sft', seconds: 42.3, skipped: false }, { step: '10-stage1-sft', seconds: 61.8, skipped: false },
    { step: '20-stage2-dpo', seconds: 75.2, skipped: false }, { step: '30-eval-weak', seconds: 8.1, skipped: true },
  ],
  extra: {
    world: 'arith-2digit', seed: 7,
    models: { source: 'shipped with the package', builtAt: '2026-01-01T00:00:00Z' },
    gate: { weak: { measure: 'weak model, zero-shot', value: 0.5, band: [0.2, 1] } },
  },
};

const CHARTS = ['accuracy', 'selection', 'pairs', 'losses', 'preference-0'];

test.serial('report.html draws every chart and fills every table in Chromium, without errors', async (t) => {
  const { html } = await writeReport(dir, report);
  const screenshot = path.join(shots, 'report-browser.png');
  const r = await checkReportPage(html, { screenshot });
  t.log(`screenshot: ${screenshot}`);
  t.true(fs.statSync(screenshot).size > 10_000);
  t.deepEqual(r.consoleErrors, []);
  t.deepEqual(r.pageErrors, []);
  t.is(r.chartsExpected, CHARTS.length);
  t.is(r.chartsReady, CHARTS.length, 'every chart finished its first animation');
  t.deepEqual(r.canvases.map((c) => c.id), CHARTS);
  for (const c of r.canvases) {
    t.true(c.width > 0 && c.height > 0, `${c.id} has a size: ${c.width}x${c.height}`);
    // Axes, grid and labels of an empty chart paint about 4% of a 960x360 canvas, in grey (measured): the first
    // check rules out a blank canvas, the second needs the coloured bars and lines (here 19% and 3%; empty: <0.2%).
    const area = c.width * c.height;
    t.true(c.nonBlankPixels > 0.02 * area, `${c.id} painted ${c.nonBlankPixels} of ${area} pixels`);
    t.true(c.colouredPixels > 0.01 * area, `${c.id} has ${c.colouredPixels} coloured (data) pixels of ${area}`);
  }
  t.deepEqual(r.accuracyRows.map((row) => row[0]),
    ['weak floor', 'strong, untrained', 'full weak FT', 'Stage I', 'Stage II', 'ceiling']);
  t.deepEqual(r.accuracyRows[4], ['Stage II', '41.0%', '0.59']);
  t.is(r.verdict, 'Ordering held: weak floor 21.0% < full weak FT 30.0% < Stage I 36.0%. Stage II 41.0% (+5.0 points vs Stage I). PGR: Stage I 0.44, Stage II 0.59.');
  t.deepEqual(r.tables['selection-table'], [['04-select-1', '400', '137 (34.3%)', '121 (88.3%)', '12 (3.0%)', '251 (62.7%)', '44.0%']]);
  const pairs = Object.fromEntries(r.tables['pairs-table']!.map((row) => [row[0], row.slice(1)]));
  t.deepEqual(pairs['questions sampled'], ['400', '']);
  t.deepEqual(pairs['rule "weak chosen": a confident majority agrees with the weak answer'], ['80 (20.0%)', '80']);
  t.deepEqual(pairs['rule "weak rejected": a very confident majority disagrees with it'], ['16 (4.0%)', '16']);
  t.deepEqual(pairs['skipped: majority below minConfidence'], ['250 (62.5%)', '']);
  t.deepEqual(pairs['pairs whose chosen side is correct'], ['', '90 (93.8%)']);
  t.deepEqual(pairs['pairs whose rejected side is correct'], ['', '3 (3.1%)']);
  t.deepEqual(r.tables['gate-table'], [['weak model, zero-shot', '50.0%', '20.0% … 100.0%', 'pass']]);
  for (const [id, rows] of Object.entries(r.tables)) t.true(rows.length > 0 && rows.every((row) => row.some((c) => c.trim() !== '')), id);
});

test.serial('the verdict says when the ordering fails, and what was not measured', (t) => {
  t.is(verdict({ weak: 0.5, fullWeakFt: 0.4, stage1: 0.6 }, { stage1: 0.3 }).text,
    'Ordering did NOT hold: weak floor 50.0% > full weak FT 40.0% < Stage I 60.0%. Stage II not run. PGR: Stage I 0.30, Stage II –.');
  t.is(verdict({ weak: 0.5, stage1: 0.6, stage2: 0.59 }, {}).ordered, null);
  t.regex(verdict({ weak: 0.5, stage1: 0.6, stage2: 0.59 }, {}).text, /^Ordering not measured \(no full weak FT\).*Stage II 59\.0% \(−1\.0 points vs Stage I\)/);
});

// Negative controls: the same check must notice a page whose charts cannot run, or that logs an error.
test.serial('the check fails on a page without Chart.js', async (t) => {
  const broken = path.join(dir, 'no-chartjs.html');
  // The first script block is the inlined Chart.js (report.test.ts checks there are exactly two).
  fs.writeFileSync(broken, renderHtml(report).replace(/<script>[\s\S]*?<\/script>/, '<script></script>'));
  const r = await checkReportPage(broken, { timeoutMs: 1500 });
  t.true(r.pageErrors.some((e) => e.includes('Chart is not defined')), r.pageErrors.join('\n'));
  t.is(r.chartsReady, 0);
  t.is(r.chartsExpected, CHARTS.length);
  t.deepEqual(r.canvases.map((c) => c.nonBlankPixels), CHARTS.map(() => 0));
});

test.serial('the check reports console errors', async (t) => {
  const noisy = path.join(dir, 'console-error.html');
  fs.writeFileSync(noisy, renderHtml(report).replace('</body>', '<script>console.error("injected failure")</script></body>'));
  const r = await checkReportPage(noisy);
  t.deepEqual(r.consoleErrors, ['injected failure']);
  t.deepEqual(r.pageErrors, []);
  t.is(r.chartsReady, CHARTS.length);
});

test.serial('the check sees empty tables and a blank chart', async (t) => {
  // A report whose statistics are missing: the tables show dashes only, and the pair chart is not drawn.
  const empty = path.join(dir, 'empty-stats.html');
  fs.writeFileSync(empty, renderHtml({ ...report, selection: [{}], pairs: { pairs: 0 }, preference: {} }));
  const r = await checkReportPage(empty);
  t.deepEqual(r.tables['selection-table'], [['1', '–', '–', '–', '–', '–', '–']]);
  t.deepEqual(r.canvases.map((c) => c.id), ['accuracy', 'selection', 'losses']);
  const selection = r.canvases.find((c) => c.id === 'selection')!;
  t.true(selection.colouredPixels < 0.01 * selection.width * selection.height, `${selection.colouredPixels} coloured pixels in an empty selection chart`);
});
