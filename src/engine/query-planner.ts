/** How one segment is searched for one query. */
export type SegmentPlan = { kind: 'exact' } | { kind: 'hnsw'; fetch: number; maxFetch: number };

/** Below this many matching rows an exact scan costs about what a graph search does. */
export const EXACT_SCAN_MAX_ROWS = 2048;
/** Past this many candidates a graph search costs more than scanning the matches. */
export const MAX_HNSW_FETCH = 4096;

/**
 * Choose between the HNSW graph (with over-fetch sized by the filter's selectivity) and an
 * exact scan of the matching rows. `matchCount` is exact: live rows that pass the filter.
 */
export function planSegmentSearch(p: { indexed: boolean; indexSize: number; matchCount: number; k: number }): SegmentPlan {
  if (!p.indexed || p.indexSize === 0 || p.matchCount <= EXACT_SCAN_MAX_ROWS) return { kind: 'exact' };
  const selectivity = p.matchCount / p.indexSize;
  const fetch = Math.ceil((p.k / selectivity) * 1.2) + (selectivity < 1 ? 8 : 0);
  if (fetch > MAX_HNSW_FETCH / 4) return { kind: 'exact' };
  return { kind: 'hnsw', fetch: Math.max(fetch, p.k), maxFetch: MAX_HNSW_FETCH };
}

/**
 * A graph search of breadth `ef` computes on the order of 16 * ef distances; scanning the
 * matching rows computes `matchCount`. Widen the graph search only while that is cheaper.
 */
export function widenBeatsScan(ef: number, matchCount: number): boolean {
  return ef * 16 < matchCount;
}
