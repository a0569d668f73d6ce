// The run report: report.json (a one-line verdict, accuracy per stage with PGR, training curves, selection
// and pair statistics, timings) and a self-contained report.html that shows them as a person reads them:
// the verdict first, tables for every statistic, Chart.js charts (inlined, no network) for the accuracies,
// the selection, the pairs and every training curve. It reads a finished run folder; it runs nothing.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import type { PairStats, SkipReason } from '../pipeline/pairs.js';
import type { SelectionStats } from '../pipeline/select.js';

/** One optimizer step of a preference run (DPO, ORPO): its loss and the reward statistics the trainer logs. */
export interface PreferencePoint {
  step: number;
  loss: number;
  /** `rewards/margins`: mean reward of the chosen minus the rejected response. */
  margin: number;
  /** `rewards/accuracies`: share of the step's pairs whose chosen response has the higher reward. */
  accuracy: number;
}

/** One round of Stage I's consistency selection (metrics.json `selection[i]`). */
export type SelectionRound = Partial<SelectionStats> & { step?: string };

export interface Report {
  title: string;
  /** One line: did weak floor < full weak FT < Stage I hold, Stage II against Stage I, PGR of both stages. */
  verdict?: string;
  accuracy: Record<string, number | undefined>;
  pgr: Record<string, number | null | undefined>;
  losses: Record<string, { step: number; loss: number }[]>;
  /** Preference steps' curves (steps whose history logs rewards/margins). */
  preference?: Record<string, PreferencePoint[]>;
  selection: SelectionRound[] | undefined;
  pairs: Partial<PairStats> | undefined;
  /** Per step: wall time, whether it was cached, and the device its models/trainers ran on (manifest stats.device). */
  timings: { step: string; seconds: number; skipped: boolean; device?: string }[];
  extra?: Record<string, unknown>;
}

/** Accuracy keys of a run's metrics and their labels, in the order the method's stages build on each other. */
export const STAGES: readonly (readonly [string, string])[] = [
  ['weak', 'weak floor'], ['strongBase', 'strong, untrained'], ['fullWeakFt', 'full weak FT'],
  ['stage1', 'Stage I'], ['stage2', 'Stage II'], ['ceiling', 'ceiling'],
];

/** The ordering the method claims (method.md §8; README): each stage above the one before it. */
export const ORDERING = ['weak', 'fullWeakFt', 'stage1'] as const;

const label = (k: string) => STAGES.find(([s]) => s === k)?.[1] ?? k;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * The verdict line: whether weak floor < full weak FT < Stage I held (strictly), how Stage II compares with
 * Stage I, and the PGR of Stage I and Stage II. Accuracies may be means over seeds; missing stages are said.
 */
export function verdict(accuracy: Record<string, number | undefined>, pgr: Record<string, number | null | undefined>): { ordered: boolean | null; text: string } {
  const a = (k: string) => (typeof accuracy[k] === 'number' ? accuracy[k] : undefined);
  const missing = ORDERING.filter((k) => a(k) === undefined);
  // The relation actually measured between neighbours (so a failed ordering reads true: `10.0% > 5.0%`).
  const present = ORDERING.filter((k) => a(k) !== undefined);
  const chain = present.map((k, i) => `${i === 0 ? '' : a(k)! > a(present[i - 1]!)! ? ' < ' : a(k)! === a(present[i - 1]!)! ? ' = ' : ' > '}${label(k)} ${pct(a(k)!)}`).join('');
  const ordered = missing.length > 0 ? null : ORDERING.every((k, i) => i === 0 || a(k)! > a(ORDERING[i - 1]!)!);
  const parts = [
    ordered === null ? `Ordering not measured (no ${missing.map(label).join(', ')})` : `Ordering ${ordered ? 'held' : 'did NOT hold'}: ${chain}`,
  ];
  if (a('stage2') !== undefined && a('stage1') !== undefined) {
    const d = 100 * (a('stage2')! - a('stage1')!);
    parts.push(`Stage II ${pct(a('stage2')!)} (${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(1)} points vs Stage I)`);
  } else {
    parts.push('Stage II not run');
  }
  const g = (k: string) => (typeof pgr[k] === 'number' ? (pgr[k] as number).toFixed(2) : '–');
  parts.push(`PGR: Stage I ${g('stage1')}, Stage II ${g('stage2')}`);
  return { ordered, text: `${parts.join('. ')}.` };
}

interface HistoryRow { step: number; loss: number; 'rewards/margins'?: number; 'rewards/accuracies'?: number }

/** The device a step recorded in its manifest (steps.ts noteDevice), if any. */
function stepDevice(runDir: string, step: string): { device?: string } {
  try {
    const d = (JSON.parse(fs.readFileSync(path.join(runDir, step, 'manifest.json'), 'utf8')) as { stats?: { device?: unknown } }).stats?.device;
    return typeof d === 'string' ? { device: d } : {};
  } catch {
    return {};
  }
}

/** Collects the report from a finished run folder (its metrics.json and the training logs of its steps). */
export function collectReport(runDir: string, title: string, extra?: Record<string, unknown>): Report {
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'metrics.json'), 'utf8')) as {
    metrics: { accuracy: Record<string, number>; pgr: Record<string, number | null>; selection: SelectionRound[]; pairs: Partial<PairStats> | undefined };
    steps: { name: string; seconds: number; skipped: boolean }[];
  };
  const losses: Report['losses'] = {};
  const preference: NonNullable<Report['preference']> = {};
  for (const s of summary.steps) {
    const log = path.join(runDir, s.name, 'adapter.gguf.log.json');
    if (!fs.existsSync(log)) continue;
    const history = (JSON.parse(fs.readFileSync(log, 'utf8')) as { history: HistoryRow[] }).history;
    losses[s.name] = history.map((h) => ({ step: h.step, loss: h.loss }));
    if (history.length > 0 && history.every((h) => typeof h['rewards/margins'] === 'number')) {
      preference[s.name] = history.map((h) => ({ step: h.step, loss: h.loss, margin: h['rewards/margins']!, accuracy: h['rewards/accuracies'] ?? NaN }));
    }
  }
  const { accuracy, pgr } = summary.metrics;
  return {
    title, verdict: verdict(accuracy, pgr).text, accuracy, pgr, losses, preference,
    selection: summary.metrics.selection, pairs: summary.metrics.pairs,
    timings: summary.steps.map((s) => ({ step: s.name, seconds: s.seconds, skipped: s.skipped, ...stepDevice(runDir, s.name) })), extra,
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
/** `n (p%)` of a count out of a total; `–` when either is unknown. */
const countOf = (n: unknown, of: unknown) => (num(n) === undefined ? '–' : num(of) ? `${n} (${pct((n as number) / (of as number))})` : String(n));
const row = (cells: (string | number)[], head = false) => `<tr>${cells.map((c) => (head ? `<th>${c}</th>` : `<td>${c}</td>`)).join('')}</tr>`;

/** Why Stage II skipped a question (lib/pipeline/pairs.ts), as a reader needs it. */
const SKIP_LABELS: Record<SkipReason, string> = {
  'low-confidence': 'skipped: majority below minConfidence',
  'empty-majority': 'skipped: majority answer empty',
  'no-negatives': 'skipped: no sample disagrees with the weak answer',
  'uncertain-disagreement': 'skipped: majority disagrees, below rejectConfidence',
};

function selectionTable(rounds: SelectionRound[]): string {
  const head = row(['round', 'questions', 'kept', 'kept and correct (precision)', 'dropped: weak answer empty', 'dropped: answers disagree', 'weak accuracy (all questions)'], true);
  const body = rounds.map((r, i) => row([
    escapeHtml(r.step ?? String(i + 1)), r.total ?? '–', countOf(r.kept, r.total),
    num(r.keptCorrect) === undefined ? '–' : `${r.keptCorrect} (${num(r.precision) === undefined ? '–' : pct(r.precision!)})`,
    countOf(r.droppedEmpty, r.total), countOf(r.droppedDisagree, r.total), num(r.weakAccuracy) === undefined ? '–' : pct(r.weakAccuracy!),
  ])).join('');
  return `<table id="selection-table">${head}${body}</table>`;
}

function pairsTable(p: Partial<PairStats>): string {
  const q = p.questions;
  const rows: [string, string, string][] = [
    ['questions sampled', String(q ?? '–'), ''],
    ['rule "weak chosen": a confident majority agrees with the weak answer', countOf(p.weakChosenQuestions, q), String(p.weakChosenPairs ?? '–')],
    ['rule "weak rejected": a very confident majority disagrees with it', countOf(p.weakRejectedQuestions, q), String(p.weakRejectedPairs ?? '–')],
    ...(Object.keys(SKIP_LABELS) as SkipReason[]).map((k): [string, string, string] => [SKIP_LABELS[k], countOf(p.skipped?.[k], q), '']),
    ['pairs', '', String(p.pairs ?? '–')],
    ['pairs whose chosen side is correct', '', countOf(p.chosenCorrect, p.pairs)],
    ['pairs whose rejected side is correct', '', countOf(p.rejectedCorrect, p.pairs)],
  ];
  return `<table id="pairs-table">${row(['', 'questions', 'pairs'], true)}${rows.map((r) => row(r)).join('')}</table>`;
}

/** The World section of a demo report: where the models came from, and the quality gate. */
function worldSection(extra: Record<string, unknown>): string {
  const models = extra.models as Record<string, unknown> | undefined;
  const gate = extra.gate as Record<string, { measure: string; value: number; band: [number, number] }> | undefined;
  const show = (k: string, v: unknown): string => {
    const o = v as Record<string, unknown>;
    if (k === 'host' && o && typeof o === 'object') return `${o.cpu}, ${o.cpus} CPUs (${(o.simd as string[] | undefined)?.join(' ') ?? '?'}), ${o.platform}, Node ${o.node}`;
    if (k === 'seconds' && o && typeof o === 'object') return Object.entries(o).map(([m, x]) => `${m} ${Number(x).toFixed(0)} s`).join(', ');
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  const modelRows = models ? Object.entries(models).filter(([k]) => k !== 'files')
    .map(([k, v]) => row([escapeHtml(k === 'seconds' ? 'pretraining time' : k), escapeHtml(show(k, v))])).join('') : '';
  const gateRows = gate ? Object.values(gate).map((g) => row([
    escapeHtml(g.measure), pct(g.value), `${pct(g.band[0])} … ${pct(g.band[1])}`, g.value >= g.band[0] && g.value <= g.band[1] ? 'pass' : 'FAIL',
  ])).join('') : '';
  return `<h2>World</h2>
${modelRows ? `<h3>Models</h3><table id="models-table">${modelRows}</table>` : ''}
${gateRows ? `<h3>Quality gate (held-out questions, greedy)</h3>${typeof extra.gateMeasured === 'string' ? `<p>Measured ${escapeHtml(extra.gateMeasured)}.</p>` : ''}<table id="gate-table">${row(['measure', 'value', 'band', ''], true)}${gateRows}</table>` : ''}
<details><summary>All settings</summary><pre>${escapeHtml(JSON.stringify(extra, null, 2))}</pre></details>`;
}

/** The page: data embedded as JSON, Chart.js inlined, the verdict, charts and tables. */
export function renderHtml(r: Report): string {
  // chart.js exports no path to its UMD build: find it beside the CommonJS entry (dist/chart.cjs).
  const chartJs = fs.readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const v = verdict(r.accuracy, r.pgr);
  const stages = STAGES.filter(([k]) => typeof r.accuracy[k] === 'number');
  const rows = stages.map(([k, l]) => `<tr><td>${l}</td><td>${pct(r.accuracy[k]!)}</td><td>${typeof r.pgr[k] === 'number' ? (r.pgr[k] as number).toFixed(2) : '–'}</td></tr>`).join('');
  const timing = r.timings.map((t) => `<tr><td>${escapeHtml(t.step)}</td><td>${t.seconds.toFixed(1)} s${t.skipped ? ' (cached)' : ''}</td><td>${escapeHtml(t.device ?? '–')}</td></tr>`).join('');
  const total = r.timings.filter((t) => !t.skipped).reduce((a, t) => a + t.seconds, 0);
  const rounds = Array.isArray(r.selection) ? r.selection : [];
  const pairs = r.pairs && typeof r.pairs === 'object' ? r.pairs : undefined;
  const preference = Object.entries(r.preference ?? {}).filter(([, pts]) => pts.length > 0);
  const charts = ['accuracy', 'losses', ...(rounds.length ? ['selection'] : []), ...(pairs && num(pairs.pairs) ? ['pairs'] : []), ...preference.map((_, i) => `preference-${i}`)];
  const data = JSON.stringify({
    stages: stages.map(([k, l]) => ({ label: l, value: 100 * r.accuracy[k]! })), losses: r.losses,
    selection: rounds.map((s, i) => ({
      label: s.step ?? `round ${i + 1}`, keptCorrect: s.keptCorrect ?? 0, keptWrong: (s.kept ?? 0) - (s.keptCorrect ?? 0), droppedEmpty: s.droppedEmpty ?? 0, droppedDisagree: s.droppedDisagree ?? 0,
    })),
    pairs: pairs ? { pairs: pairs.pairs ?? 0, chosenCorrect: pairs.chosenCorrect ?? 0, rejectedCorrect: pairs.rejectedCorrect ?? 0 } : null,
    preference: preference.map(([name, pts]) => ({ name, pts })),
    charts: charts.length,
  }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(r.title)}</title>
<style>body{font:15px system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}canvas{max-height:360px}canvas.small{max-height:180px}
pre{background:#f6f6f6;padding:1em;overflow:auto}.verdict{font-size:17px;padding:.6em 1em;border-radius:4px}
.verdict.held{background:#e7f5e9;border:1px solid #8fca98}.verdict.failed{background:#fbe9e9;border:1px solid #e09a9a}.verdict.unknown{background:#f3f3f3;border:1px solid #ccc}</style>
</head><body>
<h1>${escapeHtml(r.title)}</h1>
<p id="verdict" class="verdict ${v.ordered === null ? 'unknown' : v.ordered ? 'held' : 'failed'}">${escapeHtml(r.verdict ?? v.text)}</p>
<h2>Test accuracy per stage</h2><canvas id="accuracy"></canvas>
<table><tr><th>stage</th><th>accuracy</th><th>PGR</th></tr>${rows}</table>
<h2>Stage I: consistency selection</h2>
${rounds.length ? `<p>A train_2 question is kept when the weak model's answer and the strong model's few-shot (weak-ICL) answer agree; precision is the share of kept questions whose answer is correct (the paper: 88–92%).</p>
${selectionTable(rounds)}<canvas id="selection" class="small"></canvas>` : '<p>No selection in this run.</p>'}
<h2>Stage II: preference pairs</h2>
${pairs ? `<p>The strong model's samples vote per question; the weak answer is chosen or rejected against the majority, or the question is skipped.</p>
${pairsTable(pairs)}${num(pairs.pairs) ? '<canvas id="pairs" class="small"></canvas>' : ''}` : '<p>Stage II did not run.</p>'}
<h2>Training loss per step</h2><canvas id="losses"></canvas>
${preference.map(([name], i) => `<h3>Preference training: ${escapeHtml(name)}</h3>
<p>Loss, reward margin (chosen minus rejected) and reward accuracy (share of pairs with a positive margin) per step.</p><canvas id="preference-${i}"></canvas>`).join('\n')}
<h2>Timings</h2><table><tr><th>step</th><th>time</th><th>device</th></tr>${timing}<tr><th>total (steps run)</th><th>${total.toFixed(1)} s</th><th></th></tr></table>
${r.extra ? worldSection(r.extra) : ''}
<script>${chartJs}</script>
<script>
const data = ${data};
window.chartsExpected = data.charts;
window.chartsReady = 0;
const done = () => { window.chartsReady += 1; };
// Lines of a few steps only (a short preference run) would be invisible without their points.
const dot = (pts) => (pts.length <= 10 ? 3 : 0);
const once = () => { let called = false; return () => { if (!called) { called = true; done(); } }; };
new Chart(document.getElementById('accuracy'), { type: 'bar',
  data: { labels: data.stages.map((s) => s.label), datasets: [{ label: 'accuracy (%)', data: data.stages.map((s) => s.value) }] },
  options: { animation: { onComplete: once() }, scales: { y: { beginAtZero: true, max: 100 } } } });
new Chart(document.getElementById('losses'), { type: 'line',
  data: { datasets: Object.entries(data.losses).map(([name, pts]) => ({ label: name, data: pts.map((p) => ({ x: p.step, y: p.loss })), pointRadius: dot(pts) })) },
  options: { animation: { onComplete: once() }, parsing: true, scales: { x: { type: 'linear', title: { display: true, text: 'step' } }, y: { title: { display: true, text: 'loss' } } } } });
if (data.selection.length) new Chart(document.getElementById('selection'), { type: 'bar',
  data: { labels: data.selection.map((s) => s.label), datasets: [
    { label: 'kept, correct', data: data.selection.map((s) => s.keptCorrect), backgroundColor: '#2e9e48' },
    { label: 'kept, wrong', data: data.selection.map((s) => s.keptWrong), backgroundColor: '#e0a030' },
    { label: 'dropped: weak answer empty', data: data.selection.map((s) => s.droppedEmpty), backgroundColor: '#9aa5b1' },
    { label: 'dropped: answers disagree', data: data.selection.map((s) => s.droppedDisagree), backgroundColor: '#c0504d' }] },
  options: { indexAxis: 'y', animation: { onComplete: once() }, scales: { x: { stacked: true, title: { display: true, text: 'train_2 questions' } }, y: { stacked: true } } } });
if (data.pairs && data.pairs.pairs) new Chart(document.getElementById('pairs'), { type: 'bar',
  data: { labels: ['chosen side', 'rejected side'], datasets: [
    { label: 'correct', data: [data.pairs.chosenCorrect, data.pairs.rejectedCorrect], backgroundColor: '#2e9e48' },
    { label: 'wrong', data: [data.pairs.pairs - data.pairs.chosenCorrect, data.pairs.pairs - data.pairs.rejectedCorrect], backgroundColor: '#c0504d' }] },
  options: { indexAxis: 'y', animation: { onComplete: once() }, scales: { x: { stacked: true, title: { display: true, text: 'pairs' } }, y: { stacked: true } } } });
data.preference.forEach((p, i) => new Chart(document.getElementById('preference-' + i), { type: 'line',
  data: { datasets: [
    { label: 'loss', data: p.pts.map((q) => ({ x: q.step, y: q.loss })), yAxisID: 'y', pointRadius: dot(p.pts), borderColor: '#3b6fd4', backgroundColor: '#3b6fd4' },
    { label: 'reward margin', data: p.pts.map((q) => ({ x: q.step, y: q.margin })), yAxisID: 'y', pointRadius: dot(p.pts), borderColor: '#d4733b', backgroundColor: '#d4733b' },
    { label: 'reward accuracy', data: p.pts.map((q) => ({ x: q.step, y: q.accuracy })), yAxisID: 'acc', pointRadius: dot(p.pts), borderColor: '#2e9e48', backgroundColor: '#2e9e48' }] },
  options: { animation: { onComplete: once() }, scales: { x: { type: 'linear', title: { display: true, text: 'step' } },
    y: { title: { display: true, text: 'loss, margin' } }, acc: { position: 'right', min: 0, max: 1, grid: { drawOnChartArea: false }, title: { display: true, text: 'reward accuracy' } } } } }));
</script></body></html>
`;
}

export async function writeReport(dir: string, r: Report): Promise<{ json: string; html: string }> {
  const json = path.join(dir, 'report.json');
  const html = path.join(dir, 'report.html');
  await writeFileAtomic(json, JSON.stringify({ ...r, verdict: r.verdict ?? verdict(r.accuracy, r.pgr).text }, null, 2) + '\n');
  await writeFileAtomic(html, renderHtml(r));
  return { json, html };
}
