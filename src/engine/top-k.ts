/** The k smallest distances seen, as a bounded max-heap. */
export class TopK<T> {
  readonly #k: number;
  readonly #d: number[] = [];
  readonly #items: T[] = [];

  constructor(k: number) {
    this.#k = k;
  }

  /** Distance a candidate must beat to enter; Infinity until full. */
  get worst(): number {
    return this.#d.length < this.#k ? Infinity : this.#d[0]!;
  }

  get size(): number {
    return this.#d.length;
  }

  push(distance: number, item: T): void {
    const d = this.#d;
    const it = this.#items;
    if (d.length < this.#k) {
      d.push(distance);
      it.push(item);
      this.#up(d.length - 1);
    } else if (distance < d[0]!) {
      d[0] = distance;
      it[0] = item;
      this.#down(0);
    }
  }

  /** Drop the items `pred` selects (rebuilds the heap). */
  removeWhere(pred: (item: T) => boolean): void {
    const kept: [number, T][] = [];
    for (let i = 0; i < this.#d.length; i++) if (!pred(this.#items[i]!)) kept.push([this.#d[i]!, this.#items[i]!]);
    this.#d.length = 0;
    this.#items.length = 0;
    for (const [dist, item] of kept) this.push(dist, item);
  }

  /** Contents, nearest first. */
  sorted(): { distance: number; item: T }[] {
    return this.#d.map((distance, i) => ({ distance, item: this.#items[i]! })).sort((a, b) => a.distance - b.distance);
  }

  #swap(a: number, b: number): void {
    const d = this.#d;
    const it = this.#items;
    [d[a], d[b]] = [d[b]!, d[a]!];
    [it[a], it[b]] = [it[b]!, it[a]!];
  }

  #up(i: number): void {
    const d = this.#d;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (d[p]! >= d[i]!) break;
      this.#swap(p, i);
      i = p;
    }
  }

  #down(i: number): void {
    const d = this.#d;
    const n = d.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && d[l]! > d[m]!) m = l;
      if (r < n && d[r]! > d[m]!) m = r;
      if (m === i) return;
      this.#swap(m, i);
      i = m;
    }
  }
}
