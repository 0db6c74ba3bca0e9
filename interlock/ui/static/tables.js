// The dashboard's tables: services, edges, proxies, recent NACKs and applied resources. Each
// renderer takes API data and updates its table's rows in place.

import { h, setAttrs, setChildren, showEmpty, syncKeyed } from "./dom.js";
import { clock, errorLevel, health, ms, nodeLabel, percent, rps } from "./format.js";

const TYPES = ["clusters", "endpoints", "listeners", "routes", "secrets"];
const MAX_NACKS = 20;

/** Per node id: requests per second in, success ratio, highest p99 in, callers and callees. */
export function serviceStats(graph) {
  const stats = new Map();
  const of = (id) => {
    if (!stats.has(id)) {
      stats.set(id, { rps: 0, requests: 0, errors: 0, p99: null, callers: new Set(), callees: new Set() });
    }
    return stats.get(id);
  };
  for (const e of graph.edges) {
    const into = of(e.destination);
    into.rps += e.rps;
    into.requests += e.requests;
    into.errors += e.errors;
    if (e.p99_ms !== null) into.p99 = Math.max(into.p99 ?? 0, e.p99_ms);
    into.callers.add(e.source);
    of(e.source).callees.add(e.destination);
  }
  return stats;
}

function tbody(id) {
  return document.querySelector(`#${id} tbody`);
}

/** A row whose cells are updated by ``fill(cells, item)``. */
function rows(id, items, key, columns, fill) {
  syncKeyed(tbody(id), items, key,
    () => h("tr", {}, ...Array.from({ length: columns }, (_, i) => h(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}))),
    (tr, item) => fill([...tr.children], item, tr));
  showEmpty(id, items.length);
}

export function renderServices(services, instances, graph) {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  const stats = serviceStats(graph);
  const items = [...services].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  rows("services", items, (svc) => `${svc.name}.${svc.namespace}`, 7, (cells, svc, tr) => {
    const id = `${svc.name}.${svc.namespace}`;
    const list = instances.get(svc.name) || [];
    const healthy = list.filter((i) => i.healthy).length;
    const node = nodes.get(id) || { kind: "service", instances: list.length, healthy };
    const st = stats.get(id);
    setAttrs(tr, { class: health({ ...node, instances: list.length, healthy }), "data-service": svc.name });
    setChildren(cells[0], svc.name, svc.namespace === "default" ? null : h("span", { class: "ns" }, ` ${svc.namespace}`));
    setChildren(cells[1], `${svc.protocol}:${svc.port}`);
    setChildren(cells[2], `${healthy}/${list.length}`);
    setChildren(cells[3], list.length
      ? h("ul", { class: "chips" }, ...list.map((i) => h("li", { class: i.healthy ? "up" : "down", title: i.health && i.health.reason },
        i.instance_id, h("span", { class: "addr" }, ` ${i.address}:${i.port}`),
        i.healthy ? null : h("span", { class: "flag" }, " unhealthy"))))
      : "none");
    setChildren(cells[4], st ? rps(st.rps) : "–");
    setChildren(cells[5], st && st.requests ? percent(1 - st.errors / st.requests) : "–");
    setChildren(cells[6], st ? ms(st.p99) : "–");
    for (const i of [2, 4, 5, 6]) cells[i].className = "num";
  });
}

export function renderEdges(graph) {
  rows("edges", graph.edges, (e) => `${e.source}\u2192${e.destination}`, 7, (cells, e, tr) => {
    setAttrs(tr, { class: errorLevel(e.error_rate), "data-source": e.source, "data-destination": e.destination });
    setChildren(cells[0], nodeLabel(e.source));
    setChildren(cells[1], nodeLabel(e.destination));
    setChildren(cells[2], rps(e.rps));
    setChildren(cells[3], percent(e.error_rate));
    setChildren(cells[4], ms(e.p50_ms));
    setChildren(cells[5], ms(e.p99_ms));
    setChildren(cells[6], e.requests.toLocaleString("en-US"));
    for (const i of [2, 3, 4, 5, 6]) cells[i].className = "num";
  });
}

function stateCell(cell, state) {
  cell.className = `state ${state.toLowerCase().replace(" ", "-")}`;
  setChildren(cell, state);
}

export function renderProxies(proxies) {
  rows("proxies", proxies, (p) => p.node_id, 10, (cells, p) => {
    const states = new Map(p.types.map((t) => [t.type, t.state]));
    setChildren(cells[0], p.node_id);
    setChildren(cells[1], nodeLabel(`${p.service}.${p.namespace}`));
    // A refused proxy (e.g. an unsupported Envoy release) is sent nothing: say why.
    const problems = p.problems || [];
    setChildren(cells[2], problems.length ? "REFUSED" : p.variant.toUpperCase());
    cells[2].title = problems.join("; ");
    TYPES.forEach((type, i) => stateCell(cells[3 + i], states.get(type) || "NOT SENT"));
    setChildren(cells[8], p.synced_revision ?? "–");
    cells[8].className = "num";
    // Envoy says e.g. "envoy/1.40.0/Clean/RELEASE/BoringSSL": the version is what matters.
    const version = /\d+\.\d+\.\d+/.exec(p.envoy_version || "");
    setChildren(cells[9], version ? version[0] : p.envoy_version || "–");
    cells[9].title = p.envoy_version || "";
  });
}

/** Every proxy's last rejection per type, newest first (kept by the control plane per stream). */
export function renderNacks(proxies) {
  const nacks = [];
  for (const p of proxies) {
    for (const t of p.types) {
      if (t.last_nack) nacks.push({ proxy: p.node_id, type: t.type, state: t.state, ...t.last_nack });
    }
  }
  nacks.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  rows("nacks", nacks.slice(0, MAX_NACKS), (n) => `${n.proxy}/${n.type}/${n.at}`, 6, (cells, n, tr) => {
    setAttrs(tr, { class: n.state === "NACKED" ? "bad" : "resolved" });
    setChildren(cells[0], h("time", { datetime: n.at }, clock(n.at)));
    setChildren(cells[1], n.proxy);
    setChildren(cells[2], n.type);
    setChildren(cells[3], n.revision ?? "–");
    cells[3].className = "num";
    stateCell(cells[4], n.state);
    setChildren(cells[5], h("code", {}, n.message));
  });
}

/** A problem another resource causes this one: ``{field, message, severity}``. */
function problemItem(p) {
  if (typeof p === "string") return h("li", { class: "error" }, p);
  const severity = p.severity === "warning" ? "warning" : "error";
  return h("li", { class: severity }, h("strong", {}, `${severity}: `),
    p.field ? h("code", {}, p.field) : null, p.field ? " " : null, p.message || p.detail || "");
}

export function renderResources(resources) {
  const key = (r) => [r.kind, r.metadata?.namespace ?? "", r.metadata?.name ?? ""];
  const items = [...resources.items].sort((a, b) => {
    const ka = key(a).join("\u0000");
    const kb = key(b).join("\u0000");
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  rows("resources", items, (r) => key(r).join("/"), 5, (cells, r, tr) => {
    const [kind, namespace, name] = key(r);
    const problems = r.problems || [];
    const errors = problems.filter((p) => p.severity !== "warning").length;
    setAttrs(tr, { class: errors ? "bad" : problems.length ? "warn" : "ok", "data-name": name });
    setChildren(cells[0], kind);
    setChildren(cells[1], namespace || "–");
    setChildren(cells[2], name);
    setChildren(cells[3], r.metadata?.generation ?? "–");
    cells[3].className = "num";
    setChildren(cells[4], problems.length ? h("ul", { class: "problems" }, ...problems.map(problemItem)) : "none");
  });
}
