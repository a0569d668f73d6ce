// Opens a report.html (lib/report/report.ts) in headless Chromium and says what a reader would see: errors
// logged or thrown, how many charts finished drawing, how much each canvas actually painted, and the rows of
// the accuracy table. It reports rather than asserts, so a test can also check that a broken page fails.
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_CANDIDATES, findChromium } from '../../scripts/chromium.mjs';

/** The Chromium the report tests use (scripts/chromium.mjs: Debian's /usr/bin/chromium, …, or W2S_CHROMIUM). */
export const CHROMIUM = findChromium();

// The machine has no internet: these keep Chromium from trying to reach Google's services (refused connections
// would otherwise show up as noise, or slow start-up), and --no-sandbox lets it run as root in CI.
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export interface CanvasCheck {
  id: string; width: number; height: number;
  /** Pixels with any opacity: a canvas nobody drew on has none. */
  nonBlankPixels: number;
  /** Opaque-ish pixels with a clear hue: the data series (Chart.js colours them), not the grey axes, grid and text. */
  colouredPixels: number;
}

export interface ReportPageCheck {
  consoleErrors: string[];
  pageErrors: string[];
  /** window.chartsReady when the wait ended: each chart adds 1 when its first animation completes. */
  chartsReady: number;
  canvases: CanvasCheck[];
  /** Cells of each body row of the table that follows canvas#accuracy (one row per stage). */
  accuracyRows: string[][];
  /** window.chartsExpected: how many charts the page itself says it draws (0 when its script did not run). */
  chartsExpected: number;
  /** Body rows (cells) of every table with an id, by id. */
  tables: Record<string, string[][]>;
  /** Text of the element #verdict ('' when there is none). */
  verdict: string;
}

export interface CheckOptions {
  /** How many charts the page should finish drawing. Defaults to the page's own window.chartsExpected, else 2. */
  charts?: number;
  /** How long to wait for them; the check returns what it saw when this runs out. */
  timeoutMs?: number;
  /** Save a full-page PNG screenshot here after the wait. */
  screenshot?: string;
}

/** Loads `htmlPath` from file:// in a fresh browser (playwright's temp profile) and always closes it. */
export async function checkReportPage(htmlPath: string, opts: CheckOptions = {}): Promise<ReportPageCheck> {
  const { charts, timeoutMs = 5000 } = opts;
  // Fail, never skip: a missing browser would otherwise hide a broken report page.
  if (!CHROMIUM) {
    throw new Error(`Chromium not found (looked in ${CHROMIUM_CANDIDATES.join(', ')}): \`npm test\` installs it where it may (scripts/ensure-setup.mjs); ` +
      'otherwise run `sudo apt-get install -y --no-install-recommends chromium` or set W2S_CHROMIUM');
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 });
  try {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    const pageErrors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
    // Chart.js draws asynchronously (animation frames); a timeout here is a result, not an error.
    await page.waitForFunction((n) => {
      const w = window as unknown as { chartsReady?: number; chartsExpected?: number };
      return w.chartsReady === (n ?? w.chartsExpected ?? 2);
    }, charts ?? null, { timeout: timeoutMs })
      .catch((e: unknown) => { if (!(e instanceof Error && e.name === 'TimeoutError')) throw e; });
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    const seen = await page.evaluate(() => {
      const canvases = [...document.querySelectorAll('canvas')].map((c) => {
        const ctx = c.getContext('2d');
        let nonBlankPixels = 0;
        let colouredPixels = 0;
        if (ctx && c.width > 0 && c.height > 0) {
          const px = ctx.getImageData(0, 0, c.width, c.height).data;
          for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3]! === 0) continue;
            nonBlankPixels++;
            const [r, g, b] = [px[i]!, px[i + 1]!, px[i + 2]!];
            if (px[i + 3]! >= 64 && Math.max(r, g, b) - Math.min(r, g, b) >= 64) colouredPixels++;
          }
        }
        return { id: c.id, width: c.width, height: c.height, nonBlankPixels, colouredPixels };
      });
      let table = document.getElementById('accuracy')?.nextElementSibling ?? null;
      while (table && table.tagName !== 'TABLE') table = table.nextElementSibling;
      const accuracyRows = [...(table?.querySelectorAll('tr') ?? [])]
        .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''))
        .filter((cells) => cells.length > 0);
      const chartsReady = (window as unknown as { chartsReady?: number }).chartsReady ?? 0;
      const chartsExpected = (window as unknown as { chartsExpected?: number }).chartsExpected ?? 0;
      const tables = Object.fromEntries([...document.querySelectorAll('table[id]')].map((t) => [t.id, [...t.querySelectorAll('tr')]
        .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''))
        .filter((cells) => cells.length > 0)]));
      const verdict = document.getElementById('verdict')?.textContent ?? '';
      return { canvases, accuracyRows, chartsReady, chartsExpected, tables, verdict };
    });
    return { consoleErrors, pageErrors, ...seen };
  } finally {
    await browser.close();
  }
}
