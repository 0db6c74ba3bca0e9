// The service graph as an SVG picture. ``layout`` is pure and deterministic (the same graph
// always gives the same picture): layers left to right by call depth, callers from outside the
// mesh on the left. ``drawGraph`` updates the SVG in place, keyed by node and edge.

import { s, setAttrs, setChildren, syncKeyed } from "./dom.js";
import { errorLevel, health, ms, nodeLabel, percent, rps } from "./format.js";

export const NODE_W = 156;
export const NODE_H = 46;
const COL_W = 370; // room between two layers for an edge's label
const ROW_H = 92;
const MARGIN = 24;
const LOOP = 40; // room above a node for a self-call
const DIP = 56; // how far below the nodes a call back to an earlier layer curves

const byId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const rank = (node) => (node.kind === "external" ? 0 : 1);

/**
 * Where every node and edge goes. Returns ``{width, height, nodes: [{...node, layer, row, x,
 * y}], edges: [{...edge, kind: "forward"|"back"|"self", path, labelX, labelY}]}``.
 */
export function layout(graph) {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  for (const e of graph.edges) {
    for (const id of [e.source, e.destination]) {
      if (!nodes.has(id)) nodes.set(id, { id, kind: "unregistered", instances: 0, healthy: 0 });
    }
  }
  const order = [...nodes.values()].sort((a, b) => rank(a) - rank(b) || byId(a.id, b.id));
  const ids = order.map((n) => n.id);
  const out = new Map(ids.map((id) => [id, []]));
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const e of graph.edges) {
    if (e.source === e.destination) continue;
    out.get(e.source).push(e.destination);
    indegree.set(e.destination, indegree.get(e.destination) + 1);
  }
  for (const targets of out.values()) targets.sort(byId);

  // 1. Break cycles: depth-first from the roots (then from whatever is left), in a fixed order;
  //    an edge to a node still on the stack goes back and is left out of the layering.
  const back = new Set();
  const state = new Map(); // 1: on the stack, 2: done
  const visit = (start) => {
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const targets = out.get(top[0]);
      if (top[1] === targets.length) {
        state.set(top[0], 2);
        stack.pop();
        continue;
      }
      const next = targets[top[1]++];
      if (state.get(next) === 1) back.add(`${top[0]}\u0000${next}`);
      else if (!state.has(next)) {
        state.set(next, 1);
        stack.push([next, 0]);
      }
    }
  };
  for (const id of ids) if (indegree.get(id) === 0 && !state.has(id)) visit(id);
  for (const id of ids) if (!state.has(id)) visit(id);

  // 2. Layer = the longest chain of calls leading to the node (callers on the left).
  const layer = new Map(ids.map((id) => [id, 0]));
  const remaining = new Map(ids.map((id) => [id, 0]));
  for (const [src, targets] of out) {
    for (const dst of targets) if (!back.has(`${src}\u0000${dst}`)) remaining.set(dst, remaining.get(dst) + 1);
  }
  const ready = ids.filter((id) => remaining.get(id) === 0);
  while (ready.length) {
    const id = ready.shift();
    for (const dst of out.get(id)) {
      if (back.has(`${id}\u0000${dst}`)) continue;
      layer.set(dst, Math.max(layer.get(dst), layer.get(id) + 1));
      remaining.set(dst, remaining.get(dst) - 1);
      if (remaining.get(dst) === 0) ready.push(dst);
    }
  }

  // 3. Order each layer: by id first, then by where its callers sit (fewer crossings).
  const layers = [];
  for (const id of ids) (layers[layer.get(id)] ??= []).push(id);
  for (let i = 0; i < layers.length; i++) layers[i] ??= [];
  const pos = new Map(); // row, centred on the layer's middle (layers are centred vertically)
  layers.forEach((ids_, i) => {
    const middle = (ids_.length - 1) / 2;
    if (i > 0) {
      const preds = new Map(ids_.map((id) => [id, []]));
      for (const [src, targets] of out) {
        for (const dst of targets) if (preds.has(dst) && layer.get(src) < i) preds.get(dst).push(pos.get(src));
      }
      const centre = (id, at) => {
        const p = preds.get(id);
        return p.length ? p.reduce((a, b) => a + b, 0) / p.length : at - middle;
      };
      const keyed = ids_.map((id, at) => [centre(id, at), id]);
      keyed.sort((a, b) => a[0] - b[0] || rank(nodes.get(a[1])) - rank(nodes.get(b[1])) || byId(a[1], b[1]));
      layers[i] = keyed.map((k) => k[1]);
    }
    layers[i].forEach((id, r) => pos.set(id, r - middle));
  });

  const selfLoops = graph.edges.some((e) => e.source === e.destination);
  const backCalls = graph.edges.some((e) => e.source !== e.destination
    && layer.get(e.destination) <= layer.get(e.source));
  const rows = Math.max(1, ...layers.map((l) => l.length));
  const top = MARGIN + (selfLoops ? LOOP : 0);
  const placed = new Map();
  for (const [i, ids_] of layers.entries()) {
    const offset = ((rows - ids_.length) * ROW_H) / 2;
    ids_.forEach((id, r) => {
      placed.set(id, { ...nodes.get(id), layer: i, row: r, x: MARGIN + i * COL_W, y: top + offset + r * ROW_H });
    });
  }

  const edges = graph.edges.map((e) => ({ ...e, ...route(placed.get(e.source), placed.get(e.destination)) }));
  return {
    width: Math.max(2 * MARGIN + (layers.length - 1) * COL_W + NODE_W, 320),
    height: top + rows * ROW_H - (ROW_H - NODE_H) + MARGIN + (backCalls ? DIP : 0),
    nodes: ids.map((id) => placed.get(id)),
    edges,
  };
}

/** The curve of one call, and where its label goes. */
function route(a, b) {
  if (a.id === b.id) {
    const x0 = a.x + NODE_W * 0.62;
    const x1 = a.x + NODE_W * 0.88;
    return {
      kind: "self",
      path: `M${x0},${a.y} C${x0},${a.y - LOOP} ${x1},${a.y - LOOP} ${x1},${a.y}`,
      labelX: (x0 + x1) / 2,
      labelY: a.y - LOOP + 4,
    };
  }
  if (b.layer > a.layer) {
    const x0 = a.x + NODE_W;
    const y0 = a.y + NODE_H / 2;
    const x3 = b.x;
    const y3 = b.y + NODE_H / 2;
    const mx = (x0 + x3) / 2;
    return {
      kind: "forward",
      path: `M${x0},${y0} C${mx},${y0} ${mx},${y3} ${x3},${y3}`,
      labelX: mx,
      labelY: (y0 + y3) / 2 - 6,
    };
  }
  // A call to the same or an earlier layer: from the bottom of one to the bottom of the other.
  const x0 = a.x + NODE_W / 2 + 12;
  const x3 = b.x + NODE_W / 2 - 12;
  const y0 = a.y + NODE_H;
  const y3 = b.y + NODE_H;
  const dip = Math.max(y0, y3) + DIP;
  return {
    kind: "back",
    path: `M${x0},${y0} C${x0},${dip} ${x3},${dip} ${x3},${y3}`,
    labelX: (x0 + x3) / 2,
    labelY: (y0 + y3) / 8 + (dip * 3) / 4 + 4,
  };
}

/** One line per edge label: "12.0 rps · 2.0% err · p99 15 ms". */
export function edgeLabel(e) {
  return `${rps(e.rps)} rps · ${percent(e.error_rate)} err · p99 ${ms(e.p99_ms)}`;
}

function nodeSubtitle(n) {
  if (n.kind === "external") return "outside the mesh";
  if (n.kind === "unregistered") return "not registered";
  if (!n.instances) return "no instances";
  return `${n.healthy}/${n.instances} healthy`;
}

/** Draw ``graph`` (a ``GET /v1/graph`` body) into the SVG ``svg``, updating it in place. */
export function drawGraph(svg, graph) {
  const plan = layout(graph);
  setAttrs(svg, { viewBox: `0 0 ${plan.width} ${plan.height}` });
  svg.style.maxWidth = `${plan.width}px`;
  const services = plan.nodes.filter((n) => n.kind === "service").length;
  setChildren(svg.querySelector("title"),
    `Service graph: ${services} service${services === 1 ? "" : "s"}, `
    + `${plan.edges.length} call${plan.edges.length === 1 ? "" : "s"} between them`);
  svg.querySelector("#graph-empty").style.display = plan.nodes.length ? "none" : "";

  syncKeyed(svg.querySelector("#graph-nodes"), plan.nodes, (n) => n.id,
    () => s("g", {}, s("title"), s("rect", { width: NODE_W, height: NODE_H }),
      s("text", { class: "name", x: NODE_W / 2, y: 20, "text-anchor": "middle" }),
      s("text", { class: "sub", x: NODE_W / 2, y: 36, "text-anchor": "middle" })),
    (g, n) => {
      const [title, rect, name, sub] = g.children;
      setAttrs(g, { class: `node ${health(n)}`, transform: `translate(${n.x},${n.y})`, "data-id": n.id });
      setAttrs(rect, { rx: n.kind === "external" ? NODE_H / 2 : 8 });
      setChildren(name, nodeLabel(n.id));
      setChildren(sub, nodeSubtitle(n));
      setChildren(title, `${n.id}: ${nodeSubtitle(n)}`);
    });

  syncKeyed(svg.querySelector("#graph-edges"), plan.edges, (e) => `${e.source}\u2192${e.destination}`,
    () => s("g", {}, s("title"), s("path", { fill: "none" }), s("rect", { class: "label-bg", rx: 3 }),
      s("text", { "text-anchor": "middle" })),
    (g, e) => {
      const [title, path, box, label] = g.children;
      const level = errorLevel(e.error_rate);
      setAttrs(g, { class: `edge ${e.kind} ${level}`, "data-source": e.source, "data-destination": e.destination });
      setAttrs(path, { d: e.path, "marker-end": `url(#arrow-${level})` });
      setAttrs(label, { x: e.labelX, y: e.labelY });
      setChildren(label, edgeLabel(e));
      // A backdrop the width of the text, so the label reads cleanly over the curves.
      const b = label.getBBox();
      setAttrs(box, { x: b.x - 3, y: b.y - 1, width: b.width + 6, height: b.height + 2 });
      setChildren(title, `${nodeLabel(e.source)} → ${nodeLabel(e.destination)}: ${edgeLabel(e)}`);
    });
}
