// Small statistics shared by the benchmarks' paired rounds.

/** The median (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}

/** How far the farthest value lands from the values' median, as a fraction of it (0.05 = ±5%). */
export function spread(xs: readonly number[]): number {
  const m = median(xs);
  return Math.max(...xs.map((x) => Math.abs(x / m - 1)));
}
