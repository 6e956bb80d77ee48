// gala-spider's page: polls /api/v1/topology and draws it in SVG.
// Hosts are boxes holding their processes; TCP edges are arrows client ->
// server labelled with their metrics; each LB flow is a coloured band over
// its front and back halves (one colour per flow id). No dependencies.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
  "#f032e6", "#bcf60c", "#008080", "#9a6324", "#800000", "#808000", "#000075"];
const PROC_W = 170, PROC_H = 26, PAD = 14, HEAD = 26, GAP_X = 230, GAP_Y = 60;

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}

function colour(flowId) {
  let h = 0;
  for (const c of flowId) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function layout(topo) {
  const byHost = new Map();
  for (const h of topo.hosts) byHost.set(h, []);
  for (const p of topo.processes) {
    if (!byHost.has(p.host)) byHost.set(p.host, []);
    byHost.get(p.host).push(p);
  }
  const hosts = [...byHost.keys()];
  const cols = Math.max(1, Math.ceil(Math.sqrt(hosts.length)));
  const pos = new Map(), boxes = [];
  let rowY = 20, rowH = 0;
  hosts.forEach((h, i) => {
    const col = i % cols;
    if (col === 0 && i > 0) { rowY += rowH + GAP_Y; rowH = 0; }
    const procs = byHost.get(h);
    const w = PROC_W + 2 * PAD;
    const hgt = HEAD + procs.length * (PROC_H + 10) + PAD;
    const x = 20 + col * (w + GAP_X);
    boxes.push({ host: h, x, y: rowY, w, h: hgt });
    procs.forEach((p, j) => pos.set(p.id, { x: x + PAD, y: rowY + HEAD + j * (PROC_H + 10), p }));
    rowH = Math.max(rowH, hgt);
  });
  return { pos, boxes, width: 40 + cols * (PROC_W + 2 * PAD + GAP_X), height: rowY + rowH + 40 };
}

// A curve between two process boxes; `bend` separates parallel curves.
function curve(a, b, bend) {
  const ax = a.x + PROC_W / 2, ay = a.y + PROC_H / 2, bx = b.x + PROC_W / 2, by = b.y + PROC_H / 2;
  const sx = bx >= ax ? a.x + PROC_W : a.x, tx = bx >= ax ? b.x : b.x + PROC_W;
  const same = Math.abs(ax - bx) < 1;
  const x1 = same ? a.x + PROC_W : sx, x2 = same ? b.x + PROC_W : tx;
  const mx = (x1 + x2) / 2 + (same ? 60 + bend : 0), my = (ay + by) / 2 + bend;
  return { d: `M${x1},${ay} Q${mx},${my} ${x2},${by}`, lx: (x1 + 2 * mx + x2) / 4, ly: (ay + 2 * my + by) / 4 };
}

function render(topo) {
  const svg = document.getElementById("graph");
  const L = {
    hosts: document.getElementById("layer-hosts"), edges: document.getElementById("layer-edges"),
    flows: document.getElementById("layer-flows"), procs: document.getElementById("layer-procs"),
  };
  for (const l of Object.values(L)) l.replaceChildren();
  const { pos, boxes, width, height } = layout(topo);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.height = height + "px";
  for (const b of boxes) {
    const g = el("g", { class: "host", "data-host": b.host }, L.hosts);
    el("rect", { x: b.x, y: b.y, width: b.w, height: b.h }, g);
    el("text", { x: b.x + 8, y: b.y + 17 }, g).textContent = b.host;
  }
  const lbNodes = new Set(topo.lb_flows.map(f => f.half === "front" ? f.target : f.source));
  for (const [id, q] of pos) {
    const g = el("g", { class: "process" + (lbNodes.has(id) ? " lb" : ""), "data-id": id, "data-host": q.p.host }, L.procs);
    el("rect", { x: q.x, y: q.y, width: PROC_W, height: PROC_H }, g);
    el("text", { x: q.x + 6, y: q.y + 17 }, g).textContent = q.p.name;
    el("title", {}, g).textContent = `${id}\npids ${q.p.pids.join(", ")}`;
  }
  const tbody = document.querySelector("#edges tbody");
  tbody.replaceChildren();
  for (const e of topo.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const c = curve(a, b, 0);
    const g = el("g", { class: "edge-group" }, L.edges);
    el("path", { class: "edge", d: c.d, "marker-end": "url(#arrow)", "data-source": e.source, "data-target": e.target,
      "data-link-count": e.link_count, "data-flows": e.flows.join(" ") }, g);
    el("text", { class: "edge-label", x: c.lx, y: c.ly - 4, "text-anchor": "middle" }, g).textContent =
      `${e.link_count} links · ${human(e.tx_bytes)}↑ ${human(e.rx_bytes)}↓ · ${e.rtt}µs`;
    el("title", {}, g).textContent = `${e.source} → ${e.target}\nlinks ${e.link_count}, tx ${e.tx_bytes} B, rx ${e.rx_bytes} B, ` +
      `rtt ${e.rtt} µs, retrans ${e.retran_packets}, lost ${e.lost_packets}, ports ${e.server_ports.join(",")}`;
    const tr = document.createElement("tr");
    tr.className = "edge-row";
    for (const v of [`${e.source} → ${e.target}`, e.link_count, human(e.tx_bytes), human(e.rx_bytes), e.rtt, e.retran_packets, e.lost_packets]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  const flowsList = document.getElementById("flows");
  flowsList.replaceChildren();
  const seen = new Map();
  for (const f of topo.lb_flows) {
    const a = pos.get(f.source), b = pos.get(f.target);
    if (!a || !b) continue;
    const col = colour(f.flow_id);
    if (!seen.has(f.flow_id)) seen.set(f.flow_id, { col, kind: f.kind, n: seen.size });
    const c = curve(a, b, 8 + 6 * seen.get(f.flow_id).n);
    el("path", { class: "lb-flow", d: c.d, stroke: col, "data-flow": f.flow_id, "data-half": f.half,
      "data-source": f.source, "data-target": f.target }, L.flows);
  }
  for (const [id, v] of seen) {
    const li = document.createElement("li");
    li.className = "flow";
    li.dataset.flow = id;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = v.col;
    li.appendChild(sw);
    li.appendChild(document.createTextNode(`${v.kind}: ${id}`));
    flowsList.appendChild(li);
  }
  const st = document.getElementById("status");
  st.textContent = `${topo.hosts.length} hosts · ${topo.processes.length} processes · ${topo.edges.length} edges · ` +
    `${seen.size} LB flows · ${new Date(topo.timestamp_ms).toLocaleTimeString()}`;
  st.dataset.hosts = topo.hosts.length;
  st.dataset.processes = topo.processes.length;
  st.dataset.edges = topo.edges.length;
  st.dataset.flows = seen.size;
}

async function poll() {
  try {
    const r = await fetch("/api/v1/topology", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
  } catch (e) {
    document.getElementById("status").textContent = `cannot load the topology: ${e.message}`;
  }
  setTimeout(poll, 2000);
}
poll();
