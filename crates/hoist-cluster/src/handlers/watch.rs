//! Watch: newline-delimited JSON events streamed from the store's change feed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Request;
use crate::app::App;
use crate::http::{Body, ChannelBody};
use crate::machinery::Filter;
use crate::registry::ResourceKind;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Change, EventType};
use crate::tables;

const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Stream {
    kind: ResourceKind,
    namespace: Option<String>,
    filter: Filter,
    table: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Stream {
    async fn send(&self, etype: &str, object: &Value) -> bool {
        let object = if self.table && etype != "ERROR" && etype != "BOOKMARK" {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            tables::table(&self.kind, std::slice::from_ref(object), rv, false)
        } else {
            object.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind.kind, "apiVersion": self.kind.api_version(), "metadata": meta});
        self.send("BOOKMARK", &obj).await
    }

    async fn expired(&self, message: String) {
        let status = ApiError::new(410, "Expired", message).to_status();
        self.send("ERROR", &status).await;
    }

    /// Sends the event a change means for this (possibly filtered) watch; false = client gone.
    async fn change(&self, c: &Change) -> bool {
        if c.resource != self.kind.storage_key() {
            return true;
        }
        if let Some(ns) = &self.namespace
            && &c.namespace != ns
        {
            return true;
        }
        let obj = crate::versions::present(&self.kind, (*c.object).clone());
        let now = self.filter.matches(&obj);
        let before = c
            .old
            .as_ref()
            .map(|o| self.filter.matches(o))
            .unwrap_or(false);
        let etype = match (c.kind, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, false) => "DELETED",
            (EventType::Deleted, _, true) => "DELETED",
            _ => return true,
        };
        self.send(etype, &obj).await
    }
}

pub fn watch(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let filter = Filter::parse(
        &t.kind,
        req.query.get("labelSelector"),
        req.query.get("fieldSelector"),
    )?;
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let initial_events = req.query.flag("sendInitialEvents");
    if initial_events && !bookmarks {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let timeout = match req.query.get("timeoutSeconds") {
        Some(s) => Duration::from_secs(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "timeoutSeconds must be a non-negative integer, got {s:?}"
            ))
        })?),
        None => DEFAULT_TIMEOUT,
    };
    let since = match req.query.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {s:?}: expected a number"))
        })?),
    };
    let (tx, rx) = mpsc::channel(256);
    let stream = Stream {
        kind: t.kind.clone(),
        namespace: t.namespace.clone(),
        filter,
        table: req.wants_table(),
        tx,
    };
    let app = app.clone();
    tokio::spawn(async move {
        let _ =
            tokio::time::timeout(timeout, run(app, stream, since, initial_events, bookmarks)).await;
    });
    let content_type = if req.wants_table() {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(ChannelBody::boxed(rx))
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn run(app: Arc<App>, s: Stream, since: Option<u64>, initial_events: bool, bookmarks: bool) {
    let (mut live, mut last_rv) = match since.filter(|_| !initial_events) {
        Some(rv) => match app.store.subscribe(rv) {
            Ok(sub) => {
                for c in &sub.replay {
                    if !s.change(c).await {
                        return;
                    }
                }
                (
                    sub.live,
                    sub.replay.last().map(|c| c.rv).unwrap_or(rv).max(rv),
                )
            }
            Err(floor) => {
                s.expired(format!("too old resource version: {rv} ({floor})"))
                    .await;
                return;
            }
        },
        None => {
            let Ok((items, sub)) = app
                .store
                .list_and_subscribe(&s.kind.storage_key(), s.namespace.as_deref())
            else {
                return;
            };
            for obj in items {
                let obj = crate::versions::present(&s.kind, obj);
                if s.filter.matches(&obj) && !s.send("ADDED", &obj).await {
                    return;
                }
            }
            if initial_events && !s.bookmark(sub.current_rv, true).await {
                return;
            }
            (sub.live, sub.current_rv)
        }
    };
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    let mut stopping = app.stopping.subscribe();
    if *stopping.borrow_and_update() {
        return;
    }
    loop {
        tokio::select! {
            _ = stopping.changed() => return,
            msg = live.recv() => match msg {
                Ok(c) => {
                    if c.rv <= last_rv { continue; }
                    last_rv = c.rv;
                    if !s.change(&c).await { return; }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    s.expired(format!("watch fell behind at resource version {last_rv}; please relist")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick() => {
                if bookmarks && !s.bookmark(last_rv, false).await { return; }
                if s.tx.is_closed() { return; }
            }
        }
    }
}
