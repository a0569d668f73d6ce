// The data layer's own typed error: a data file (or text) without the expected shape. Argument errors use
// InvalidArgumentError from lib/errors.ts; both carry a stable `code` (W2sError).

import { W2sError } from '../errors.js';

/** A data file (or in-memory text) does not have the expected shape. `line` is 1-based when known. */
export class DataFormatError extends W2sError {
  readonly file: string | undefined;
  readonly line: number | undefined;

  constructor(message: string, where: { file?: string | undefined; line?: number | undefined } = {}) {
    const at = where.file === undefined ? (where.line === undefined ? '' : ` (line ${where.line})`)
      : where.line === undefined ? ` (${where.file})` : ` (${where.file}:${where.line})`;
    super('ERR_W2S_DATA_FORMAT', message + at);
    this.file = where.file;
    this.line = where.line;
  }
}
