// Python 3 `str` and `re` semantics that the paper's scoring code relies on, reproduced for JS strings.
// Owns only these emulations (strip, isdigit, code-point slicing, a small regex translator); no scoring logic.

/** Every code point for which Python's `str.isspace()` is true (Unicode 14, as in CPython 3.11). */
const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WHITESPACE_RE = new RegExp(`^[${PY_WHITESPACE}]+|[${PY_WHITESPACE}]+$`, 'g');

/**
 * Python's `s.strip()` (no argument: Python whitespace, which differs from `String.prototype.trim`:
 * it includes U+001C..U+001F and U+0085 and excludes U+FEFF) or `s.strip(chars)`.
 */
export function pyStrip(s: string, chars?: string): string {
  if (chars === undefined) return s.replace(PY_WHITESPACE_RE, '');
  const set = new Set(Array.from(chars));
  const cps = Array.from(s);
  let start = 0;
  let end = cps.length;
  while (start < end && set.has(cps[start]!)) start++;
  while (end > start && set.has(cps[end - 1]!)) end--;
  return cps.slice(start, end).join('');
}

/**
 * Python's `str.isdigit()`: non-empty and every code point has Numeric_Type Decimal (`\p{Nd}`) or Digit
 * (superscripts, circled digits, …; the explicit ranges below, from CPython 3.11's Unicode 14 tables).
 */
const PY_ISDIGIT_RE =
  /^[\p{Nd}\u00b2\u00b3\u00b9\u1369-\u1371\u19da\u2070\u2074-\u2079\u2080-\u2089\u2460-\u2468\u2474-\u247c\u2488-\u2490\u24ea\u24f5-\u24fd\u24ff\u2776-\u277e\u2780-\u2788\u278a-\u2792\u{10a40}-\u{10a43}\u{10e60}-\u{10e68}\u{11052}-\u{1105a}\u{1f100}-\u{1f10a}]+$/u;

export function pyIsDigit(s: string): boolean {
  return PY_ISDIGIT_RE.test(s);
}

/** Python's `s[:-n]`: drops the last n code points (not UTF-16 units). */
export function pyDropLast(s: string, n: number): string {
  const cps = Array.from(s);
  return cps.slice(0, Math.max(0, cps.length - n)).join('');
}

/**
 * Translate a Python `re` pattern (no flags) into an equivalent JS `u`-mode RegExp source, for the subset
 * used as answer keys: `.` (any code point but `\n`), `$` (end, or before a final `\n`), `\A`, `\Z`,
 * `\d \D \s \S \w \W` (Unicode, as Python's str patterns), and `{`/`}` that are literal in Python but a
 * syntax error in JS `u` mode. Everything else is passed through as is; Python-only syntax such as
 * `(?P<name>…)` or inline flags then fails to compile (callers report it as an invalid key).
 */
export function pyRegexSource(py: string): string {
  const W = '\\p{L}\\p{N}_';
  let out = '';
  let inClass = false;
  for (let i = 0; i < py.length; i++) {
    const c = py[i]!;
    if (c === '\\') {
      const n = py[i + 1];
      i++;
      if (n === undefined) throw new SyntaxError(`Expected an escaped character after the final "\\" in ${JSON.stringify(py)}`);
      if (n === 'd') out += '\\p{Nd}';
      else if (n === 'D') out += '\\P{Nd}';
      else if (n === 's') out += inClass ? PY_WHITESPACE : `[${PY_WHITESPACE}]`;
      else if (n === 'S' && !inClass) out += `[^${PY_WHITESPACE}]`;
      else if (n === 'w') out += inClass ? W : `[${W}]`;
      else if (n === 'W' && !inClass) out += `[^${W}]`;
      else if (n === 'A' && !inClass) out += '^';
      else if (n === 'Z' && !inClass) out += '$';
      else if (/[A-Za-z0-9]/.test(n)) out += '\\' + n; // \n \t \b \1 … mean the same in both
      else if (n === '-') out += inClass ? '\\-' : '-'; // u mode allows \- only inside a class
      else out += /[\^$\\.*+?()[\]{}|/]/.test(n) ? '\\' + n : n; // u mode rejects other identity escapes
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (py[i + 1] === '^') out += py[++i];
      if (py[i + 1] === ']') out += '\\' + py[++i]; // Python: a leading ] is literal
      continue;
    }
    if (c === '.') out += '[^\\n]';
    else if (c === '$') out += '(?=\\n?$)';
    else if (c === '{') {
      // Python: `{m}`, `{m,}`, `{,n}`, `{m,n}` are quantifiers, any other brace is a literal.
      const q = /^\{(\d*)(,?)(\d*)\}/.exec(py.slice(i));
      if (q && (q[1] || q[3])) {
        out += `{${q[1] || '0'}${q[2]}${q[3]}}`;
        i += q[0].length - 1;
      } else out += '\\{';
    } else if (c === '}') out += '\\}';
    else out += c;
  }
  return out;
}

/** `re.findall(pattern, s)` for a pattern with exactly one capture group: every match's group 1, in order. */
export function pyFindallGroup1(re: RegExp, s: string): string[] {
  if (!re.global) throw new TypeError('Expected a RegExp with the g flag');
  const out: string[] = [];
  for (const m of s.matchAll(re)) out.push(m[1] ?? '');
  return out;
}
