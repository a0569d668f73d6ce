// The world models that ship in worlds/: every manifest entry's files exist and match their sha256, load as
// the preset's models, belong to today's presets (worldKey) and pass the quality gate; `buildWorld` copies
// them (and refuses a damaged copy); rebuilding the quick world with the project's own trainer gives models
// that pass the same gate. The full world is not rebuilt here (~15–20 min per seed on 2 cores): its
// shipped models are checked, and its rebuild is the same code path on a bigger spec.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../lib/model.js';
import type { StepEvents } from '../lib/pipeline/run/steps.js';
import { buildWorld, worldKey } from '../lib/world/build.js';
import { gateFailures } from '../lib/world/gate.js';
import { WORLD_PRESETS } from '../lib/world/presets.js';
import { readWorldsManifest, saveWorld, shippedWorldsDir } from '../lib/world/shipped.js';
import { sha256 } from '../lib/pipeline/run/steps.js';
import { TMP } from './helpers/models.js';

const SHIPPED = shippedWorldsDir();
const manifest = readWorldsManifest(SHIPPED);
const quiet: StepEvents = { start() {}, progress() {}, end() {} };
function recorder(): StepEvents & { ran: string[]; skipped: string[] } {
  const ran: string[] = [];
  const skipped: string[] = [];
  return { ran, skipped, start() {}, progress() {}, end(name, _m, wasSkipped) { (wasSkipped ? skipped : ran).push(name); } };
}

test('the manifest lists the default worlds: full seeds 1, 2, 3 and quick seed 1, each saying how it was built', (t) => {
  t.deepEqual(manifest.worlds.map((w) => `${w.preset}-${w.seed}`), ['full-1', 'full-2', 'full-3', 'quick-1']);
  for (const w of manifest.worlds) {
    t.regex(w.build.command, /^w2s demo( --quick)? --rebuild-world --seed \d+ --save-world worlds$/);
    t.truthy(w.build.version);
    t.truthy(w.build.host.cpu);
    t.true(Number.isFinite(Date.parse(w.build.builtAt)));
    t.true(w.build.seconds.weak > 0 && w.build.seconds.strong > 0);
    t.true(typeof w.stats.strong.lastLoss === 'number');
  }
});

test('every shipped model matches its manifest hash and size, loads, and has the preset\'s shape', async (t) => {
  for (const w of manifest.worlds) {
    const spec = WORLD_PRESETS[w.preset as 'full' | 'quick'];
    t.is(w.worldKey, worldKey(spec), `${w.preset} seed ${w.seed} was built for another preset than today's: rebuild it (${w.build.command})`);
    for (const role of ['weak', 'strong'] as const) {
      const f = w.files[role];
      const data = fs.readFileSync(path.join(SHIPPED, f.path));
      t.is(data.length, f.bytes, f.path);
      t.is(sha256(data), f.sha256, f.path);
      const m = await loadModel(path.join(SHIPPED, f.path));
      t.is(m.info.nLayer, spec[role].layers, f.path);
      t.is(m.info.nEmbd, spec[role].embd, f.path);
      m.dispose();
    }
    t.deepEqual(gateFailures(w.gate, spec.gate), [], `${w.preset} seed ${w.seed}: gate figures recorded at build time`);
  }
});

test.serial('buildWorld copies the shipped quick world, gates it, and refuses a damaged copy', async (t) => {
  const spec = WORLD_PRESETS.quick;
  const first = recorder();
  const dir = path.join(TMP, 'shipped-quick');
  const w = await buildWorld(dir, spec, 1, first, undefined, { measureShipped: true });
  t.truthy(w.shipped);
  t.true(w.gateMeasuredHere);
  t.deepEqual(first.ran, ['00-data', '01-weak-model', '02-strong-model', '03-gate']);
  t.is(sha256(fs.readFileSync(w.strongModel)), w.shipped!.files.strong.sha256);
  t.deepEqual(gateFailures(w.gate, spec.gate), []);
  t.log('quick seed 1 gate here:', JSON.stringify(w.gate), 'at build:', JSON.stringify(w.shipped!.gate));
  const again = recorder();
  await buildWorld(dir, spec, 1, again, undefined, { measureShipped: true });
  t.deepEqual(again.ran, []);
  // By default the copied models' gate figures are those recorded at build (the hashes match): nothing measured.
  const recorded = await buildWorld(dir, spec, 1, quiet);
  t.false(recorded.gateMeasuredHere);
  t.deepEqual(recorded.gate, w.shipped!.gate);

  // A copy of worlds/ with one byte of the strong model changed: the copy step refuses it.
  const damaged = path.join(TMP, 'damaged-worlds');
  fs.cpSync(SHIPPED, damaged, { recursive: true });
  const f = path.join(damaged, w.shipped!.files.strong.path);
  const bytes = fs.readFileSync(f);
  bytes[bytes.length - 100] ^= 1;
  fs.writeFileSync(f, bytes);
  await t.throwsAsync(buildWorld(path.join(TMP, 'damaged-world'), spec, 1, quiet, undefined, { shippedDir: damaged }),
    { code: 'ERR_W2S_WORLD_INTEGRITY', message: /does not match .*manifest\.json.*--rebuild-world/s });
});

test.serial('a rebuilt quick world passes the same gate; a gate it cannot pass is an error that says why', async (t) => {
  // Pretraining the two quick models takes 3–10 minutes on a 2-core machine (one thread, as the preset says).
  t.timeout(20 * 60_000);
  const spec = WORLD_PRESETS.quick;
  const dir = path.join(TMP, 'rebuilt-quick');
  const ev = recorder();
  const began = performance.now();
  const w = await buildWorld(dir, spec, 1, ev, undefined, { source: 'rebuild' });
  t.log(`rebuilt the quick world in ${((performance.now() - began) / 1000).toFixed(0)} s; gate ${JSON.stringify(w.gate)}`);
  t.is(w.shipped, undefined);
  t.deepEqual(ev.ran, ['00-data', '01-weak-model', '02-strong-model', '03-gate']);
  t.deepEqual(gateFailures(w.gate, spec.gate), []);
  // Same host: usually the same bytes as the shipped ones; never required (other CPUs round differently).
  const shipped = manifest.worlds.find((x) => x.preset === 'quick' && x.seed === 1)!;
  t.log(`strong model bytes ${sha256(fs.readFileSync(w.strongModel)) === shipped.files.strong.sha256 ? 'equal' : 'differ from'} the shipped ones`);

  // The gate is checked against today's bands, also when its measurement is cached.
  const strict = { ...spec, gate: { ...spec.gate, bands: { ...spec.gate.bands, strongFewShot: [0.999, 1] as const } } };
  await t.throwsAsync(buildWorld(dir, strict, 1, quiet, undefined, { source: 'rebuild' }),
    { code: 'ERR_W2S_WORLD_GATE', message: /strong model, 4 gold examples closed by `####`, graded by `####`: \d+\.\d%, allowed 99\.9% … 100\.0%/ });

  // Saving it writes the models and a manifest entry whose hashes are the files'.
  const out = path.join(TMP, 'saved-worlds');
  const entry = await saveWorld(out, {
    preset: 'quick', seed: 1, worldKey: worldKey(spec), weakModel: w.weakModel, strongModel: w.strongModel, command: 'test',
    threads: 1, seconds: { weak: 1, strong: 2 }, stats: { weak: {}, strong: {} }, gate: w.gate,
  });
  t.deepEqual(readWorldsManifest(out).worlds, [entry]);
  t.is(sha256(fs.readFileSync(path.join(out, entry.files.strong.path))), sha256(fs.readFileSync(w.strongModel)));
  // Built from the rebuilt models, that folder serves buildWorld like the shipped one.
  const fromSaved = await buildWorld(path.join(TMP, 'from-saved'), spec, 1, quiet, undefined, { shippedDir: out });
  t.is(fromSaved.shipped?.build.command, 'test');
  t.deepEqual(fromSaved.gate, w.gate);
});
