// Locates the paper's released data at ../shared/data (relative to the repo root) for data-driven tests;
// `dataTest` is ava's `test`, or `test.skip` (visibly skipped) when the folder is absent.

import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

/** The repo root: this file runs as dist/test/helpers/shared-data.js. */
const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

export const SHARED_DATA = resolve(repoRoot, '../shared/data');
export const dataPresent = existsSync(join(SHARED_DATA, 'README.md'));

if (!dataPresent) console.warn(`[weak2strong tests] skipping data tests: ${SHARED_DATA} not found (see the shared data README)`);

export const dataTest = dataPresent ? test : test.skip;
/** `dataTest`, run alone in its file (tests that measure what runs at once). */
export const dataTestSerial = dataPresent ? test.serial : test.skip;

export function dataPath(...parts: string[]): string {
  return join(SHARED_DATA, ...parts);
}

/** The `data:` block of a `w2s run` YAML config on the shared GSM8K splits, the first N questions of each. */
export function gsm8kDataYaml(limit: { train1: number; train2: number; test: number }): string[] {
  return [
    'data:',
    `  train1: ${JSON.stringify(dataPath('gsm8k', 'train_1.jsonl'))}`,
    `  train2: ${JSON.stringify(dataPath('gsm8k', 'train_2.jsonl'))}`,
    `  test: ${JSON.stringify(dataPath('gsm8k', 'test.jsonl'))}`,
    `  limit: { train1: ${limit.train1}, train2: ${limit.train2}, test: ${limit.test} }`,
  ];
}

export function readJsonl<T = Record<string, unknown>>(...parts: string[]): T[] {
  return readFileSync(dataPath(...parts), 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);
}

export function readJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(readFileSync(dataPath(...parts), 'utf8')) as T;
}

export const GSM8K_PAPER = 'paper/gsm8k/llama2_7b';
export const MATH_PAPER = 'paper/math/llama2_7b';
