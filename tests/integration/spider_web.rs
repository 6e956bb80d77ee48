//! gala-spider's topology page (issue 15 item 7), all real: the spider fed a
//! 21-process, 4-host scenario with nginx and haproxy flows
//! (tests/data/spider/web_topology.jsonl) through its logfile source,
//! writing to littlegraph; the page in headless chromium.
//!
//! - The layout: the page writes the on-screen boxes of what it drew into
//!   `#layout-boxes` once elkjs has laid the graph out; the test reads them
//!   from the DOM (`--dump-dom`) and checks that no two process boxes and no
//!   two visible labels overlap, that every process, edge and LB flow half is
//!   drawn (both halves of a flow in one colour), that processes sit in a
//!   box of their host, and that roles go left to right. The screenshot is
//!   `target/spider-artifacts/topology-view.png`.
//! - The interaction: a small DevTools-protocol driver (node, its built-in
//!   WebSocket) clicks a process and an edge with real mouse events and
//!   reads the details panel, hovers an LB flow, zooms with the wheel, pans
//!   by dragging, and filters by host and by process.
//!
//! Needs: chromium, node >= 20.10 and littlegraph (scripts/deps.sh test
//! installs them); a missing one is a failure that names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_port, http_get, wait_for};
use crate::spider::{artifacts, chromium, find_tool, fixture, spider_config, Graph, Spider};

/// The scenario's processes and the role the page must give each.
const ROLES: [(&str, &str); 21] = [
    ("edge.curl", "client"),
    ("edge.wrk", "client"),
    ("edge.java", "client"),
    ("edge.ab", "client"),
    ("edge.siege", "client"),
    ("app.backup", "client"),
    ("app.celery", "client"),
    ("data.prometheus", "client"),
    ("lb.nginx", "lb"),
    ("lb.haproxy", "lb"),
    ("app.java", "service"),
    ("app.gunicorn", "service"),
    ("app.node", "service"),
    ("app.php-fpm", "service"),
    ("app.redis-server", "database"),
    ("data.mysqld", "database"),
    ("data.postgres", "database"),
    ("data.mongod", "database"),
    ("data.beam.smp", "database"),
    ("data.memcached", "database"),
    ("data.etcd", "database"),
];

struct Scenario {
    _dir: tempfile::TempDir,
    _graph: Graph,
    spider: Spider,
    topo: Value,
}

/// The spider (and littlegraph) with the big scenario's records applied.
fn scenario() -> Scenario {
    scenario_of("web_topology.jsonl", ROLES.len(), 25, 18)
}

/// The spider (and littlegraph) with the records of `name` applied, once
/// the topology has that many processes, edges and flow halves.
fn scenario_of(name: &str, procs: usize, n_edges: usize, halves: usize) -> Scenario {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = dir.path().join("metrics");
    std::fs::create_dir_all(&metrics).expect("metrics dir");
    std::fs::write(metrics.join("metrics.log"), fixture(name)).expect("write the records");
    let mut graph = Graph::new(&dir.path().join("graph"), free_port());
    graph.start();
    let port = free_port();
    let spider = Spider::start(
        dir.path(),
        &spider_config(&metrics.display().to_string(), graph.port, port),
        port,
    );
    let topo = wait_for(
        Duration::from_secs(20),
        "the scenario in the spider",
        || {
            let t = spider.get_json("/api/v1/topology");
            (t["processes"].as_array().map_or(0, Vec::len) == procs
                && t["edges"].as_array().map_or(0, Vec::len) == n_edges
                && t["lb_flows"].as_array().map_or(0, Vec::len) == halves)
                .then_some(t)
        },
    );
    Scenario {
        _dir: dir,
        _graph: graph,
        spider,
        topo,
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn of(v: &Value) -> Self {
        let f = |k: &str| {
            v[k].as_f64()
                .unwrap_or_else(|| panic!("box without a numeric {k}: {v}"))
        };
        Self {
            x: f("x"),
            y: f("y"),
            w: f("w"),
            h: f("h"),
        }
    }

    /// Whether the two share more than a hairline (0.5 px).
    fn overlaps(&self, o: &Self) -> bool {
        const E: f64 = 0.5;
        self.x + E < o.x + o.w
            && o.x + E < self.x + self.w
            && self.y + E < o.y + o.h
            && o.y + E < self.y + self.h
    }

    fn contains(&self, o: &Self) -> bool {
        const E: f64 = 0.5;
        o.x >= self.x - E
            && o.y >= self.y - E
            && o.x + o.w <= self.x + self.w + E
            && o.y + o.h <= self.y + self.h + E
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The page's `#layout-boxes` report, from a dumped DOM.
fn layout_boxes(dom: &str) -> Value {
    let start = dom
        .find("<pre id=\"layout-boxes\"")
        .unwrap_or_else(|| panic!("no #layout-boxes in the DOM:\n{dom}"));
    let body = &dom[start..];
    let open = body.find('>').expect("the pre's tag ends") + 1;
    let close = body.find("</pre>").expect("the pre is closed");
    let text = unescape(&body[open..close]);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("#layout-boxes is not JSON ({e}): {text}"))
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string {k} in {v}"))
}

/// Pairs of `items` (by name) whose boxes overlap.
fn overlapping(items: &[(String, Rect)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (a, ra)) in items.iter().enumerate() {
        for (b, rb) in &items[i + 1..] {
            if ra.overlaps(rb) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

#[test]
fn spider_web_lays_out_by_role_without_overlaps() {
    let s = scenario();
    let port = s.spider.port;

    // The layout library is served from the binary, and the page loads
    // nothing from elsewhere.
    for (path, min) in [
        ("/vendor/elk-api.js", 5_000),
        ("/vendor/elk-worker.min.js", 500_000),
    ] {
        let (st, body) = http_get(port, path).expect("GET the layout library");
        assert_eq!(st, 200, "GET {path}");
        assert!(
            body.len() > min && body.contains("ELK"),
            "{path} is elkjs ({} bytes)",
            body.len()
        );
    }
    let (_, index) = http_get(port, "/").expect("GET /");
    for bad in ["http://", "https://", "//cdn"] {
        assert!(
            !index.contains(&format!("src=\"{bad}")) && !index.contains(&format!("href=\"{bad}")),
            "the page loads nothing from another server:\n{index}"
        );
    }

    let art = artifacts();
    let png = art.join("topology-view.png");
    let t0 = std::time::Instant::now();
    let dom = chromium(&format!("http://127.0.0.1:{port}/"), &png);
    let took = t0.elapsed();
    std::fs::write(art.join("topology-view.html"), &dom).expect("save the DOM");
    assert!(
        dom.contains("data-layout=\"done\""),
        "the layout finished (status line):\n{dom}"
    );
    assert!(dom.contains("data-edges=\"25\""), "status line: {dom}");
    assert!(dom.contains("data-processes=\"21\""), "status line: {dom}");
    let b = layout_boxes(&dom);
    std::fs::write(art.join("topology-view-boxes.json"), b.to_string()).expect("save the boxes");
    let arr = |k: &str| {
        b[k].as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {b}"))
    };

    // Every process is drawn, once, with its role; no two boxes overlap.
    let nodes = arr("nodes");
    let want: BTreeMap<&str, &str> = ROLES.into_iter().collect();
    let drawn: BTreeMap<&str, &str> = nodes
        .iter()
        .map(|n| (str_of(n, "id"), str_of(n, "role")))
        .collect();
    assert_eq!(nodes.len(), want.len(), "one box per process: {nodes:?}");
    assert_eq!(drawn, want, "the processes and their roles");
    let node_boxes: Vec<(String, Rect)> = nodes
        .iter()
        .map(|n| (str_of(n, "id").to_owned(), Rect::of(n)))
        .collect();
    for (id, r) in &node_boxes {
        assert!(
            r.w > 20.0 && r.h > 10.0,
            "{id} is drawn at a visible size: {r:?}"
        );
    }
    assert_eq!(
        overlapping(&node_boxes),
        Vec::<(String, String)>::new(),
        "overlapping process boxes"
    );

    // Hosts are groups: each process lies inside a box of its own host.
    let hosts = arr("hosts");
    let mut host_names = BTreeSet::new();
    for n in &nodes {
        let r = Rect::of(n);
        let host = str_of(n, "host");
        assert!(
            hosts
                .iter()
                .any(|h| str_of(h, "host") == host && Rect::of(h).contains(&r)),
            "{} is inside a box of host {host}: {r:?} in {hosts:?}",
            str_of(n, "id")
        );
        host_names.insert(host);
    }
    assert_eq!(host_names, BTreeSet::from(["app", "data", "edge", "lb"]));
    let host_boxes: Vec<(String, Rect)> = hosts
        .iter()
        .map(|h| {
            (
                format!("{}/{}", str_of(h, "host"), str_of(h, "role")),
                Rect::of(h),
            )
        })
        .collect();
    assert_eq!(
        overlapping(&host_boxes),
        Vec::<(String, String)>::new(),
        "overlapping host boxes"
    );

    // Roles go left to right: every client box ends left of every LB box,
    // and so on.
    let order = ["client", "lb", "service", "database"];
    let span = |role: &str| {
        let rs: Vec<Rect> = nodes
            .iter()
            .filter(|n| str_of(n, "role") == role)
            .map(Rect::of)
            .collect();
        assert!(!rs.is_empty(), "no {role} drawn");
        (
            rs.iter().map(|r| r.x).fold(f64::INFINITY, f64::min),
            rs.iter()
                .map(|r| r.x + r.w)
                .fold(f64::NEG_INFINITY, f64::max),
        )
    };
    for w in order.windows(2) {
        let (a, b2) = (span(w[0]), span(w[1]));
        assert!(
            a.1 < b2.0,
            "{}s ({a:?}) lie left of {}s ({b2:?})",
            w[0],
            w[1]
        );
    }

    // No two visible labels overlap: process names, host names, edge labels;
    // nor does a visible edge label cover a process box.
    let labels = arr("labels");
    let label_boxes: Vec<(String, Rect)> = labels
        .iter()
        .map(|l| {
            (
                format!("{} {}", str_of(l, "kind"), str_of(l, "id")),
                Rect::of(l),
            )
        })
        .collect();
    assert_eq!(
        overlapping(&label_boxes),
        Vec::<(String, String)>::new(),
        "overlapping labels"
    );
    let edge_labels: Vec<&(String, Rect)> = label_boxes
        .iter()
        .filter(|(k, _)| k.starts_with("edge "))
        .collect();
    for (l, r) in &edge_labels {
        for (n, nr) in &node_boxes {
            assert!(!r.overlaps(nr), "the label of {l} covers {n}");
        }
    }
    // Labels may be moved to hover only where they cannot fit; most fit.
    assert!(
        edge_labels.len() >= 20,
        "{} of 25 edge labels visible (the rest on hover)",
        edge_labels.len()
    );
    assert!(
        dom.contains("links · "),
        "edge labels carry metrics:\n{dom}"
    );

    // Every edge is drawn, between the right processes.
    let edges = arr("edges");
    let want_edges: BTreeSet<(String, String)> = s.topo["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                str_of(e, "source").to_owned(),
                str_of(e, "target").to_owned(),
            )
        })
        .collect();
    let drawn_edges: BTreeSet<(String, String)> = edges
        .iter()
        .map(|e| {
            (
                str_of(e, "source").to_owned(),
                str_of(e, "target").to_owned(),
            )
        })
        .collect();
    assert_eq!(edges.len(), 25);
    assert_eq!(drawn_edges, want_edges);
    for e in &edges {
        assert!(
            e["length"].as_f64().unwrap_or(0.0) > 10.0,
            "edge drawn with a length: {e}"
        );
    }

    // Each LB flow: all its halves drawn, front and back, in one colour that
    // no other flow has.
    let mut want_flows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in s.topo["lb_flows"].as_array().expect("lb_flows") {
        want_flows
            .entry(str_of(f, "flow_id").to_owned())
            .or_default()
            .insert(str_of(f, "half").to_owned());
    }
    assert_eq!(want_flows.len(), 5, "the scenario's flows: {want_flows:?}");
    let flows = arr("flows");
    assert_eq!(flows.len(), 18, "one band per flow half: {flows:?}");
    let mut colours: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut halves: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &flows {
        assert!(
            f["length"].as_f64().unwrap_or(0.0) > 10.0,
            "flow half drawn: {f}"
        );
        colours
            .entry(str_of(f, "flow").to_owned())
            .or_default()
            .insert(str_of(f, "stroke").to_owned());
        halves
            .entry(str_of(f, "flow").to_owned())
            .or_default()
            .insert(str_of(f, "half").to_owned());
    }
    assert_eq!(halves, want_flows, "both halves of every flow are drawn");
    let mut all = BTreeSet::new();
    for (flow, c) in &colours {
        assert_eq!(c.len(), 1, "flow {flow} is drawn in one colour: {c:?}");
        assert!(
            all.insert(c.iter().next().cloned()),
            "flow {flow} has a colour of its own: {colours:?}"
        );
    }
    eprintln!(
        "topology view: {} processes, {} edges ({} labels visible), {} flows, chromium {:?}; {}",
        nodes.len(),
        edges.len(),
        edge_labels.len(),
        colours.len(),
        took,
        png.display()
    );
}

/// Headless chromium serving the DevTools protocol on a port; killed by
/// its PID on drop.
struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let exe = ["chromium", "chromium-browser"]
            .iter()
            .find_map(|b| find_tool(b))
            .unwrap_or_else(|| panic!("chromium is required for the page test: `make test` installs it (Debian package chromium)"));
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--window-size=1400,900",
            ])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut b = Self {
            child,
            port,
            _profile: profile,
        };
        wait_for(Duration::from_secs(20), "chromium's DevTools port", || {
            if let Ok(Some(st)) = b.child.try_wait() {
                panic!("chromium exited early ({st})");
            }
            // (its HTTP server keeps connections open: the driver asks it)
            std::net::TcpStream::connect(("127.0.0.1", b.port))
                .ok()
                .map(|_| ())
        });
        b
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The driver: connects to the browser's page, loads the topology page and
/// plays the steps; prints one JSON object of what it saw.
const DRIVER: &str = r#"
"use strict";
const fs = require("fs");
const [port, url, shot] = process.argv.slice(2);
if (typeof WebSocket !== "function") {
  console.error("this node has no WebSocket: node >= 20.10 (run with --experimental-websocket) or >= 22 is needed");
  process.exit(3);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  let target;
  for (let i = 0; i < 100 && !target; i++) {
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json().catch(() => []);
    target = list.find(t => t.type === "page");
    if (!target) await sleep(100);
  }
  if (!target) throw new Error("chromium shows no page target");
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
  let seq = 0;
  const pending = new Map();
  ws.onmessage = m => {
    const d = JSON.parse(m.data);
    if (d.id && pending.has(d.id)) {
      const p = pending.get(d.id);
      pending.delete(d.id);
      d.error ? p.rej(new Error(JSON.stringify(d.error))) : p.res(d.result);
    }
  };
  const send = (method, params = {}) => new Promise((res, rej) => {
    const id = ++seq;
    pending.set(id, { res, rej });
    ws.send(JSON.stringify({ id, method, params }));
  });
  const ev = async expr => {
    const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`${expr}: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  };
  const until = async (expr, what) => {
    for (let i = 0; i < 300; i++) {
      const v = await ev(expr).catch(() => null);
      if (v) return v;
      await sleep(50);
    }
    throw new Error("timed out waiting for " + what);
  };
  const mouse = async (type, x, y, extra = {}) =>
    send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1, ...extra });
  const click = async (x, y) => { await mouse("mouseMoved", x, y, { button: "none" }); await mouse("mousePressed", x, y); await mouse("mouseReleased", x, y); };
  const done = `document.getElementById("status").dataset.layout === "done"`;
  const out = {};

  await send("Page.enable");
  await send("Emulation.setDeviceMetricsOverride", { width: 1400, height: 900, deviceScaleFactor: 1, mobile: false });
  await send("Page.navigate", { url });
  await until(done, "the first layout");

  // A click on a process shows its details.
  const node = await ev(`(() => { const r = document.querySelector('g.process[data-id="app.gunicorn"] rect').getBoundingClientRect();
    return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()`);
  await click(node.x, node.y);
  out.node = await ev(`(() => { const d = document.getElementById("details"); return { kind: d.dataset.kind, id: d.dataset.id, text: d.innerText,
    selected: [...document.querySelectorAll("g.process.selected")].map(g => g.dataset.id) }; })()`);

  // A click on an edge (a point on its path) shows its metrics.
  // (the first point along it where the edge itself is what the pointer hits)
  const edge = await ev(`(() => { const p = document.querySelector('path.edge[data-source="app.backup"][data-target="data.postgres"]');
    const key = p.parentNode.dataset.key, L = p.getTotalLength();
    for (let f = 0.05; f < 1; f += 0.05) {
      const q = p.getPointAtLength(L * f).matrixTransform(p.getScreenCTM());
      const g = document.elementFromPoint(q.x, q.y)?.closest("g.edge-group");
      if (g && g.dataset.key === key) return { x: q.x, y: q.y };
    }
    return null; })()`);
  if (!edge) throw new Error("no point of the edge app.backup -> data.postgres is uncovered");
  await click(edge.x, edge.y);
  out.edge = await ev(`(() => { const d = document.getElementById("details"); return { kind: d.dataset.kind, id: d.dataset.id, text: d.innerText }; })()`);

  // Hovering a band of a flow highlights every half of that flow.
  const band = await ev(`(() => { const p = document.querySelector('path.lb-flow[data-half="back"][data-target="app.node"]');
    const L = p.getTotalLength();
    for (let f = 0.5; f < 1; f += 0.05) {
      const q = p.getPointAtLength(L * f).matrixTransform(p.getScreenCTM());
      if (document.elementFromPoint(q.x, q.y) === p) return { x: q.x, y: q.y, flow: p.dataset.flow };
    }
    return null; })()`);
  if (!band) throw new Error("no point of the flow band lb.haproxy -> app.node is uncovered");
  await mouse("mouseMoved", band.x, band.y, { button: "none" });
  out.hover = await ev(`({ flow: ${JSON.stringify(band.flow)},
    lit: [...document.querySelectorAll("path.lb-flow.hl")].map(p => p.dataset.flow + " " + p.dataset.half),
    all: [...document.querySelectorAll("path.lb-flow")].filter(p => p.dataset.flow === ${JSON.stringify(band.flow)}).length })`);
  await mouse("mouseMoved", 5, 5, { button: "none" });

  // Zoom with the wheel, then pan by dragging the background.
  const tf = `document.getElementById("viewport").getAttribute("transform")`;
  out.before = await ev(tf);
  await mouse("mouseWheel", 500, 450, { button: "none", deltaX: 0, deltaY: -400 });
  await sleep(50);
  out.zoomed = await ev(tf);
  const empty = await ev(`(() => { const r = document.getElementById("graph").getBoundingClientRect(); return { x: r.x + 6, y: r.y + r.height - 40 }; })()`);
  await mouse("mousePressed", empty.x, empty.y);
  for (let i = 1; i <= 5; i++) await mouse("mouseMoved", empty.x + 20 * i, empty.y - 10 * i);
  await mouse("mouseReleased", empty.x + 100, empty.y - 50);
  out.panned = await ev(tf);
  fs.writeFileSync(shot, Buffer.from((await send("Page.captureScreenshot", { format: "png" })).data, "base64"));

  // The host filter: only that host's processes are laid out.
  await ev(`(() => { const s = document.getElementById("filter-host"); s.value = "data"; s.dispatchEvent(new Event("change")); })()`);
  await until(`document.getElementById("status").dataset.shown === "7" && ${done}`, "the host filter");
  out.host = await ev(`[...document.querySelectorAll("g.process")].map(g => g.dataset.host + " " + g.dataset.id)`);
  out.hostBoxes = JSON.parse(await ev(`document.getElementById("layout-boxes").textContent`));

  // The process filter, typed: the matches and their neighbours.
  await ev(`(() => { const s = document.getElementById("filter-host"); s.value = ""; s.dispatchEvent(new Event("change")); })()`);
  await until(`document.getElementById("status").dataset.shown === "21" && ${done}`, "all hosts again");
  await ev(`document.getElementById("filter-text").focus()`);
  await send("Input.insertText", { text: "mysqld" });
  await until(`document.getElementById("status").dataset.shown === "4" && ${done}`, "the process filter");
  out.text = await ev(`[...document.querySelectorAll("g.process")].map(g => g.dataset.id)`);
  console.log(JSON.stringify(out));
  ws.close();
  process.exit(0);
})().catch(e => { console.error(String(e && e.stack || e)); process.exit(1); });
"#;

fn node_exe() -> std::path::PathBuf {
    find_tool("node").unwrap_or_else(|| {
        panic!("node (>= 20.10) drives the page test over the DevTools protocol: `make test` installs it (scripts/deps.sh)")
    })
}

fn drive(browser: &Browser, url: &str, dir: &Path, shot: &Path) -> Value {
    let script = dir.join("driver.js");
    std::fs::write(&script, DRIVER).expect("write the driver");
    let node = node_exe();
    let major: u32 = Command::new(&node)
        .arg("-p")
        .arg("process.versions.node.split('.')[0]")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    let mut cmd = Command::new(&node);
    if major < 22 {
        cmd.arg("--experimental-websocket");
    }
    let out = cmd
        .arg("--no-warnings")
        .arg(&script)
        .arg(browser.port.to_string())
        .arg(url)
        .arg(shot)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "the DevTools driver failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("driver output ({e}): {text}"))
}

#[test]
fn spider_web_click_hover_zoom_pan_and_filter() {
    let s = scenario();
    let browser = Browser::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = artifacts().join("topology-interaction.png");
    let _ = std::fs::remove_file(&shot);
    let out = drive(
        &browser,
        &format!("http://127.0.0.1:{}/", s.spider.port),
        dir.path(),
        &shot,
    );
    std::fs::write(
        artifacts().join("topology-interaction.json"),
        out.to_string(),
    )
    .expect("save");

    // The process click: gunicorn's details, pids and edges both ways.
    let n = &out["node"];
    assert_eq!(n["kind"], "node", "{out}");
    assert_eq!(n["id"], "app.gunicorn", "{out}");
    assert_eq!(n["selected"], serde_json::json!(["app.gunicorn"]), "{out}");
    let text = str_of(n, "text");
    for want in [
        "302",
        "service",
        "calls (2)",
        "called by (3)",
        "data.postgres",
        "lb.haproxy",
        "data.prometheus",
    ] {
        assert!(
            text.contains(want),
            "{want} in the process's details:\n{text}"
        );
    }

    // The edge click: that edge's metrics (the fixture's values).
    let e = &out["edge"];
    assert_eq!(e["kind"], "edge", "{out}");
    assert_eq!(e["id"], "app.backup -> data.postgres", "{out}");
    let t = str_of(e, "text");
    let want = s.topo["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|x| x["source"] == "app.backup" && x["target"] == "data.postgres")
        .expect("the edge in the API")
        .clone();
    for k in [
        "link_count",
        "tx_bytes",
        "rx_bytes",
        "rtt",
        "retran_packets",
    ] {
        let v = want[k].to_string();
        assert!(t.contains(&v), "{k} = {v} in the edge's details:\n{t}");
    }
    assert!(
        t.contains("5432"),
        "the server port in the edge's details:\n{t}"
    );

    // Hover: every half of that flow, and nothing else, lit.
    let h = &out["hover"];
    let flow = str_of(h, "flow");
    let lit: Vec<&str> = h["lit"]
        .as_array()
        .expect("lit")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(lit.len() as u64, h["all"].as_u64().unwrap_or(0), "{h}");
    assert!(
        lit.iter().all(|l| l.starts_with(&format!("{flow} "))),
        "{h}"
    );
    assert!(
        lit.iter().any(|l| l.ends_with(" front")) && lit.iter().any(|l| l.ends_with(" back")),
        "both halves lit: {h}"
    );

    // Zoom and pan change the view's transform.
    let scale = |v: &Value| -> f64 {
        let s = v.as_str().unwrap_or_default();
        s.split("scale(")
            .nth(1)
            .and_then(|x| x.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no scale in {s}"))
    };
    assert!(
        scale(&out["zoomed"]) > scale(&out["before"]) * 1.2,
        "the wheel zoomed in: {} -> {}",
        out["before"],
        out["zoomed"]
    );
    assert_ne!(out["panned"], out["zoomed"], "a drag pans");
    assert!(
        (scale(&out["panned"]) - scale(&out["zoomed"])).abs() < 1e-6,
        "a pan keeps the zoom"
    );

    // Host filter: the data host's seven processes only, still laid out
    // without overlaps.
    let host: Vec<&str> = out["host"]
        .as_array()
        .expect("host")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(host.len(), 7, "{host:?}");
    assert!(
        host.iter().all(|h| h.starts_with("data ")),
        "only host data: {host:?}"
    );
    let nb: Vec<(String, Rect)> = out["hostBoxes"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (str_of(n, "id").to_owned(), Rect::of(n)))
        .collect();
    assert_eq!(nb.len(), 7);
    assert_eq!(overlapping(&nb), Vec::<(String, String)>::new());

    // Process filter "mysqld": it and the three processes that call it.
    let mut text_ids: Vec<&str> = out["text"]
        .as_array()
        .expect("text")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    text_ids.sort_unstable();
    assert_eq!(
        text_ids,
        ["app.backup", "app.java", "app.php-fpm", "data.mysqld"]
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "the interaction screenshot {}",
        shot.display()
    );
}

/// The issue's case: one host whose few processes all talk to each other
/// (the old page stacked them in one column, labels over labels).
#[test]
fn spider_web_one_busy_host_without_overlaps() {
    let s = scenario_of("web_one_host.jsonl", 6, 8, 4);
    let art = artifacts();
    let dom = chromium(
        &format!("http://127.0.0.1:{}/", s.spider.port),
        &art.join("topology-one-host.png"),
    );
    assert!(
        dom.contains("data-layout=\"done\""),
        "the layout finished:\n{dom}"
    );
    let b = layout_boxes(&dom);
    let items = |k: &str, name: &dyn Fn(&Value) -> String| -> Vec<(String, Rect)> {
        b[k].as_array()
            .unwrap_or_else(|| panic!("no {k} in {b}"))
            .iter()
            .map(|v| (name(v), Rect::of(v)))
            .collect()
    };
    let nodes = items("nodes", &|v| {
        format!("{} {}", str_of(v, "id"), str_of(v, "role"))
    });
    let mut got: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "solo.curl client",
            "solo.gunicorn service",
            "solo.nginx lb",
            "solo.node service",
            "solo.postgres database",
            "solo.redis-server database"
        ]
    );
    assert_eq!(
        overlapping(&nodes),
        Vec::<(String, String)>::new(),
        "overlapping process boxes"
    );
    let labels = items("labels", &|v| {
        format!("{} {}", str_of(v, "kind"), str_of(v, "id"))
    });
    assert_eq!(
        overlapping(&labels),
        Vec::<(String, String)>::new(),
        "overlapping labels"
    );
    let edge_labels = labels
        .iter()
        .filter(|(k, _)| k.starts_with("edge "))
        .count();
    assert_eq!(edge_labels, 8, "every edge label fits: {labels:?}");
    assert_eq!(b["edges"].as_array().map_or(0, Vec::len), 8);
    let flows = b["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 4, "{flows:?}");
    let mut by_flow: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in flows {
        by_flow
            .entry(str_of(f, "flow"))
            .or_default()
            .insert(str_of(f, "stroke"));
    }
    assert_eq!(by_flow.len(), 2, "{by_flow:?}");
    assert!(
        by_flow.values().all(|c| c.len() == 1),
        "one colour per flow: {by_flow:?}"
    );
}
