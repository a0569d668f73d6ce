// The run report: report.json (accuracy per stage with PGR, loss curves, selection and pair statistics,
// timings) and a self-contained report.html that draws them with Chart.js (inlined, no network).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';

export interface Report {
  title: string;
  accuracy: Record<string, number | undefined>;
  pgr: Record<string, number | null | undefined>;
  losses: Record<string, { step: number; loss: number }[]>;
  selection: unknown;
  pairs: unknown;
  timings: { step: string; seconds: number; skipped: boolean }[];
  extra?: Record<string, unknown>;
}

/** Accuracy keys of a run's metrics and their labels, in the order the method's stages build on each other. */
export const STAGES: readonly (readonly [string, string])[] = [
  ['weak', 'weak floor'], ['strongBase', 'strong, untrained'], ['fullWeakFt', 'full weak FT'],
  ['stage1', 'Stage I'], ['stage2', 'Stage II'], ['ceiling', 'ceiling'],
];

/** Collects the report from a finished run folder (its metrics.json and the training logs of its steps). */
export function collectReport(runDir: string, title: string, extra?: Record<string, unknown>): Report {
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'metrics.json'), 'utf8')) as {
    metrics: { accuracy: Record<string, number>; pgr: Record<string, number | null>; selection: unknown; pairs: unknown };
    steps: { name: string; seconds: number; skipped: boolean }[];
  };
  const losses: Report['losses'] = {};
  for (const s of summary.steps) {
    const log = path.join(runDir, s.name, 'adapter.gguf.log.json');
    if (!fs.existsSync(log)) continue;
    const history = (JSON.parse(fs.readFileSync(log, 'utf8')) as { history: { step: number; loss: number }[] }).history;
    losses[s.name] = history.map((h) => ({ step: h.step, loss: h.loss }));
  }
  return {
    title, accuracy: summary.metrics.accuracy, pgr: summary.metrics.pgr, losses,
    selection: summary.metrics.selection, pairs: summary.metrics.pairs,
    timings: summary.steps.map((s) => ({ step: s.name, seconds: s.seconds, skipped: s.skipped })), extra,
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The page: data embedded as JSON, Chart.js inlined, two charts and three tables. */
export function renderHtml(r: Report): string {
  // chart.js exports no path to its UMD build: find it beside the CommonJS entry (dist/chart.cjs).
  const chartJs = fs.readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const stages = STAGES.filter(([k]) => typeof r.accuracy[k] === 'number');
  const rows = stages.map(([k, label]) => `<tr><td>${label}</td><td>${(100 * r.accuracy[k]!).toFixed(1)}%</td><td>${typeof r.pgr[k] === 'number' ? (r.pgr[k] as number).toFixed(2) : '–'}</td></tr>`).join('');
  const timing = r.timings.map((t) => `<tr><td>${escapeHtml(t.step)}</td><td>${t.seconds.toFixed(1)} s${t.skipped ? ' (cached)' : ''}</td></tr>`).join('');
  const data = JSON.stringify({ stages: stages.map(([k, label]) => ({ label, value: 100 * r.accuracy[k]! })), losses: r.losses }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(r.title)}</title>
<style>body{font:15px system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}canvas{max-height:360px}pre{background:#f6f6f6;padding:1em;overflow:auto}</style>
</head><body>
<h1>${escapeHtml(r.title)}</h1>
<h2>Test accuracy per stage</h2><canvas id="accuracy"></canvas>
<table><tr><th>stage</th><th>accuracy</th><th>PGR</th></tr>${rows}</table>
<h2>Training loss per step</h2><canvas id="losses"></canvas>
<h2>Selection and pairs</h2><pre>${escapeHtml(JSON.stringify({ selection: r.selection, pairs: r.pairs }, null, 2))}</pre>
<h2>Timings</h2><table><tr><th>step</th><th>time</th></tr>${timing}</table>
${r.extra ? `<h2>World</h2><pre>${escapeHtml(JSON.stringify(r.extra, null, 2))}</pre>` : ''}
<script>${chartJs}</script>
<script>
const data = ${data};
window.chartsReady = 0;
const done = () => { window.chartsReady += 1; };
new Chart(document.getElementById('accuracy'), { type: 'bar',
  data: { labels: data.stages.map((s) => s.label), datasets: [{ label: 'accuracy (%)', data: data.stages.map((s) => s.value) }] },
  options: { animation: { onComplete: done }, scales: { y: { beginAtZero: true, max: 100 } } } });
new Chart(document.getElementById('losses'), { type: 'line',
  data: { datasets: Object.entries(data.losses).map(([name, pts]) => ({ label: name, data: pts.map((p) => ({ x: p.step, y: p.loss })), pointRadius: 0 })) },
  options: { animation: { onComplete: done }, parsing: true, scales: { x: { type: 'linear', title: { display: true, text: 'step' } }, y: { title: { display: true, text: 'loss' } } } } });
</script></body></html>
`;
}

export async function writeReport(dir: string, r: Report): Promise<{ json: string; html: string }> {
  const json = path.join(dir, 'report.json');
  const html = path.join(dir, 'report.html');
  await writeFileAtomic(json, JSON.stringify(r, null, 2) + '\n');
  await writeFileAtomic(html, renderHtml(r));
  return { json, html };
}
