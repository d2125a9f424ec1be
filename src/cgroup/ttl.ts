/** A small map whose entries expire after `ttlMs` and which holds at most `max` of them. */
export class TtlCache<K, V> {
  private readonly map = new Map<K, { at: number; value: V }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 4096,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: K, compute: () => V): V {
    const t = this.now();
    const hit = this.map.get(key);
    if (hit && t - hit.at < this.ttlMs) return hit.value;
    const value = compute();
    this.map.delete(key);
    this.map.set(key, { at: t, value });
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
    return value;
  }
}
