/**
 * Minimum-size padding policies: they hide body lengths from the host. The
 * JSON form is the Rust client's (serde, snake_case), so a state file keeps
 * a policy's history across the client's restarts.
 */

export type PaddingPolicy =
  | "none"
  | { fixed: number }
  | { largest_seen: { largest: number } }
  | { moving_average: { window: number; recent: number[] } };

export const Padding = {
  /** No padding: the host learns each body's exact length. */
  none: (): PaddingPolicy => "none",
  /** Every body padded to at least `minSize` bytes. */
  fixed: (minSize: number): PaddingPolicy => ({ fixed: minSize }),
  /** Every body padded to the largest one sent so far (the default). */
  largestSeen: (): PaddingPolicy => ({ largest_seen: { largest: 0 } }),
  /** Every body padded to the average of the last `window` bodies. */
  movingAverage: (window: number): PaddingPolicy => ({ moving_average: { window: Math.max(1, window), recent: [] } }),
};

/** Copies a policy (policies carry history and are updated in place). */
export function clonePadding(p: PaddingPolicy): PaddingPolicy {
  return JSON.parse(JSON.stringify(p)) as PaddingPolicy;
}

/** The minimum size for a body of `bodyLen` bytes, recording it in the policy's history. */
export function minSizeFor(policy: PaddingPolicy, bodyLen: number): number {
  if (policy === "none") return 0;
  if ("fixed" in policy) return policy.fixed;
  if ("largest_seen" in policy) {
    policy.largest_seen.largest = Math.max(policy.largest_seen.largest, bodyLen);
    return policy.largest_seen.largest;
  }
  const m = policy.moving_average;
  if (m.recent.length >= m.window) m.recent.splice(0, m.recent.length - m.window + 1);
  m.recent.push(bodyLen);
  return Math.floor(m.recent.reduce((a, b) => a + b, 0) / m.recent.length);
}

/** Whether `value` is a policy as JSON. */
export function isPaddingPolicy(value: unknown): value is PaddingPolicy {
  if (value === "none") return true;
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  const whole = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;
  if ("fixed" in v) return whole(v.fixed);
  if ("largest_seen" in v) return whole((v.largest_seen as { largest?: unknown } | null)?.largest);
  if ("moving_average" in v) {
    const m = v.moving_average as { window?: unknown; recent?: unknown } | null;
    return !!m && whole(m.window) && Array.isArray(m.recent) && m.recent.every(whole);
  }
  return false;
}
