// report.html in a real browser (headless Debian Chromium): the string checks in report.test.ts cannot tell
// whether the inlined Chart.js runs and draws. Needs /usr/bin/chromium and fails (never skips) without it.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderHtml, writeReport, type Report } from '../lib/report/report.js';
import { checkReportPage } from './helpers/browser.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-report-browser-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A loss curve shaped like a real run's: decaying with a little deterministic wiggle. */
function curve(start: number, end: number, n = 20): { step: number; loss: number }[] {
  return Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: end + (start - end) * Math.exp(-i / 5) + 0.05 * Math.sin(i) }));
}

// Every stage the report knows, so the table and the bar chart are as full as after a complete run.
const report: Report = {
  title: 'gsm8k toy run <seed 7>',
  accuracy: { weak: 0.21, strongBase: 0.12, fullWeakFt: 0.3, stage1: 0.36, stage2: 0.41, ceiling: 0.55 },
  pgr: { fullWeakFt: 0.26, stage1: 0.44, stage2: 0.59 },
  losses: { '01-weak-sft': curve(2.4, 0.9), '10-stage1-sft': curve(1.9, 0.7), '20-stage2-dpo': curve(0.69, 0.3) },
  selection: [{ round: 1, candidates: 400, kept: 137, agreement: 0.62 }, { round: 2, candidates: 400, kept: 171, agreement: 0.7 }],
  pairs: { pairs: 96, meanMargin: 0.41, droppedTies: 12 },
  timings: [
    { step: '01-weak-sft', seconds: 42.3, skipped: false }, { step: '10-stage1-sft', seconds: 61.8, skipped: false },
    { step: '20-stage2-dpo', seconds: 75.2, skipped: false }, { step: '30-eval-weak', seconds: 8.1, skipped: true },
  ],
  extra: { world: 'arith-2digit', seed: 7, weakModel: 'tiny-64.gguf', strongModel: 'tiny-128.gguf', testItems: 200 },
};

test.serial('report.html draws both charts and the stage table in Chromium, without errors', async (t) => {
  const { html } = await writeReport(dir, report);
  const r = await checkReportPage(html);
  t.deepEqual(r.consoleErrors, []);
  t.deepEqual(r.pageErrors, []);
  t.is(r.chartsReady, 2, 'both charts finished their first animation');
  t.deepEqual(r.canvases.map((c) => c.id), ['accuracy', 'losses']);
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
});

// Negative controls: the same check must notice a page whose charts cannot run, or that logs an error.
test.serial('the check fails on a page without Chart.js', async (t) => {
  const broken = path.join(dir, 'no-chartjs.html');
  // The first script block is the inlined Chart.js (report.test.ts checks there are exactly two).
  fs.writeFileSync(broken, renderHtml(report).replace(/<script>[\s\S]*?<\/script>/, '<script></script>'));
  const r = await checkReportPage(broken, { timeoutMs: 1500 });
  t.true(r.pageErrors.some((e) => e.includes('Chart is not defined')), r.pageErrors.join('\n'));
  t.is(r.chartsReady, 0);
  t.deepEqual(r.canvases.map((c) => c.nonBlankPixels), [0, 0]);
});

test.serial('the check reports console errors', async (t) => {
  const noisy = path.join(dir, 'console-error.html');
  fs.writeFileSync(noisy, renderHtml(report).replace('</body>', '<script>console.error("injected failure")</script></body>'));
  const r = await checkReportPage(noisy);
  t.deepEqual(r.consoleErrors, ['injected failure']);
  t.deepEqual(r.pageErrors, []);
  t.is(r.chartsReady, 2);
});
