// gala-spider's page: polls /api/v1/topology and draws it in SVG.
//
// Layout: elkjs (Eclipse ELK, the layered algorithm; vendored, served from
// /vendor/, run in a web worker so that a long layout never blocks the page). Processes are grouped by host and role: each
// (host, role) pair is a compound node in one of four partitions, left to
// right: clients, load balancers, services, databases. ELK orders the groups
// and the processes inside them to keep crossings low, routes the edges and
// places the edge labels. A host is drawn as one box per role column it has
// processes in, each headed with the host's name. Edge labels that would
// still touch a box or another label are hidden and shown on hover.
//
// Roles (see docs/spider_web.md):
//   load balancer: the LB node of an LB flow half;
//   database: a known database or broker command, or a process with incoming
//             edges and no outgoing one;
//   client: no incoming edge;
//   service: the rest.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const ROLES = ["client", "lb", "service", "database"];
const ROLE_TITLE = { client: "clients", lb: "load balancers", service: "services", database: "databases" };
const DB_COMMS = new Set(["mysqld", "mariadbd", "postgres", "postmaster", "redis-server", "mongod", "mongos",
  "beam.smp", "memcached", "etcd", "influxd", "clickhouse-server", "cassandra", "oracle", "tnslsnr",
  "kafka", "zookeeper", "elasticsearch", "opengauss", "gaussdb", "valkey-server", "keydb-server"]);
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#9a6324", "#469990", "#800000", "#808000", "#000075", "#bfef45", "#fabed4"];
const NODE_H = 28, HOST_HEAD = 22, LABEL_H = 13;

const state = {
  topo: null,          // the last snapshot
  key: "",             // what the last layout was made from
  drawn: null,         // { procs, edges, flows, roles } of the last layout
  selected: null,      // { kind: "node"|"edge", id }
  view: { k: 1, x: 0, y: 0 },
  fitted: false,
  shape: "",           // the structure the layout was made for
  laid: null,          // that layout (ELK's output)
  laidEdges: null,     // ELK edge id -> edge key
};
// The layout runs in the page (elk-worker.min.js loaded as a script, its
// in-page worker): a real web worker overflows its smaller stack on graphs
// of a few hundred processes, and a page captured once its scripts are idle
// (headless chromium's --dump-dom) would not wait for a worker. A layout is
// made again only when the graph's structure changes; new metrics repaint.
const elk = (() => {
  const InPage = typeof module === "object" && module.exports && module.exports.Worker;
  return typeof ELK === "function" && InPage ? new ELK({ workerFactory: () => new InPage() }) : null;
})();

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function html(tag, text, parent, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}

function edgeKey(e) { return e.source + "\u0000" + e.target; }
// A process's visible label: its display name less the host prefix (the
// host box says it), e.g. "python3:8080" for "web.python3:8080".
function label(p) {
  const d = p.display || p.id || p.name;
  return d.startsWith(p.host + ".") && d.length > p.host.length + 1 ? d.slice(p.host.length + 1) : d;
}

// The width of `text` in the class `cls` (fonts as in style.css), measured
// on a canvas: measuring SVG text would make the browser lay the drawing out
// again for every label.
const FONTS = { "node-label": "12px system-ui, sans-serif", "edge-label": "10px system-ui, sans-serif",
  "host-label": "bold 12px system-ui, sans-serif" };
const measureCtx = document.createElement("canvas").getContext("2d");
function measure(text, cls) {
  measureCtx.font = FONTS[cls] || FONTS["node-label"];
  return Math.ceil(measureCtx.measureText(text).width) + 2;
}

// Each process's role, from the whole graph (not the filtered view).
function roles(topo) {
  const inc = new Map(), out = new Map(), lb = new Set();
  for (const e of topo.edges) {
    out.set(e.source, (out.get(e.source) || 0) + 1);
    inc.set(e.target, (inc.get(e.target) || 0) + 1);
  }
  for (const f of topo.lb_flows) lb.add(f.half === "front" ? f.target : f.source);
  const r = new Map();
  for (const p of topo.processes) {
    const comm = p.comm || p.name;
    let role;
    if (lb.has(p.id)) role = "lb";
    else if (DB_COMMS.has(comm)) role = "database";
    else if (!inc.get(p.id)) role = "client";
    else if (!out.get(p.id)) role = "database";
    else role = "service";
    r.set(p.id, role);
  }
  return r;
}

// What the filters leave: a host keeps only its own processes; a process
// filter keeps the matching processes and their direct neighbours.
function filtered(topo) {
  const host = document.getElementById("filter-host").value;
  const text = document.getElementById("filter-text").value.trim().toLowerCase();
  let keep = new Set(topo.processes.filter(p => !host || p.host === host).map(p => p.id));
  if (text) {
    const hit = new Set(topo.processes.filter(p => keep.has(p.id) &&
      [p.id, p.display, p.name, label(p)].some(s => s && s.toLowerCase().includes(text))).map(p => p.id));
    const near = new Set(hit);
    for (const e of topo.edges) {
      if (hit.has(e.source) && keep.has(e.target)) near.add(e.target);
      if (hit.has(e.target) && keep.has(e.source)) near.add(e.source);
    }
    keep = near;
  }
  return {
    procs: topo.processes.filter(p => keep.has(p.id)),
    edges: topo.edges.filter(e => keep.has(e.source) && keep.has(e.target)),
    flows: topo.lb_flows.filter(f => keep.has(f.source) && keep.has(f.target)),
  };
}

function edgeText(e) {
  return `${e.link_count} links · ${e.rtt}µs`;
}

function elkGraph(v, role) {
  const cells = new Map();
  for (const p of v.procs) {
    const r = role.get(p.id);
    const cid = "cell\u0000" + p.host + "\u0000" + r;
    if (!cells.has(cid)) cells.set(cid, { host: p.host, role: r, procs: [] });
    cells.get(cid).procs.push(p);
  }
  const children = [...cells.entries()].map(([cid, c]) => {
    const headW = measure(c.host, "host-label") + 16;
    return {
      id: cid,
      layoutOptions: {
        "elk.partitioning.partition": String(ROLES.indexOf(c.role)),
        "elk.padding": `[top=${HOST_HEAD + 6},left=10,bottom=10,right=10]`,
        "elk.nodeSize.constraints": "MINIMUM_SIZE",
        "elk.nodeSize.minimum": `(${headW},${HOST_HEAD + NODE_H + 16})`,
      },
      children: c.procs.map(p => ({ id: p.id, width: Math.max(70, measure(label(p), "node-label") + 18), height: NODE_H })),
    };
  });
  const edges = v.edges.map((e, i) => ({
    id: "e" + i,
    sources: [e.source],
    targets: [e.target],
    labels: [{ id: "l" + i, text: edgeText(e), width: measure(edgeText(e), "edge-label") + 6, height: LABEL_H }],
  }));
  return {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.partitioning.activate": "true",
      "elk.edgeRouting": "SPLINES",
      "elk.layered.spacing.nodeNodeBetweenLayers": "46",
      "elk.layered.spacing.edgeNodeBetweenLayers": "14",
      "elk.spacing.nodeNode": "16",
      "elk.spacing.edgeNode": "12",
      "elk.spacing.edgeEdge": "8",
      "elk.spacing.edgeLabel": "3",
      "elk.edgeLabels.placement": "CENTER",
      "elk.layered.crossingMinimization.strategy": "LAYER_SWEEP",
      // (not NETWORK_SIMPLEX: it recurses past the stack on a few hundred processes)
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      "elk.padding": "[top=34,left=20,bottom=20,right=20]",
    },
    children,
    edges,
  };
}

// The SVG path of an ELK edge; `off` maps a container id to its origin.
function edgePath(le, off) {
  const o = off.get(le.container || "root") || { x: 0, y: 0 };
  let d = "";
  for (const s of le.sections || []) {
    const pts = [...(s.bendPoints || []), s.endPoint].map(p => `${(p.x + o.x).toFixed(1)},${(p.y + o.y).toFixed(1)}`);
    d += `M${(s.startPoint.x + o.x).toFixed(1)},${(s.startPoint.y + o.y).toFixed(1)} `;
    if (pts.length % 3 === 0) {
      for (let i = 0; i < pts.length; i += 3) d += `C${pts[i]} ${pts[i + 1]} ${pts[i + 2]} `;
    } else {
      d += "L" + pts.join(" L") + " ";
    }
  }
  return d.trim();
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

async function render(topo) {
  const role = roles(topo);
  const v = filtered(topo);
  const host = document.getElementById("filter-host").value;
  const key = JSON.stringify([v, host]);
  status(topo, v);
  if (key === state.key) return;
  const st = document.getElementById("status");
  const shape = JSON.stringify([host, v.procs.map(p => [p.id, p.host, label(p), role.get(p.id)]), v.edges.map(edgeKey),
    v.flows.map(f => [f.flow_id, f.half, f.source, f.target])]);
  if (shape !== state.shape || !state.laid) {
    if (!elk) throw new Error("the layout library (/vendor/elk-api.js, /vendor/elk-worker.min.js) did not load");
    st.dataset.layout = "pending";
    st.textContent += ` · laying out ${v.procs.length} processes…`;
    const t0 = performance.now();
    state.laid = await elk.layout(elkGraph(v, role));
    state.laidEdges = new Map(v.edges.map((e, i) => ["e" + i, edgeKey(e)]));
    state.shape = shape;
    st.dataset.layoutMs = Math.round(performance.now() - t0);
  }
  const laid = state.laid;
  state.key = key;
  state.drawn = { ...v, role };

  const L = {};
  for (const n of ["roles", "hosts", "flows", "edges", "procs", "labels"]) {
    L[n] = document.getElementById("layer-" + n);
    L[n].replaceChildren();
  }
  const off = new Map([["root", { x: 0, y: 0 }]]);
  const procBox = new Map(), boxes = [];
  const colX = new Map();
  for (const c of laid.children || []) {
    off.set(c.id, { x: c.x, y: c.y });
    const [, host, r] = c.id.split("\u0000");
    const cx = colX.get(r) || { min: Infinity, max: -Infinity };
    colX.set(r, { min: Math.min(cx.min, c.x), max: Math.max(cx.max, c.x + c.width) });
    const g = el("g", { class: "host", "data-host": host, "data-role": r }, L.hosts);
    el("rect", { x: c.x, y: c.y, width: c.width, height: c.height, rx: 8 }, g);
    el("text", { class: "host-label", x: c.x + 8, y: c.y + 16 }, g).textContent = host;
    boxes.push({ x: c.x, y: c.y, w: c.width, h: HOST_HEAD });
    for (const n of c.children || []) {
      procBox.set(n.id, { x: c.x + n.x, y: c.y + n.y, w: n.width, h: n.height });
    }
  }
  // Column headings.
  for (const [r, cx] of colX) {
    el("text", { class: "role-label", x: (cx.min + cx.max) / 2, y: 18, "text-anchor": "middle" }, L.roles)
      .textContent = ROLE_TITLE[r];
  }
  const byId = new Map(topo.processes.map(p => [p.id, p]));
  for (const p of v.procs) {
    const b = procBox.get(p.id);
    if (!b) continue;
    const r = role.get(p.id);
    const g = el("g", { class: "process", "data-id": p.id, "data-host": p.host, "data-role": r, tabindex: 0 }, L.procs);
    el("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 4 }, g);
    el("text", { class: "node-label", x: b.x + b.w / 2, y: b.y + b.h / 2 + 4, "text-anchor": "middle" }, g).textContent = label(p);
    el("title", {}, g).textContent = `${p.id}\n${ROLE_TITLE[r].replace(/s$/, "")} on ${p.host}\npids ${p.pids.join(", ")}`;
    g.addEventListener("click", ev => { ev.stopPropagation(); select({ kind: "node", id: p.id }); });
    boxes.push(b);
  }

  // Edges and their labels.
  const paths = new Map();
  const laidEdges = new Map((laid.edges || []).map(le => [state.laidEdges.get(le.id), le]));
  const labelCandidates = [];
  v.edges.forEach(e => {
    const le = laidEdges.get(edgeKey(e));
    if (!le) return;
    const d = edgePath(le, off);
    paths.set(edgeKey(e), d);
    const g = el("g", { class: "edge-group", "data-key": edgeKey(e) }, L.edges);
    const attrs = { class: "edge", d, "marker-end": e.kind === "dns" ? "url(#arrow-dns)" : "url(#arrow)",
      "data-source": e.source, "data-target": e.target, "data-link-count": e.link_count, "data-flows": e.flows.join(" ") };
    if (e.kind) attrs["data-kind"] = e.kind;
    el("path", attrs, g);
    el("path", { class: "edge-hit", d }, g);
    el("title", {}, g).textContent = `${label(byId.get(e.source) || { id: e.source })} → ${label(byId.get(e.target) || { id: e.target })}\n` +
      `links ${e.link_count}, tx ${human(e.tx_bytes)}, rx ${human(e.rx_bytes)}, rtt ${e.rtt} µs, ` +
      `retrans ${e.retran_packets}, lost ${e.lost_packets}, ports ${e.server_ports.join(",")}`;
    g.addEventListener("click", ev => { ev.stopPropagation(); select({ kind: "edge", id: edgeKey(e) }); });
    const ll = (le.labels || [])[0];
    if (ll) {
      // Centred where ELK put it, as wide as the text is now.
      const o = off.get(le.container || "root") || { x: 0, y: 0 };
      const w = measure(edgeText(e), "edge-label") + 6;
      labelCandidates.push({ g, e, box: { x: ll.x + o.x + ll.width / 2 - w / 2, y: ll.y + o.y, w, h: ll.height } });
    }
  });
  // Labels: the ones that would touch a box or a label already placed are
  // hidden (shown with their edge on hover).
  for (const c of labelCandidates) {
    const t = el("text", { class: "edge-label", x: c.box.x + c.box.w / 2, y: c.box.y + c.box.h - 3, "text-anchor": "middle",
      "data-source": c.e.source, "data-target": c.e.target }, L.labels);
    t.textContent = edgeText(c.e);
    if (boxes.some(b => overlaps(b, c.box))) {
      t.classList.add("on-hover");
    } else {
      boxes.push(c.box);
    }
    c.g.addEventListener("mouseenter", () => t.classList.add("hover"));
    c.g.addEventListener("mouseleave", () => t.classList.remove("hover"));
  }

  // LB flows: a coloured band over each half, one colour per flow; halves
  // that share an edge are shifted apart.
  const flowIds = [...new Set(topo.lb_flows.map(f => f.flow_id))].sort();
  const colour = new Map(flowIds.map((id, i) => [id, PALETTE[i % PALETTE.length]]));
  const perEdge = new Map();
  for (const f of v.flows) {
    const k = f.source + "\u0000" + f.target;
    const n = perEdge.get(k) || 0;
    perEdge.set(k, n + 1);
    let d = paths.get(k);
    if (!d) {
      const a = procBox.get(f.source), b = procBox.get(f.target);
      if (!a || !b) continue;
      d = `M${a.x + a.w},${a.y + a.h / 2} L${b.x},${b.y + b.h / 2}`;
    }
    const shift = (n % 2 ? 1 : -1) * Math.ceil(n / 2) * 5;
    const p = el("path", { class: "lb-flow", d, stroke: colour.get(f.flow_id), "data-flow": f.flow_id, "data-half": f.half,
      "data-source": f.source, "data-target": f.target, transform: `translate(0,${shift})` }, L.flows);
    el("title", {}, p).textContent = `${f.kind} flow ${f.flow_id} (${f.half} half): ${f.link_count} links`;
    p.addEventListener("mouseenter", () => highlight(f.flow_id, true));
    p.addEventListener("mouseleave", () => highlight(f.flow_id, false));
  }
  const flowsList = document.getElementById("flows");
  flowsList.replaceChildren();
  const shown = [...new Set(v.flows.map(f => f.flow_id))].sort();
  const name = id => label(byId.get(id) || { id, host: "" });
  for (const id of shown) {
    const halves = v.flows.filter(x => x.flow_id === id);
    const f = halves[0];
    const lb = f.half === "front" ? f.target : f.source;
    const ends = h => [...new Set(halves.filter(x => x.half === h).map(x => name(h === "front" ? x.source : x.target)))];
    const li = html("li", undefined, flowsList, "flow");
    li.dataset.flow = id;
    li.title = id;
    const sw = html("span", undefined, li, "swatch");
    sw.style.background = colour.get(id);
    li.appendChild(document.createTextNode(`${ends("front").join(", ") || "?"} → ${name(lb)} → ${ends("back").join(", ") || "?"}`));
    html("span", `${f.kind} · ${halves.reduce((n, x) => n + (x.half === "back" ? x.link_count : 0), 0)} links`, li, "flow-kind");
    li.addEventListener("mouseenter", () => highlight(id, true));
    li.addEventListener("mouseleave", () => highlight(id, false));
  }

  const tbody = document.querySelector("#edges tbody");
  tbody.replaceChildren();
  for (const e of v.edges) {
    const tr = html("tr", undefined, tbody, "edge-row");
    for (const x of [`${e.source} → ${e.target}`, e.link_count, human(e.tx_bytes), human(e.rx_bytes), e.rtt, e.retran_packets, e.lost_packets]) {
      html("td", x, tr);
    }
    tr.addEventListener("click", () => select({ kind: "edge", id: edgeKey(e) }));
  }

  const svg = document.getElementById("graph");
  svg.dataset.width = Math.ceil(laid.width);
  svg.dataset.height = Math.ceil(laid.height);
  if (!state.fitted) { fit(); state.fitted = true; } else applyView();
  if (state.selected) select(state.selected);

  report();
  st.dataset.layout = "done";
}

// The status line: counts of the whole graph and of what is shown.
function status(topo, v) {
  const st = document.getElementById("status");
  const flows = new Set(topo.lb_flows.map(f => f.flow_id)).size;
  st.textContent = `${topo.hosts.length} hosts · ${topo.processes.length} processes · ${topo.edges.length} edges · ` +
    `${flows} LB flows · ${new Date(topo.timestamp_ms).toLocaleTimeString()}` +
    (v.procs.length < topo.processes.length ? ` · showing ${v.procs.length}` : "");
  st.dataset.hosts = topo.hosts.length;
  st.dataset.processes = topo.processes.length;
  st.dataset.edges = topo.edges.length;
  st.dataset.flows = flows;
  st.dataset.shown = v.procs.length;
}

// The on-screen boxes of what is drawn, for tests and tools: JSON in
// #layout-boxes (client pixels, after zoom).
function report() {
  const box = e => { const r = e.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
  const out = { nodes: [], hosts: [], labels: [], edges: [], flows: [] };
  for (const g of document.querySelectorAll("#layer-procs g.process")) {
    out.nodes.push({ id: g.dataset.id, host: g.dataset.host, role: g.dataset.role, ...box(g.querySelector("rect")) });
    out.labels.push({ kind: "node", id: g.dataset.id, ...box(g.querySelector("text")) });
  }
  for (const g of document.querySelectorAll("#layer-hosts g.host")) {
    out.hosts.push({ host: g.dataset.host, role: g.dataset.role, ...box(g.querySelector("rect")) });
    out.labels.push({ kind: "host", id: g.dataset.host, ...box(g.querySelector("text")) });
  }
  for (const t of document.querySelectorAll("#layer-labels .edge-label:not(.on-hover)")) {
    out.labels.push({ kind: "edge", id: t.dataset.source + " -> " + t.dataset.target, ...box(t) });
  }
  for (const p of document.querySelectorAll("#layer-edges path.edge")) {
    out.edges.push({ source: p.dataset.source, target: p.dataset.target, length: Math.round(p.getTotalLength()), ...box(p) });
  }
  for (const p of document.querySelectorAll("#layer-flows path.lb-flow")) {
    out.flows.push({ flow: p.dataset.flow, half: p.dataset.half, stroke: p.getAttribute("stroke"),
      length: Math.round(p.getTotalLength()), ...box(p) });
  }
  document.getElementById("layout-boxes").textContent = JSON.stringify(out);
}

function highlight(flowId, on) {
  document.getElementById("graph").classList.toggle("focus", on);
  for (const p of document.querySelectorAll("#layer-flows path.lb-flow")) {
    if (p.dataset.flow === flowId) p.classList.toggle("hl", on);
  }
  for (const li of document.querySelectorAll("#flows li")) {
    if (li.dataset.flow === flowId) li.classList.toggle("hl", on);
  }
}

function kv(dl, k, v) {
  html("dt", k, dl);
  html("dd", v, dl);
}

// Shows a node's or an edge's metrics in the details panel.
function select(sel) {
  state.selected = sel;
  const topo = state.topo, d = state.drawn;
  const panel = document.getElementById("details");
  panel.replaceChildren();
  html("h2", "Details", panel);
  for (const x of document.querySelectorAll(".selected")) x.classList.remove("selected");
  if (!topo || !d) return;
  if (sel.kind === "node") {
    const p = topo.processes.find(x => x.id === sel.id);
    if (!p) { html("p", `${sel.id} is gone`, panel, "hint"); return; }
    panel.dataset.kind = "node";
    panel.dataset.id = p.id;
    for (const g of document.querySelectorAll("#layer-procs g.process")) if (g.dataset.id === p.id) g.classList.add("selected");
    html("h3", label(p), panel);
    const dl = html("dl", undefined, panel);
    kv(dl, "id", p.id);
    if (p.display && p.display !== p.id) kv(dl, "display name", p.display);
    kv(dl, "command", p.name);
    kv(dl, "host", p.host);
    kv(dl, "role", ROLE_TITLE[d.role.get(p.id)].replace(/s$/, ""));
    kv(dl, "pids", p.pids.join(", "));
    for (const [k, v] of Object.entries(p)) {
      if (!["id", "name", "host", "pids", "display"].includes(k) && v !== null && v !== "" && typeof v !== "object") kv(dl, k, v);
    }
    const out = topo.edges.filter(e => e.source === p.id), inc = topo.edges.filter(e => e.target === p.id);
    for (const [title, list, end] of [["calls", out, "target"], ["called by", inc, "source"]]) {
      html("h4", `${title} (${list.length})`, panel);
      const ul = html("ul", undefined, panel, "edge-list");
      for (const e of list) {
        const li = html("li", `${e[end]}: ${e.link_count} links, tx ${human(e.tx_bytes)}, rx ${human(e.rx_bytes)}, rtt ${e.rtt} µs`, ul);
        li.dataset.source = e.source;
        li.dataset.target = e.target;
        li.addEventListener("click", () => select({ kind: "edge", id: edgeKey(e) }));
      }
    }
  } else {
    const e = topo.edges.find(x => edgeKey(x) === sel.id);
    if (!e) { html("p", "this edge is gone", panel, "hint"); return; }
    panel.dataset.kind = "edge";
    panel.dataset.id = `${e.source} -> ${e.target}`;
    for (const g of document.querySelectorAll("#layer-edges g.edge-group")) if (g.dataset.key === sel.id) g.classList.add("selected");
    html("h3", `${e.source} → ${e.target}`, panel);
    const dl = html("dl", undefined, panel);
    kv(dl, "kind", e.kind || "tcp");
    kv(dl, "links", e.link_count);
    kv(dl, "tx (client → server)", `${human(e.tx_bytes)} (${e.tx_bytes} B)`);
    kv(dl, "rx (server → client)", `${human(e.rx_bytes)} (${e.rx_bytes} B)`);
    kv(dl, "rtt", `${e.rtt} µs`);
    kv(dl, "retransmitted", e.retran_packets);
    kv(dl, "lost", e.lost_packets);
    kv(dl, "server ports", e.server_ports.join(", "));
    kv(dl, "LB flows", e.flows.length ? e.flows.join("\n") : "none");
  }
}

// Zoom and pan: the wheel zooms around the pointer, a drag pans.
function applyView() {
  const { k, x, y } = state.view;
  document.getElementById("viewport").setAttribute("transform", `translate(${x.toFixed(1)},${y.toFixed(1)}) scale(${k.toFixed(4)})`);
}

function fit() {
  const svg = document.getElementById("graph");
  const w = Number(svg.dataset.width || 1), h = Number(svg.dataset.height || 1);
  const r = svg.getBoundingClientRect();
  const k = Math.max(0.2, Math.min(1.5, r.width / w, r.height / h));
  state.view = { k, x: (r.width - w * k) / 2, y: Math.max(0, (r.height - h * k) / 2) };
  applyView();
}

function zoomAt(factor, cx, cy) {
  const v = state.view;
  const k = Math.max(0.1, Math.min(8, v.k * factor));
  state.view = { k, x: cx - (cx - v.x) * (k / v.k), y: cy - (cy - v.y) * (k / v.k) };
  applyView();
}

function setupInteraction() {
  const svg = document.getElementById("graph");
  svg.addEventListener("wheel", ev => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", ev => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, vx: state.view.x, vy: state.view.y, moved: false };
  });
  window.addEventListener("pointermove", ev => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved) {
      svg.classList.add("panning");
      state.view.x = drag.vx + dx;
      state.view.y = drag.vy + dy;
      applyView();
    }
  });
  window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("panning"); });
  const centre = () => { const r = svg.getBoundingClientRect(); return [r.width / 2, r.height / 2]; };
  document.getElementById("zoom-in").addEventListener("click", () => zoomAt(1.25, ...centre()));
  document.getElementById("zoom-out").addEventListener("click", () => zoomAt(0.8, ...centre()));
  document.getElementById("zoom-fit").addEventListener("click", fit);
  const refilter = () => { state.fitted = false; if (state.topo) draw(); };
  document.getElementById("filter-host").addEventListener("change", refilter);
  document.getElementById("filter-text").addEventListener("input", refilter);
  const legend = document.getElementById("legend");
  for (const r of ROLES) {
    const s = html("span", ROLE_TITLE[r], legend, "role-key");
    s.dataset.role = r;
  }
}

function hostOptions(topo) {
  const sel = document.getElementById("filter-host");
  const have = [...sel.options].map(o => o.value).slice(1);
  if (JSON.stringify(have) === JSON.stringify(topo.hosts)) return;
  const cur = sel.value;
  sel.replaceChildren();
  const all = html("option", "all hosts", sel);
  all.value = "";
  for (const h of topo.hosts) html("option", h, sel).value = h;
  sel.value = topo.hosts.includes(cur) ? cur : "";
}

// One layout at a time: a snapshot or a filter change that comes while one
// runs is drawn (the latest only) when it is done.
const drawing = { busy: false, again: false };
async function draw() {
  if (drawing.busy) { drawing.again = true; return; }
  drawing.busy = true;
  try {
    do {
      drawing.again = false;
      await render(state.topo);
    } while (drawing.again);
  } catch (e) {
    const st = document.getElementById("status");
    st.textContent = `cannot draw the topology: ${e.message}`;
    st.dataset.layout = "error";
    state.key = "";
    state.shape = "";
  } finally {
    drawing.busy = false;
  }
}

async function poll() {
  try {
    const r = await fetch("/api/v1/topology", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const topo = await r.json();
    state.topo = topo;
    hostOptions(topo);
    await draw();
  } catch (e) {
    document.getElementById("status").textContent = `cannot load the topology: ${e.message}`;
  }
  setTimeout(poll, 2000);
}

setupInteraction();
poll();
