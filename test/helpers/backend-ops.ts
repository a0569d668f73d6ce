// Which op/type combinations the pinned llama.cpp's GPU backends accept, read from their supports_op source
// (deps/llama.cpp, cloned at install): the one place the training-graph audit takes its allowed set from,
// since the test machines have no GPU. A graph node "OP src0-type src1-type" is accepted by a backend when its
// supports_op names the op (GGML_OP_X, or GGML_UNARY_OP_X for unary ops) and, if the op's case block lists
// types, the node's non-F32 source types are among them. OUT_PROD is special-cased to all-F32 sources: both
// backends' blocks check src types against F32 in expressions this reader does not evaluate.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../lib/native.js';

export interface BackendSource {
  name: string;
  body: string;
}

function supportsOpSource(name: string, rel: string, fn: string): BackendSource {
  const src = fs.readFileSync(path.join(packageRoot(), 'deps', 'llama.cpp', 'ggml', 'src', rel), 'utf8');
  const start = src.indexOf(`static bool ${fn}(`);
  if (start < 0) throw new Error(`${fn} not found in ${rel}`);
  return { name, body: src.slice(start, src.indexOf('\nstatic ', start + 10)) };
}

export const GPU_BACKENDS: readonly BackendSource[] = [
  supportsOpSource('CUDA', 'ggml-cuda/ggml-cuda.cu', 'ggml_backend_cuda_device_supports_op'),
  supportsOpSource('Vulkan', 'ggml-vulkan/ggml-vulkan.cpp', 'ggml_backend_vk_device_supports_op'),
];

/** The text of the case group that handles `label` (e.g. GGML_OP_GET_ROWS), up to the next group's labels. */
function caseBlock(body: string, label: string): string | undefined {
  const at = body.indexOf(`case ${label}:`);
  if (at < 0) return undefined;
  const lines = body.slice(at).split('\n');
  const out: string[] = [];
  let seenCode = false;
  for (const line of lines) {
    const isLabel = /^\s*case GGML_(UNARY_)?OP_\w+:\s*$/.test(line);
    if (isLabel && seenCode) break;
    if (!isLabel) seenCode = true;
    out.push(line);
  }
  return out.join('\n');
}

/** ggml's type name ('q4_K', 'f16') as the source spells it (GGML_TYPE_Q4_K). */
const typeLabel = (t: string) => `GGML_TYPE_${t.toUpperCase()}`;

/** Why `backend` rejects the node signature "OP t0 t1", or undefined when it accepts it. */
export function rejection(backend: BackendSource, signature: string): string | undefined {
  const [op, ...types] = signature.split(' ');
  const block = caseBlock(backend.body, `GGML_OP_${op}`) ?? caseBlock(backend.body, `GGML_UNARY_OP_${op}`);
  if (block === undefined) return `${backend.name} does not list ${op}`;
  if (op === 'OUT_PROD') return types.every((t) => t === 'f32') ? undefined : `${backend.name} runs OUT_PROD on F32 sources only`;
  if (!block.includes('GGML_TYPE_')) return undefined;
  const missing = types.filter((t) => t !== 'f32' && t !== 'i32' && !block.includes(typeLabel(t)));
  return missing.length > 0 ? `${backend.name}'s ${op} does not list ${missing.join(', ')}` : undefined;
}
