// GPU option parsing and the default layer offload (lib/gpu.ts): pure functions, checked against hand counts.
import test from 'ava';
import { fitGpuLayers, layerBytes, nativeGpu, parseGpu } from '../lib/gpu.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { tinyModel } from './helpers/models.js';

test('parseGpu takes the documented values and the CLI spellings of false; anything else is a typed error', (t) => {
  t.is(parseGpu(undefined), 'auto');
  t.is(parseGpu('auto'), 'auto');
  t.is(parseGpu('cuda'), 'cuda');
  t.is(parseGpu('vulkan'), 'vulkan');
  for (const f of [false, 'false', 'none', 'cpu']) t.is(parseGpu(f), false);
  for (const bad of ['CUDA', 'metal', true, 1, '']) t.throws(() => parseGpu(bad), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.deepEqual([nativeGpu('auto'), nativeGpu(false), nativeGpu('cuda'), nativeGpu('vulkan')], ['', 'none', 'CUDA', 'Vulkan']);
});

test('fitGpuLayers: everything that fits, else the last layers that fit beside the reserve, else none', (t) => {
  const b = { perLayer: [100, 100, 100, 100], other: 50 };
  t.is(fitGpuLayers(b, 1000, 100), 999); // 450 <= 900: all layers and the head
  t.is(fitGpuLayers(b, 550, 100), 999); // exactly fits
  t.is(fitGpuLayers(b, 549, 100), 4); // the head no longer fits, all four layers do
  t.is(fitGpuLayers(b, 350, 100), 2);
  t.is(fitGpuLayers(b, 150, 100), 0);
  t.is(fitGpuLayers({ perLayer: [10, 10, 300], other: 0 }, 100, 0), 0, 'layers go from the last one down: a big last layer blocks');
});

test('layerBytes splits a real file\'s tensor table into blocks and the rest, adding up to every tensor', async (t) => {
  const file = await tinyModel({ arch: 'llama', layers: 3, type: 'q8_0' });
  const meta = await readGgufMetadata(file);
  const b = layerBytes(meta.tensors, 3);
  t.is(b.perLayer.length, 3);
  t.true(b.perLayer.every((x) => x > 0 && x === b.perLayer[0]), 'identical blocks weigh the same');
  t.is(b.perLayer.reduce((a, x) => a + x, 0) + b.other, meta.tensors.reduce((a, x) => a + x.bytes, 0));
  const head = meta.tensors.filter((x) => !x.name.startsWith('blk.')).reduce((a, x) => a + x.bytes, 0);
  t.is(b.other, head);
});
