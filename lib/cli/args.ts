// Commander argument parsers with the shared message shape, and reading of JSONL/JSON input rows.
import { InvalidArgumentError as CommanderArgError } from 'commander';
import { DataFormatError } from '../data/errors.js';
import { readRecordEntries } from '../data/json.js';

export function intArg(name: string, min = Number.MIN_SAFE_INTEGER) {
  return (raw: string): number => {
    const v = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(v) || v < min) {
      const what = min > 1 ? `integer >= ${min}` : `${min === 1 ? 'positive ' : min === 0 ? 'non-negative ' : ''}integer`;
      throw new CommanderArgError(`Expected ${what} for ${name} but received ${JSON.stringify(raw)}`);
    }
    return v;
  };
}

export function floatArg(name: string) {
  return (raw: string): number => {
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v)) throw new CommanderArgError(`Expected number for ${name} but received ${JSON.stringify(raw)}`);
    return v;
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Reads a JSONL (or JSON array) file of objects; errors name the file and line. */
export async function readRows(file: string): Promise<{ row: Record<string, unknown>; line?: number }[]> {
  return (await readRecordEntries(file, 'input file')).map(({ value, line }) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new DataFormatError('Expected a JSON object', { file, line });
    }
    return { row: value as Record<string, unknown>, line };
  });
}

/** The string field `field` of every row; a missing or non-string field is an error naming its line. */
export function stringField(rows: { row: Record<string, unknown>; line?: number }[], field: string, file: string): string[] {
  return rows.map(({ row, line }) => {
    const v = row[field];
    if (typeof v !== 'string') throw new DataFormatError(`Expected a string field "${field}"`, { file, line });
    return v;
  });
}

/** Seconds a command may take to stop after the first Ctrl-C / SIGTERM before the process exits anyway. */
export const STOP_GRACE_SECONDS = 20;

/**
 * An AbortSignal that fires on Ctrl-C (SIGINT) or SIGTERM, so long commands stop cleanly (training writes a
 * checkpoint first). A second signal, or a job that has not stopped after STOP_GRACE_SECONDS (e.g. a native
 * call that never reaches a cancellation point), exits at once with 130: a stop request is never ignored.
 */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\nstopping… (press Ctrl-C again to force)\n');
    controller.abort();
    setTimeout(() => {
      process.stderr.write(`w2s: did not stop within ${STOP_GRACE_SECONDS} s of the stop request; exiting\n`);
      process.exit(130);
    }, STOP_GRACE_SECONDS * 1000).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return controller.signal;
}
