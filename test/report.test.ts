// The run report: collected from a run folder's metrics.json and training logs, rendered as one
// self-contained HTML page (Chart.js inlined, data embedded safely). Browser rendering is checked in report-browser.test.ts and demo.test.ts, not here.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { collectReport, renderHtml, writeReport } from '../lib/report/report.js';
import { TMP } from './helpers/models.js';

function fakeRun(): string {
  const dir = fs.mkdtempSync(path.join(TMP, 'report-'));
  const steps = [{ name: '01-weak-sft', seconds: 1.5, skipped: false }, { name: '30-eval-weak', seconds: 0.5, skipped: true }];
  fs.writeFileSync(path.join(dir, 'metrics.json'), JSON.stringify({
    metrics: { accuracy: { weak: 0.25, stage1: 0.5, ceiling: 0.75 }, pgr: { stage1: 0.5 }, selection: [{ kept: 3 }], pairs: { pairs: 2 } }, steps,
  }));
  fs.mkdirSync(path.join(dir, '01-weak-sft'));
  fs.writeFileSync(path.join(dir, '01-weak-sft', 'adapter.gguf.log.json'), JSON.stringify({ history: [{ step: 1, loss: 3 }, { step: 2, loss: 2 }] }));
  return dir;
}

test('collects accuracies, PGR, loss curves and timings from a run folder', (t) => {
  const r = collectReport(fakeRun(), 'toy </script> run');
  t.deepEqual(r.accuracy, { weak: 0.25, stage1: 0.5, ceiling: 0.75 });
  t.deepEqual(r.losses, { '01-weak-sft': [{ step: 1, loss: 3 }, { step: 2, loss: 2 }] });
  t.deepEqual(r.timings.map((x) => x.step), ['01-weak-sft', '30-eval-weak']);
});

test('the page is self-contained and embeds the data without breaking out of its script', async (t) => {
  const dir = fakeRun();
  const r = collectReport(dir, 'toy </script><b>run</b>');
  const html = renderHtml(r);
  t.false(/<script[^>]+src=/.test(html), 'no external scripts');
  t.true(html.includes('Chart'));
  t.is(html.match(/<\/script>/g)!.length, 2, 'only the two script blocks close');
  t.true(html.includes('toy &lt;/script&gt;&lt;b&gt;run&lt;/b&gt;'));
  t.regex(html, /Stage I<\/td><td>50\.0%<\/td><td>0\.50/);
  const written = await writeReport(dir, r);
  t.deepEqual(JSON.parse(fs.readFileSync(written.json, 'utf8')).accuracy, r.accuracy);
  t.is(fs.readFileSync(written.html, 'utf8'), html);
});
