// How numbers and names are shown: the same rules as `interlock top`.

/** Requests per second: one decimal, two below 10, "0" when idle. */
export function rps(value) {
  if (!value) return "0";
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

/** A ratio in [0, 1] as a percentage ("–" when there is nothing to divide). */
export function percent(ratio, digits = 1) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
  return `${(ratio * 100).toFixed(digits)}%`;
}

/** Milliseconds ("–" when unknown). */
export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : `${Math.round(value)} ms`;
}

/** A window in seconds, e.g. "60 s". */
export function seconds(value) {
  return `${Number(value).toLocaleString("en-US", { maximumFractionDigits: 1 })} s`;
}

/** An ISO timestamp as local time of day (HH:MM:SS), or "–". */
export function clock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString("en-GB", { hour12: false });
}

/** A node id ("name.namespace") as shown: the bare name in the default namespace. */
export function nodeLabel(id) {
  return id.endsWith(".default") ? id.slice(0, -".default".length) : id;
}

/** Health of a service node: "healthy", "degraded", "down" or "idle" (no instances). */
export function health(node) {
  if (node.kind === "external") return "external";
  if (node.kind === "unregistered") return "unregistered";
  if (!node.instances) return "idle";
  if (node.healthy === node.instances) return "healthy";
  return node.healthy ? "degraded" : "down";
}

/** Severity of an error rate, for colour (always shown as text too). */
export function errorLevel(rate) {
  if (!rate) return "ok";
  return rate < 0.05 ? "warn" : "bad";
}
