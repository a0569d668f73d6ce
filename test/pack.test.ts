// Distribution: `npm pack` holds a prebuilt addon, and installing the tarball into an empty folder with
// `npm install --ignore-scripts` (no build step, as npm 11 does for dependencies) gives a working `w2s`
// and library. Dependencies come from npm's cache when present (--prefer-offline).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

test('the packed tarball installs without scripts and runs w2s and the library', (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'w2s-pack-'));
  const packed = execFileSync(npm, ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const info = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const files = info[0]!.files.map((f) => f.path);
  t.true(files.includes(`prebuilds/${process.platform}-${process.arch}/weak2strong.napi.node`), 'tarball has the prebuilt addon');
  // Every GPU variant (issue 12): linux-x64 installs node-llama-cpp's CUDA and Vulkan flavors, so both exist.
  const variants = process.platform === 'linux' && process.arch === 'x64' ? ['cuda', 'vulkan'] : [];
  for (const v of variants) t.true(files.includes(`prebuilds/${process.platform}-${process.arch}/weak2strong-${v}.napi.node`), `tarball has the ${v} variant`);
  t.true(files.includes('dist/lib/cli/main.js'));
  t.false(files.some((f) => f.startsWith('build/') || f.startsWith('deps/') || f.startsWith('dist/test/')), 'no build folders or tests in the tarball');

  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  execFileSync(npm, ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', path.join(work, info[0]!.filename)],
    { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  const installed = path.join(app, 'node_modules', 'weak2strong');
  t.false(fs.existsSync(path.join(installed, 'build')), 'nothing was compiled during install');

  // Only node on PATH: no compiler, cmake or git is needed to use the installed package.
  const env = { ...process.env, PATH: path.dirname(process.execPath) };
  const w2s = path.join(app, 'node_modules', '.bin', 'w2s');
  const model = path.join(work, 'm.gguf');
  execFileSync(w2s, ['model', 'create', '--arch', 'llama', '--layers', '1', '--embd', '32', '--heads', '2', '--kv-heads', '1', '--ff', '64', '--ctx', '128', '--type', 'q8_0', '--seed', '1', '--out', model], { env });
  fs.writeFileSync(path.join(work, 'p.jsonl'), '{"prompt":"Question: 1+1?\\nAnswer:"}\n');
  execFileSync(w2s, ['sample', '--model', model, '--prompts', path.join(work, 'p.jsonl'), '--n', '2', '--max-tokens', '5', '--out', path.join(work, 'o.jsonl')], { env, stdio: 'ignore' });
  const rows = fs.readFileSync(path.join(work, 'o.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(rows.length, 2);
  t.is(rows[0].tokens, 5);

  const script = path.join(app, 'use.mjs');
  fs.writeFileSync(script, `import { loadModel, addonLocation } from 'weak2strong';
const m = await loadModel(${JSON.stringify(model)});
const [s] = await m.score([{ prompt: 'Question:', completion: ' 2' }]);
console.log(JSON.stringify({ addon: addonLocation().addonPath, tokens: s.tokens, finite: Number.isFinite(s.sum) }));
m.dispose();`);
  const out = JSON.parse(execFileSync(process.execPath, [script], { cwd: app, env, encoding: 'utf8' }).trim());
  t.true(out.addon.startsWith(installed), `addon loaded from ${out.addon}`);
  t.regex(out.addon, /prebuilds/);
  t.true(out.finite);
  // Each GPU variant's prebuild loads from the installed package (on this machine's CPU devices without a GPU)
  // and scores the same tokens.
  for (const v of variants) {
    const vo = JSON.parse(execFileSync(process.execPath, [script], { cwd: app, env: { ...env, W2S_VARIANT: v }, encoding: 'utf8' }).trim());
    t.regex(vo.addon, new RegExp(`prebuilds/.*weak2strong-${v}\\.napi\\.node$`));
    t.is(vo.tokens, out.tokens);
    t.true(vo.finite);
  }
  // Install size (README, "Install size"): the tarball, and node_modules by package.
  const du = (p: string): number => {
    const st = fs.lstatSync(p);
    return st.isDirectory() ? fs.readdirSync(p).reduce((a, e) => a + du(path.join(p, e)), 0) : st.size;
  };
  const nm = path.join(app, 'node_modules');
  const scoped = fs.readdirSync(path.join(nm, '@node-llama-cpp')).map((d) => `@node-llama-cpp/${d}`);
  const sizes = ['weak2strong', 'node-llama-cpp', ...scoped].filter((d) => fs.existsSync(path.join(nm, d))).map((d) => `${d} ${(du(path.join(nm, d)) / 2 ** 20).toFixed(0)} MiB`);
  t.log(`tarball ${(fs.statSync(path.join(work, info[0]!.filename)).size / 2 ** 20).toFixed(1)} MiB; node_modules ${(du(nm) / 2 ** 20).toFixed(0)} MiB: ${sizes.join(', ')}`);
  fs.rmSync(work, { recursive: true, force: true });
});
