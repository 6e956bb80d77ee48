//! The HTTP server: the web page (its assets are embedded in the binary),
//! the JSON snapshot, the legacy V0 REST API (docs/compat.md §9) and self-metrics.
//!
//! - `GET /` and its assets ([`crate::web`]): the page; it polls
//!   `/api/v1/topology` and draws hosts, processes, edges and LB flows.
//! - `GET /api/v1/topology`: the last snapshot ([`Topology`]) as JSON.
//! - `GET /gala-spider/api/v1/get_status`: `{code, msg}`.
//! - `GET /gala-spider/api/v1/get_entities?timestamp=`: the V0 entity list.
//! - `GET /metrics`: Prometheus text.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::service::Shared;
use crate::topology::Topology;

fn body(ct: &'static str, b: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, ct)], b.into()).into_response()
}

fn json_body(v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => body("application/json", s),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The router over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    let s1 = Arc::clone(&shared);
    let s2 = Arc::clone(&shared);
    let s3 = Arc::clone(&shared);
    crate::web::routes()
        .route(
            "/api/v1/topology",
            get(move || {
                let s = Arc::clone(&s1);
                async move { json_body(&*s.last()) }
            }),
        )
        .route(
            "/gala-spider/api/v1/get_status",
            get(|| async { json_body(&json!({"code": 200, "msg": "gala-spider is running"})) }),
        )
        .route(
            "/gala-spider/api/v1/get_entities",
            get(move |uri: Uri| {
                let s = Arc::clone(&s2);
                async move {
                    let ts = query_param(&uri, "timestamp");
                    match ts.as_deref().map(str::parse::<u64>) {
                        Some(Err(_)) => (
                            StatusCode::BAD_REQUEST,
                            json_body(&json!({"code": 400, "msg": "timestamp: expected ms since the epoch"})),
                        )
                            .into_response(),
                        _ => json_body(&entities(&s.last())),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let s = Arc::clone(&s3);
                async move { body("text/plain; version=0.0.4", s.stats.render()) }
            }),
        )
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn attr(key: &str, value: impl ToString, vtype: &str) -> Value {
    json!({"key": key, "value": value.to_string(), "vtype": vtype})
}

fn item(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

/// The V0 `get_entities` answer for a snapshot: hosts, processes, TCP
/// links, DNS links (type `dnsmasq_link`, id `<asker>-><dnsmasq>#dns`) and
/// LB flow halves as entities. A process's entity id is its node id
/// (`<hostname>.<process_name>`, suffixed where several services of the
/// host share the name), its `service` and `display` are attrs. A process
/// depends on (calls) the links it opens and runs on its host; a link calls
/// its server process. The snapshot is the live one: the `timestamp` asked for is only
/// checked, and the answer carries the snapshot's own.
pub fn entities(t: &Topology) -> Value {
    let mut ents: BTreeMap<String, Value> = BTreeMap::new();
    let empty = || json!({"calls": [], "runOns": []});
    for h in &t.hosts {
        ents.insert(
            h.clone(),
            json!({"entityid": h, "type": "host", "name": h,
                   "dependingitems": empty(), "dependeditems": empty(), "attrs": []}),
        );
    }
    for p in &t.processes {
        ents.insert(
            p.id.clone(),
            json!({"entityid": p.id, "type": "process", "name": p.name,
                   "dependingitems": {"calls": [], "runOns": [item("host", &p.host)]},
                   "dependeditems": empty(),
                   "attrs": [attr("pids", p.pids.iter().map(u32::to_string).collect::<Vec<_>>().join(","), "string"),
                             attr("runon", &p.host, "string"),
                             attr("display", &p.display, "string"),
                             attr("service", &p.service, "string")]}),
        );
        if let Some(h) = ents.get_mut(&p.host) {
            push(h, "dependeditems", "runOns", item("process", &p.id));
        }
    }
    let mut link = |id: String, kind: &str, source: &str, target: &str, attrs: Vec<Value>| {
        ents.insert(
            id.clone(),
            json!({"entityid": id, "type": kind, "name": id,
                   "dependingitems": {"calls": [item("process", target)], "runOns": []},
                   "dependeditems": {"calls": [item("process", source)], "runOns": []},
                   "attrs": attrs}),
        );
        if let Some(s) = ents.get_mut(source) {
            push(s, "dependingitems", "calls", item(kind, &id));
        }
        if let Some(d) = ents.get_mut(target) {
            push(d, "dependeditems", "calls", item(kind, &id));
        }
    };
    for e in t.edges.iter().filter(|e| e.kind == "dns") {
        let id = format!("{}->{}#dns", e.source, e.target);
        let attrs = vec![
            attr("link_count", e.link_count, "int"),
            attr("domains", e.domains.join(","), "string"),
        ];
        link(id, "dnsmasq_link", &e.source, &e.target, attrs);
    }
    for e in t.edges.iter().filter(|e| e.kind != "dns") {
        let id = format!("{}->{}", e.source, e.target);
        let attrs = vec![
            attr("link_count", e.link_count, "int"),
            attr("tx_bytes", e.tx_bytes, "int"),
            attr("rx_bytes", e.rx_bytes, "int"),
            attr("rtt", e.rtt, "int"),
            attr("retran_packets", e.retran_packets, "int"),
            attr("lost_packets", e.lost_packets, "int"),
            attr(
                "server_ports",
                e.server_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                "string",
            ),
            attr("flows", e.flows.join(","), "string"),
        ];
        link(id, "tcp_link", &e.source, &e.target, attrs);
    }
    for h in &t.lb_flows {
        let id = format!("{}#{}#{}->{}", h.flow_id, h.half, h.source, h.target);
        let attrs = vec![
            attr("flow_id", &h.flow_id, "string"),
            attr("half", h.half, "string"),
            attr("link_count", h.link_count, "int"),
        ];
        link(id, h.kind, &h.source, &h.target, attrs);
    }
    json!({
        "code": 200,
        "msg": "Successful",
        "timestamp": t.timestamp_ms,
        "entityids": ents.keys().collect::<Vec<_>>(),
        "entities": ents.values().collect::<Vec<_>>(),
    })
}

fn push(ent: &mut Value, side: &str, list: &str, v: Value) {
    if let Some(a) = ent[side][list].as_array_mut() {
        a.push(v);
    }
}

/// Serves `router` on `addr` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Edge, ProcessNode};

    #[test]
    fn v0_entities_shape() {
        let p = |id: &str, h: &str, n: &str| ProcessNode {
            id: id.into(),
            name: n.into(),
            host: h.into(),
            pids: vec![7],
            display: id.into(),
            service: String::new(),
        };
        let t = Topology {
            timestamp_ms: 42,
            hosts: vec!["a".into(), "b".into()],
            processes: vec![p("a.cli", "a", "cli"), p("b.srv", "b", "srv")].into(),
            edges: vec![
                Edge {
                    link_count: 2,
                    tx_bytes: 10,
                    rx_bytes: 20,
                    rtt: 5,
                    server_ports: vec![80],
                    ..Edge::tcp("a.cli", "b.srv")
                },
                Edge {
                    kind: "dns",
                    link_count: 3,
                    domains: vec!["x.example".into(), "y.example".into()],
                    ..Edge::tcp("a.cli", "b.srv")
                },
            ]
            .into(),
            ..Topology::default()
        };
        let v = entities(&t);
        assert_eq!(v["code"], 200);
        assert_eq!(v["timestamp"], 42);
        assert_eq!(
            v["entityids"],
            json!([
                "a",
                "a.cli",
                "a.cli->b.srv",
                "a.cli->b.srv#dns",
                "b",
                "b.srv"
            ])
        );
        let e = &v["entities"];
        assert_eq!(e[1]["type"], "process");
        assert_eq!(
            e[1]["dependingitems"],
            json!({"calls": [{"type": "dnsmasq_link", "id": "a.cli->b.srv#dns"}, {"type": "tcp_link", "id": "a.cli->b.srv"}], "runOns": [{"type": "host", "id": "a"}]})
        );
        assert_eq!(e[3]["type"], "dnsmasq_link");
        assert_eq!(
            e[3]["attrs"],
            json!([{"key": "link_count", "value": "3", "vtype": "int"},
                   {"key": "domains", "value": "x.example,y.example", "vtype": "string"}])
        );
        let e = &e
            .as_array()
            .expect("entities")
            .iter()
            .filter(|x| x["type"] != "dnsmasq_link")
            .cloned()
            .collect::<Vec<_>>();
        assert_eq!(e[2]["dependingitems"]["calls"][0]["id"], "b.srv");
        assert_eq!(
            e[2]["attrs"][0],
            json!({"key": "link_count", "value": "2", "vtype": "int"})
        );
        assert_eq!(
            e[4]["dependeditems"]["calls"],
            json!([{"type": "dnsmasq_link", "id": "a.cli->b.srv#dns"}, {"type": "tcp_link", "id": "a.cli->b.srv"}])
        );
        assert_eq!(
            e[1]["attrs"].as_array().expect("attrs")[2..],
            [
                json!({"key": "display", "value": "a.cli", "vtype": "string"}),
                json!({"key": "service", "value": "", "vtype": "string"})
            ]
        );
        assert_eq!(e[0]["dependeditems"]["runOns"][0]["id"], "a.cli");
    }
}
