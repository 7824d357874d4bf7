//! Durable object storage in SQLite (WAL, synchronous=NORMAL) with one global,
//! strictly increasing resourceVersion that is persisted and never reused.
//!
//! Every write goes through [`Store::write`], which runs read-modify-write under one
//! lock, allocates the next resourceVersion, commits, and then publishes the change to
//! the watch hub while still holding the lock, so watchers see changes in RV order.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::status::{ApiError, ApiResult};

/// How many recent changes are kept for watches that resume from a resourceVersion.
const HISTORY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: String,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (for deletions: last state with the deletion's RV).
    pub object: Value,
    /// The object before the change, for filtered watches.
    pub old: Option<Value>,
}

/// What a read-modify-write closure decided.
pub enum Write {
    /// Store this object (create or replace).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave everything as it is and return this value.
    Unchanged(Value),
}

/// The outcome of [`Store::write`].
#[derive(Debug, Clone)]
pub enum Written {
    Created(Value),
    Updated(Value),
    /// A write that changed nothing (no new resourceVersion, no event).
    Unchanged(Value),
    /// The last state, stamped with the deletion's resourceVersion.
    Deleted(Value),
}

impl Written {
    pub fn into_value(self) -> Value {
        match self {
            Written::Created(v)
            | Written::Updated(v)
            | Written::Unchanged(v)
            | Written::Deleted(v) => v,
        }
    }
}

struct Inner {
    conn: Connection,
    rv: u64,
    /// The resourceVersion before the oldest change kept in `history`.
    history_floor: u64,
    history: VecDeque<Arc<Change>>,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the cluster database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
}

/// A consistent view for starting a watch: past changes to replay and a live receiver.
pub struct Subscription {
    pub replay: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
    pub current_rv: u64,
}

fn db_err(e: rusqlite::Error) -> ApiError {
    ApiError::internal(format!("storage error: {e}"))
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            // WAL + NORMAL: a commit is in the OS before the write is acknowledged, so it
            // survives the process being killed (tested with SIGKILL); only a power loss can
            // drop the last commits, an accepted trade for a dev cluster's write speed.
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS objects (
                 resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 rv INTEGER NOT NULL, data TEXT NOT NULL,
                 PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
        )
        .map_err(open_err)?;
        let rv: u64 = conn
            .query_row("SELECT v FROM meta WHERE k = 'rv'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(open_err)?
            .unwrap_or(0) as u64;
        let (tx, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                rv,
                history_floor: rv,
                history: VecDeque::new(),
            }),
            tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> ApiResult<Option<Value>> {
        let inner = self.lock();
        get_locked(&inner.conn, resource, namespace, name)
    }

    /// All objects of a resource (optionally in one namespace) and the RV of that snapshot.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> ApiResult<(Vec<Value>, u64)> {
        let inner = self.lock();
        let items = list_locked(&inner.conn, resource, namespace)?;
        Ok((items, inner.rv))
    }

    /// (resource, name) of every object stored in a namespace.
    pub fn keys_in_namespace(&self, namespace: &str) -> ApiResult<Vec<(String, String)>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT resource, name FROM objects WHERE namespace = ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![namespace], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Every stored object, for the garbage collector: (resource, namespace, object).
    pub fn all_objects(&self) -> ApiResult<Vec<(String, String, Value)>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT resource, namespace, data FROM objects")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (res, ns, data) = row.map_err(db_err)?;
            out.push((
                res,
                ns,
                serde_json::from_str(&data).map_err(|e| ApiError::internal(e.to_string()))?,
            ));
        }
        Ok(out)
    }

    /// Atomic read-modify-write of one object. `f` sees the current object (if any) and
    /// decides; a `Put` identical to the current object is reported as `Unchanged`.
    pub fn write(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(Option<&Value>) -> ApiResult<Write>,
    ) -> ApiResult<Written> {
        let mut inner = self.lock();
        let current = get_locked(&inner.conn, resource, namespace, name)?;
        let decision = f(current.as_ref())?;
        let (kind, mut object) = match decision {
            Write::Unchanged(v) => return Ok(Written::Unchanged(v)),
            Write::Put(mut new) => {
                if let Some(cur) = &current {
                    // Compare ignoring the RV the caller may have left in place.
                    new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                    if &new == cur {
                        return Ok(Written::Unchanged(new));
                    }
                    (EventType::Modified, new)
                } else {
                    (EventType::Added, new)
                }
            }
            Write::Delete => match &current {
                Some(cur) => (EventType::Deleted, cur.clone()),
                None => return Err(ApiError::not_found("", resource, name)),
            },
        };
        let rv = inner.rv + 1;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let tx = inner.conn.transaction().map_err(db_err)?;
        match kind {
            EventType::Deleted => {
                tx.execute(
                    "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
                    params![resource, namespace, name],
                )
                .map_err(db_err)?;
            }
            _ => {
                let data = serde_json::to_string(&object)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                tx.execute(
                    "INSERT OR REPLACE INTO objects (resource, namespace, name, rv, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![resource, namespace, name, rv as i64, data],
                )
                .map_err(db_err)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('rv', ?1)",
            params![rv as i64],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        inner.rv = rv;
        let change = Arc::new(Change {
            rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
            old: current,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.history_floor = old.rv;
            }
        }
        let _ = self.tx.send(change);
        Ok(match kind {
            EventType::Added => Written::Created(object),
            EventType::Modified => Written::Updated(object),
            EventType::Deleted => Written::Deleted(object),
        })
    }

    /// Changes after `since` (replayed from history) plus a live receiver, consistently.
    /// `Err(floor)` when `since` is older than the history kept (the client must relist).
    pub fn subscribe(&self, since: u64) -> Result<Subscription, u64> {
        let inner = self.lock();
        if since < inner.history_floor {
            return Err(inner.history_floor);
        }
        let replay = inner
            .history
            .iter()
            .filter(|c| c.rv > since)
            .cloned()
            .collect();
        Ok(Subscription {
            replay,
            live: self.tx.subscribe(),
            current_rv: inner.rv,
        })
    }

    /// A snapshot of a resource plus a live receiver starting right after it.
    pub fn list_and_subscribe(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> ApiResult<(Vec<Value>, Subscription)> {
        let inner = self.lock();
        let items = list_locked(&inner.conn, resource, namespace)?;
        Ok((
            items,
            Subscription {
                replay: Vec::new(),
                live: self.tx.subscribe(),
                current_rv: inner.rv,
            },
        ))
    }
}

fn get_locked(
    conn: &Connection,
    resource: &str,
    namespace: &str,
    name: &str,
) -> ApiResult<Option<Value>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT data FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
        )
        .map_err(db_err)?;
    let data: Option<String> = stmt
        .query_row(params![resource, namespace, name], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    data.map(|d| serde_json::from_str(&d).map_err(|e| ApiError::internal(e.to_string())))
        .transpose()
}

fn list_locked(
    conn: &Connection,
    resource: &str,
    namespace: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let mut out = Vec::new();
    let mut push = |row: &rusqlite::Row| -> rusqlite::Result<()> {
        let d: String = row.get(0)?;
        if let Ok(v) = serde_json::from_str(&d) {
            out.push(v);
        }
        Ok(())
    };
    match namespace {
        Some(ns) => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT data FROM objects WHERE resource = ?1 AND namespace = ?2 ORDER BY name",
                )
                .map_err(db_err)?;
            let mut rows = stmt.query(params![resource, ns]).map_err(db_err)?;
            while let Some(r) = rows.next().map_err(db_err)? {
                push(r).map_err(db_err)?;
            }
        }
        None => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT data FROM objects WHERE resource = ?1 ORDER BY namespace, name",
                )
                .map_err(db_err)?;
            let mut rows = stmt.query(params![resource]).map_err(db_err)?;
            while let Some(r) = rows.next().map_err(db_err)? {
                push(r).map_err(db_err)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rv_increases_persists_and_noop_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        let obj = json!({"metadata": {"name": "a"}, "data": {"k": "v"}});
        let w = store
            .write("/configmaps", "default", "a", |_| {
                Ok(Write::Put(obj.clone()))
            })
            .unwrap();
        assert!(matches!(w, Written::Created(_)));
        assert_eq!(store.current_rv(), 1);
        let w = store
            .write("/configmaps", "default", "a", |cur| {
                Ok(Write::Put(cur.unwrap().clone()))
            })
            .unwrap();
        assert!(matches!(w, Written::Unchanged(_)));
        assert_eq!(store.current_rv(), 1);
        store
            .write("/configmaps", "default", "a", |_| Ok(Write::Delete))
            .unwrap();
        assert_eq!(store.current_rv(), 2);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.current_rv(), 2);
        assert!(
            store.subscribe(1).is_err(),
            "history before restart must be expired"
        );
        assert!(store.subscribe(2).is_ok());
    }
}
