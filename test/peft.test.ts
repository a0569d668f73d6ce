// PEFT export (`w2s lora export --format peft`): the safetensors file and adapter_config.json are read by an
// independent reader (a Python script, standard library only, which also parses the GGUF adapter and redoes
// llama.cpp's q/k row permutation literally, as convert_hf_to_gguf.py writes it); PEFT → GGUF gives the
// same log-probs as the adapter it came from.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../lib/model.js';
import { exportPeft, importPeft, permuteRows } from '../lib/lora/peft.js';
import { TMP, tinyModel } from './helpers/models.js';
import { writeRandomLora } from './helpers/lora.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/cli/main.js');
const ALL = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'] as const;

// Reads the GGUF adapter and the PEFT folder with nothing but the standard library and checks that every
// PEFT tensor is its GGUF counterpart, with lora_B of q/k passed through LlamaModel.permute (reshape to
// (n_head, 2, rows/n_head/2, cols), swap axes 1 and 2, reshape back) as the HF → GGUF converter does.
const CHECK = String.raw`
import json, struct, sys
gguf_path, peft_dir, n_head, n_kv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def read_gguf(p):
    b = open(p, 'rb').read()
    assert b[:4] == b'GGUF'
    off = 8
    n_t, n_kv_ = struct.unpack_from('<QQ', b, off); off += 16
    sizes = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
    def val(t, off):
        if t == 8:
            n = struct.unpack_from('<Q', b, off)[0]; return b[off+8:off+8+n].decode(), off+8+n
        if t == 9:
            et, n = struct.unpack_from('<IQ', b, off); off += 12
            out = []
            for _ in range(n):
                v, off = val(et, off); out.append(v)
            return out, off
        fmt = {0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}[t]
        return struct.unpack_from('<'+fmt, b, off)[0], off + sizes[t]
    kv = {}
    for _ in range(n_kv_):
        n = struct.unpack_from('<Q', b, off)[0]; key = b[off+8:off+8+n].decode(); off += 8+n
        t = struct.unpack_from('<I', b, off)[0]; off += 4
        kv[key], off = val(t, off)
    tensors = {}
    for _ in range(n_t):
        n = struct.unpack_from('<Q', b, off)[0]; name = b[off+8:off+8+n].decode(); off += 8+n
        nd = struct.unpack_from('<I', b, off)[0]; off += 4
        ne = list(struct.unpack_from('<%dQ' % nd, b, off)); off += 8*nd
        typ, o = struct.unpack_from('<IQ', b, off); off += 12
        tensors[name] = (ne, typ, o)
    align = kv.get('general.alignment', 32)
    data = (off + align - 1) // align * align
    out = {}
    for name, (ne, typ, o) in tensors.items():
        assert typ == 0, name
        count = 1
        for x in ne: count *= x
        vals = struct.unpack_from('<%df' % count, b, data + o)
        rows = ne[1]; cols = ne[0]
        out[name] = [list(vals[r*cols:(r+1)*cols]) for r in range(rows)]
    return kv, out

def read_safetensors(p):
    b = open(p, 'rb').read()
    n = struct.unpack_from('<Q', b, 0)[0]
    header = json.loads(b[8:8+n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__': continue
        assert info['dtype'] == 'F32', name
        a, e = info['data_offsets']
        rows, cols = info['shape']
        vals = struct.unpack_from('<%df' % ((e - a) // 4), b, 8 + n + a)
        out[name] = (info['shape'], [list(vals[r*cols:(r+1)*cols]) for r in range(rows)])
    return header.get('__metadata__'), out

def permute(rows, heads):
    # LlamaModel.permute on a list of rows: reshape (heads, 2, half, cols), swapaxes(1, 2), reshape back.
    half = len(rows) // heads // 2
    nested = [[[rows[(h*2 + t)*half + j] for j in range(half)] for t in range(2)] for h in range(heads)]
    swapped = [[[nested[h][t][j] for t in range(2)] for j in range(half)] for h in range(heads)]
    return [r for h in swapped for pair in h for r in pair]

kv, g = read_gguf(gguf_path)
meta, st = read_safetensors(peft_dir + '/adapter_model.safetensors')
cfg = json.load(open(peft_dir + '/adapter_config.json'))
mods = {'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj', 'attn_output': 'self_attn.o_proj',
        'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj'}
expected = set()
worst = 0.0
for name, rows in g.items():
    if not name.endswith('.lora_a'): continue
    base = name[:-len('.weight.lora_a')]
    if base == 'output': hf = 'lm_head'
    else:
        _, layer, proj = base.split('.')
        hf = 'model.layers.%s.%s' % (layer, mods[proj])
    a_name = 'base_model.model.%s.lora_A.weight' % hf
    b_name = 'base_model.model.%s.lora_B.weight' % hf
    expected |= {a_name, b_name}
    ga, gb = rows, g[base + '.weight.lora_b']
    sa, a_rows = st[a_name]
    sb, b_rows = st[b_name]
    assert sa == [len(ga), len(ga[0])], (a_name, sa)
    assert sb == [len(gb), len(gb[0])], (b_name, sb)
    assert sa[0] == cfg['r'] and sb[1] == cfg['r']
    assert a_rows == ga, a_name
    heads = n_head if base.endswith('attn_q') else n_kv if base.endswith('attn_k') else 0
    # GGUF rows are the permuted HF rows.
    want = permute(b_rows, heads) if heads else b_rows
    assert want == gb, b_name
assert set(st) == expected, sorted(set(st) ^ expected)
assert cfg['peft_type'] == 'LORA' and cfg['task_type'] == 'CAUSAL_LM'
assert cfg['lora_alpha'] == kv['adapter.lora.alpha'], (cfg['lora_alpha'], kv['adapter.lora.alpha'])
print(json.dumps({'tensors': len(st), 'r': cfg['r'], 'lora_alpha': cfg['lora_alpha'], 'target_modules': cfg['target_modules'],
                  'shapes': {k.split('model.', 2)[-1]: v[0] for k, v in sorted(st.items()) if '.0.' in k or 'lm_head' in k}, 'metadata': meta}))
`;

test('permuteRows: GGUF → HF undoes HF → GGUF', (t) => {
  const m = Float32Array.from({ length: 32 * 3 }, (_, i) => i);
  const hf = permuteRows(m, 32, 3, 4, true);
  t.notDeepEqual(Array.from(hf), Array.from(m));
  t.deepEqual(Array.from(permuteRows(hf, 32, 3, 4, false)), Array.from(m));
});

test('w2s lora export --format peft: names, shapes, r, lora_alpha, target_modules by an independent reader; PEFT → GGUF gives the same log-probs', async (t) => {
  const model = await tinyModel({ seed: 21 });
  const dir = fs.mkdtempSync(path.join(TMP, 'peft-'));
  const adapter = await writeRandomLora(model, path.join(dir, 'a.gguf'), { targets: { 0: ALL, 1: ALL }, rank: 4, alpha: 8, output: true, std: 0.1 });
  const peft = path.join(dir, 'peft');
  const r = spawnSync(process.execPath, [cli, 'lora', 'export', '--adapter', adapter, '--model', model, '--format', 'peft', '--out', peft], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /30 tensors, r 4, lora_alpha 8, target_modules down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj/);
  t.deepEqual(fs.readdirSync(peft).sort(), ['adapter_config.json', 'adapter_model.safetensors']);

  const py = spawnSync('python3', ['-c', CHECK, adapter, peft, '4', '2'], { encoding: 'utf8' });
  t.is(py.status, 0, py.stderr);
  const got = JSON.parse(py.stdout);
  t.log(`python check: ${py.stdout.trim()}`);
  t.is(got.tensors, 30);
  t.is(got.r, 4);
  t.is(got.lora_alpha, 8);
  t.deepEqual(got.target_modules, ['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  // embd 64, 4 heads × 16, 2 KV heads, ff 128, vocab from the model.
  t.deepEqual(got.shapes['model.layers.0.self_attn.q_proj.lora_B.weight'], [64, 4]);
  t.deepEqual(got.shapes['model.layers.0.self_attn.k_proj.lora_B.weight'], [32, 4]);
  t.deepEqual(got.shapes['model.layers.0.mlp.down_proj.lora_A.weight'], [4, 128]);
  t.deepEqual(got.metadata, { format: 'pt' });

  // Back to GGUF: the log-probs of the round-tripped adapter are those of the original.
  const back = path.join(dir, 'back.gguf');
  const r2 = spawnSync(process.execPath, [cli, 'lora', 'export', '--adapter', peft, '--model', model, '--format', 'gguf', '--out', back], { encoding: 'utf8' });
  t.is(r2.status, 0, r2.stderr);
  const m = await loadModel(model);
  t.teardown(() => m.dispose());
  const items = [{ prompt: 'Question: What is 2 + 3?\nAnswer:', completion: ' 5 apples and then some more' }, { prompt: 'Hello', completion: ' world, again' }];
  const [a, b, base] = [await m.score(items, { lora: await m.loadLora(adapter) }), await m.score(items, { lora: await m.loadLora(back) }), await m.score(items)];
  let diff = 0;
  let moved = 0;
  for (let i = 0; i < items.length; i++) {
    for (let k = 0; k < a[i]!.logprobs.length; k++) {
      diff = Math.max(diff, Math.abs(a[i]!.logprobs[k]! - b[i]!.logprobs[k]!));
      moved = Math.max(moved, Math.abs(a[i]!.logprobs[k]! - base[i]!.logprobs[k]!));
    }
  }
  t.log(`PEFT → GGUF round trip: max |Δ log-prob| ${diff} (the adapter itself moves them by up to ${moved.toFixed(3)})`);
  t.is(diff, 0);
  t.true(moved > 1e-3);

  // A PEFT folder of another model is refused with its reason.
  const other = await tinyModel({ seed: 21, layers: 1 });
  const r3 = spawnSync(process.execPath, [cli, 'lora', 'export', '--adapter', peft, '--model', other, '--format', 'gguf', '--out', path.join(dir, 'x.gguf')], { encoding: 'utf8' });
  t.is(r3.status, 2);
  t.regex(r3.stderr, /adapts blk\.1\.[a-z_]+\.weight, which .* does not have: the adapter was made for another model \[ERR_W2S_ADAPTER\]/);
});

test('phi3: the fused attn_qkv and ffn_up export as qkv_proj and gate_up_proj (Phi-3\'s module names) and come back with the same log-probs', async (t) => {
  const model = await tinyModel({ arch: 'phi3', seed: 22 });
  const dir = fs.mkdtempSync(path.join(TMP, 'peft-phi3-'));
  const adapter = await writeRandomLora(model, path.join(dir, 'a.gguf'), { targets: { 0: ['attn_qkv', 'ffn_up'] as never, 1: ['attn_output', 'ffn_down'] }, rank: 4, alpha: 8, std: 0.1 });
  const out = await exportPeft(adapter, model, path.join(dir, 'peft'));
  t.deepEqual(out.targetModules, ['down_proj', 'gate_up_proj', 'o_proj', 'qkv_proj']);
  const back = path.join(dir, 'back.gguf');
  await importPeft(path.join(dir, 'peft'), model, back);
  const m = await loadModel(model);
  t.teardown(() => m.dispose());
  const items = [{ prompt: 'Question: What is 2 + 3?\nAnswer:', completion: ' 5 apples' }];
  const [a, b, base] = [await m.score(items, { lora: await m.loadLora(adapter) }), await m.score(items, { lora: await m.loadLora(back) }), await m.score(items)];
  const d = (x: typeof a, y: typeof a) => x[0]!.logprobs.reduce((mx, v, k) => Math.max(mx, Math.abs(v - y[0]!.logprobs[k]!)), 0);
  t.log(`phi3 PEFT round trip: max |Δ log-prob| ${d(a, b)}; the adapter moves them by ${d(a, base).toFixed(3)}`);
  t.is(d(a, b), 0);
  t.true(d(a, base) > 1e-3);
});
