// Optional LaTeX-aware equivalence of two normalized answers, on @cortex-js/compute-engine.
// Not paper-faithful (the paper's verdicts equal plain string equality); answer.ts imports this lazily.

import type { ComputeEngine as ComputeEngineType } from '@cortex-js/compute-engine';

let engine: Promise<ComputeEngineType> | undefined;

/** One engine per process, created on first use (loading the package takes ~0.2 s). */
function getEngine(): Promise<ComputeEngineType> {
  engine ??= import('@cortex-js/compute-engine').then(({ ComputeEngine }) => new ComputeEngine());
  return engine;
}

/**
 * Whether two normalized answers denote the same value: identical strings; or both parse as valid LaTeX
 * and are structurally the same, numerically equal within the engine's tolerance (`0.50`, `\frac{1}{2}`),
 * or provably identical in their free variables (`(x+1)^2`, `x^2+2x+1`). Anything undecided is `false`,
 * as the original falls back to string equality when sympy cannot parse.
 */
export async function symbolicEqual(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  if (a === '' || b === '') return false;
  const ce = await getEngine();
  ce.pushScope(); // symbols auto-declared while parsing stay local to this comparison
  try {
    const x = ce.parse(a);
    const y = ce.parse(b);
    if (!x.isValid || !y.isValid) return false;
    if (x.isSame(y)) return true;
    if (x.isEqual(y) === true) return true;
    return x.isIdenticallyEqual(y) === true;
  } catch {
    return false; // an engine failure on odd input is "not shown equal", never a crash of scoring
  } finally {
    ce.popScope();
  }
}
