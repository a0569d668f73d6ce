// The run report: collected from a run folder's metrics.json and training logs, rendered as one
// self-contained HTML page (Chart.js inlined, data embedded safely). Browser rendering is checked in report-browser.test.ts and demo.test.ts, not here.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { collectReport, renderHtml, writeReport } from '../lib/report/report.js';
import { TMP } from './helpers/models.js';

function fakeRun(): string {
  const dir = fs.mkdtempSync(path.join(TMP, 'report-'));
  const steps = [{ name: '01-weak-sft', seconds: 1.5, skipped: false }, { name: '22-stage2-dpo', seconds: 2, skipped: false }, { name: '30-eval-weak', seconds: 0.5, skipped: true }];
  fs.writeFileSync(path.join(dir, 'metrics.json'), JSON.stringify({
    metrics: {
      accuracy: { weak: 0.25, fullWeakFt: 0.3, stage1: 0.5, stage2: 0.52, ceiling: 0.75 }, pgr: { fullWeakFt: 0.1, stage1: 0.5, stage2: 0.54 },
      selection: [{ step: '04-select-1', total: 10, kept: 3, droppedEmpty: 1, droppedDisagree: 6, keptCorrect: 2, precision: 2 / 3, weakAccuracy: 0.4 }],
      pairs: { questions: 10, pairs: 2, weakChosenQuestions: 1, weakChosenPairs: 1, weakRejectedQuestions: 1, weakRejectedPairs: 1,
        skipped: { 'low-confidence': 5, 'empty-majority': 1, 'no-negatives': 2, 'uncertain-disagreement': 0 }, chosenCorrect: 2, rejectedCorrect: 0 },
    }, steps,
  }));
  fs.mkdirSync(path.join(dir, '01-weak-sft'));
  fs.writeFileSync(path.join(dir, '01-weak-sft', 'adapter.gguf.log.json'), JSON.stringify({ history: [{ step: 1, loss: 3 }, { step: 2, loss: 2 }] }));
  // A preference step logs the rewards beside the loss (lib/train/preference.ts).
  fs.mkdirSync(path.join(dir, '22-stage2-dpo'));
  fs.writeFileSync(path.join(dir, '22-stage2-dpo', 'adapter.gguf.log.json'), JSON.stringify({ history: [
    { step: 1, loss: 0.69, 'rewards/margins': 0, 'rewards/accuracies': 0 }, { step: 2, loss: 0.6, 'rewards/margins': 0.2, 'rewards/accuracies': 0.75 },
  ] }));
  return dir;
}

test('collects the verdict, accuracies, PGR, loss and reward curves and timings from a run folder', (t) => {
  const r = collectReport(fakeRun(), 'toy </script> run');
  t.is(r.verdict, 'Ordering held: weak floor 25.0% < full weak FT 30.0% < Stage I 50.0%. Stage II 52.0% (+2.0 points vs Stage I). PGR: Stage I 0.50, Stage II 0.54.');
  t.deepEqual(r.accuracy, { weak: 0.25, fullWeakFt: 0.3, stage1: 0.5, stage2: 0.52, ceiling: 0.75 });
  t.deepEqual(r.losses, { '01-weak-sft': [{ step: 1, loss: 3 }, { step: 2, loss: 2 }], '22-stage2-dpo': [{ step: 1, loss: 0.69 }, { step: 2, loss: 0.6 }] });
  // Only the preference step has reward curves.
  t.deepEqual(r.preference, { '22-stage2-dpo': [{ step: 1, loss: 0.69, margin: 0, accuracy: 0 }, { step: 2, loss: 0.6, margin: 0.2, accuracy: 0.75 }] });
  t.deepEqual(r.timings.map((x) => x.step), ['01-weak-sft', '22-stage2-dpo', '30-eval-weak']);
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
  // The verdict comes first, then tables, not a JSON dump, for the selection and the pairs.
  t.true(html.indexOf('id="verdict"') < html.indexOf('id="accuracy"'));
  t.regex(html, /<p id="verdict" class="verdict held">Ordering held: /);
  t.regex(html, /<table id="selection-table">.*<td>04-select-1<\/td><td>10<\/td><td>3 \(30\.0%\)<\/td><td>2 \(66\.7%\)<\/td><td>1 \(10\.0%\)<\/td><td>6 \(60\.0%\)<\/td>/);
  t.regex(html, /<table id="pairs-table">.*pairs whose chosen side is correct<\/td><td><\/td><td>2 \(100\.0%\)<\/td>/);
  for (const id of ['accuracy', 'losses', 'selection', 'pairs', 'preference-0']) t.true(html.includes(`<canvas id="${id}"`), id);
  t.false(html.includes('"weakChosenQuestions"'), 'no raw statistics dump');
  const written = await writeReport(dir, r);
  t.deepEqual(JSON.parse(fs.readFileSync(written.json, 'utf8')).accuracy, r.accuracy);
  t.is(fs.readFileSync(written.html, 'utf8'), html);
});
