//! Durable object storage in SQLite (WAL, synchronous=NORMAL) with one global,
//! strictly increasing resourceVersion that is persisted and never reused.
//!
//! Every write goes through [`Store::write`], which runs read-modify-write under one
//! lock, allocates the next resourceVersion, commits, and then publishes the change to
//! the watch hub while still holding the lock, so watchers see changes in RV order.
//!
//! Every object is also kept parsed in memory: reads never touch SQLite or parse JSON,
//! and hold the lock only to clone `Arc`s ([`Store::list_shared`]) or values. Controllers
//! that list every pod once per owner (150 ReplicaSets × 150 pods per pass) made parsing,
//! under the one lock, the cluster's main cost at scale.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// The object after the change (for deletions: last state with the deletion's RV);
    /// the same allocation the store keeps.
    pub object: Arc<Value>,
    /// The object before the change, for filtered watches.
    pub old: Option<Arc<Value>>,
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

/// Parsed objects by resource, then namespace, then name (so iteration is SQLite's
/// `ORDER BY namespace, name`).
type Objects = HashMap<String, BTreeMap<String, BTreeMap<String, Arc<Value>>>>;

struct Inner {
    conn: Connection,
    objects: Objects,
    /// The resourceVersion of the last change to each resource.
    changed: HashMap<String, u64>,
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
        let objects = load_objects(&conn).map_err(open_err)?;
        let (tx, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Mutex::new(Inner {
                conn,
                objects,
                changed: HashMap::new(),
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

    /// The resourceVersion of the last change to `resource` since the store was opened
    /// (0: none). Pollers compare it to skip work when their resources did not change.
    pub fn resource_rv(&self, resource: &str) -> u64 {
        self.lock().changed.get(resource).copied().unwrap_or(0)
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> ApiResult<Option<Value>> {
        let inner = self.lock();
        Ok(lookup(&inner.objects, resource, namespace, name).map(|v| (**v).clone()))
    }

    /// All objects of a resource (optionally in one namespace) and the RV of that snapshot.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> ApiResult<(Vec<Value>, u64)> {
        let (items, rv) = self.list_shared(resource, namespace);
        Ok((items.iter().map(|v| (**v).clone()).collect(), rv))
    }

    /// [`Store::list`] without copying the objects: for loops that read many objects
    /// often (controllers, the service proxy) and change few.
    pub fn list_shared(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        (list_in(&inner.objects, resource, namespace), inner.rv)
    }

    /// (resource, name) of every object stored in a namespace.
    pub fn keys_in_namespace(&self, namespace: &str) -> ApiResult<Vec<(String, String)>> {
        let inner = self.lock();
        Ok(inner
            .objects
            .iter()
            .flat_map(|(res, namespaces)| {
                namespaces
                    .get(namespace)
                    .into_iter()
                    .flat_map(move |names| names.keys().map(move |n| (res.clone(), n.clone())))
            })
            .collect())
    }

    /// Every stored object, for the garbage collector: (resource, namespace, object).
    pub fn all_objects(&self) -> ApiResult<Vec<(String, String, Arc<Value>)>> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (res, namespaces) in &inner.objects {
            for (ns, names) in namespaces {
                for v in names.values() {
                    out.push((res.clone(), ns.clone(), v.clone()));
                }
            }
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
        // Shared, not copied: it becomes the change's `old`.
        let current = lookup(&inner.objects, resource, namespace, name).cloned();
        let decision = f(current.as_deref())?;
        let (kind, mut object) = match decision {
            Write::Unchanged(v) => return Ok(Written::Unchanged(v)),
            Write::Put(mut new) => {
                if let Some(cur) = &current {
                    // Compare ignoring the RV the caller may have left in place.
                    new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                    if new == **cur {
                        return Ok(Written::Unchanged(new));
                    }
                    (EventType::Modified, new)
                } else {
                    (EventType::Added, new)
                }
            }
            Write::Delete => match &current {
                Some(cur) => (EventType::Deleted, (**cur).clone()),
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
        inner.changed.insert(resource.to_string(), rv);
        // One allocation for the store, the change and its watchers.
        let object = Arc::new(object);
        let namespaces = inner.objects.entry(resource.to_string()).or_default();
        match kind {
            EventType::Deleted => {
                if let Some(names) = namespaces.get_mut(namespace) {
                    names.remove(name);
                    if names.is_empty() {
                        namespaces.remove(namespace);
                    }
                }
            }
            _ => {
                namespaces
                    .entry(namespace.to_string())
                    .or_default()
                    .insert(name.to_string(), object.clone());
            }
        }
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
        let object = (*object).clone();
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
        let items = list_in(&inner.objects, resource, namespace)
            .iter()
            .map(|v| (**v).clone())
            .collect();
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

fn lookup<'a>(
    objects: &'a Objects,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Option<&'a Arc<Value>> {
    objects.get(resource)?.get(namespace)?.get(name)
}

fn list_in(objects: &Objects, resource: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
    let Some(namespaces) = objects.get(resource) else {
        return Vec::new();
    };
    match namespace {
        Some(ns) => namespaces
            .get(ns)
            .map(|names| names.values().cloned().collect())
            .unwrap_or_default(),
        None => namespaces
            .values()
            .flat_map(|names| names.values().cloned())
            .collect(),
    }
}

/// Every object in the database, parsed once at open. A row that does not parse (written
/// by a broken older version) is skipped with a warning, as listing always did.
fn load_objects(conn: &Connection) -> rusqlite::Result<Objects> {
    let mut objects = Objects::new();
    let mut stmt = conn.prepare("SELECT resource, namespace, name, data FROM objects")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (res, ns, name, data): (String, String, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        match serde_json::from_str(&data) {
            Ok(v) => {
                objects
                    .entry(res)
                    .or_default()
                    .entry(ns)
                    .or_default()
                    .insert(name, Arc::new(v));
            }
            Err(e) => {
                tracing::warn!(resource = %res, namespace = %ns, name = %name, error = %e, "skipping a stored object that does not parse");
            }
        }
    }
    Ok(objects)
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

    #[test]
    fn memory_and_database_agree_across_writes_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        let put = |ns: &str, name: &str, v: i64| {
            store
                .write("/configmaps", ns, name, |_| {
                    Ok(Write::Put(
                        json!({"metadata": {"name": name, "namespace": ns}, "v": v}),
                    ))
                })
                .unwrap();
        };
        put("b", "x", 1);
        put("a", "z", 2);
        put("a", "y", 3);
        put("a", "y", 4);
        store
            .write("/configmaps", "b", "x", |_| Ok(Write::Delete))
            .unwrap();
        put("c", "w", 5);
        let names = |items: &[Arc<Value>]| -> Vec<String> {
            items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}={}",
                        o["metadata"]["namespace"].as_str().unwrap(),
                        o["metadata"]["name"].as_str().unwrap(),
                        o["v"]
                    )
                })
                .collect()
        };
        let want_all = ["a/y=4", "a/z=2", "c/w=5"];
        // Namespace then name order, as `ORDER BY namespace, name` gave.
        assert_eq!(names(&store.list_shared("/configmaps", None).0), want_all);
        assert_eq!(
            names(&store.list_shared("/configmaps", Some("a")).0),
            ["a/y=4", "a/z=2"]
        );
        assert!(store.list_shared("/configmaps", Some("b")).0.is_empty());
        assert!(store.get("/configmaps", "b", "x").unwrap().is_none());
        assert_eq!(store.keys_in_namespace("a").unwrap().len(), 2);
        // A reopened store loads the same objects from the database.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(names(&store.list_shared("/configmaps", None).0), want_all);
        assert_eq!(store.get("/configmaps", "a", "y").unwrap().unwrap()["v"], 4);
        let (owned, rv) = store.list("/configmaps", Some("c")).unwrap();
        assert_eq!((owned.len(), rv), (1, 6));
        assert_eq!(store.all_objects().unwrap().len(), 3);
        // Per-resource change versions: only writes to that resource move it.
        assert_eq!(
            store.resource_rv("/configmaps"),
            0,
            "nothing written since reopen"
        );
        store
            .write("/secrets", "a", "s", |_| {
                Ok(Write::Put(json!({"metadata": {"name": "s"}})))
            })
            .unwrap();
        assert_eq!(store.resource_rv("/secrets"), 7);
        assert_eq!(store.resource_rv("/configmaps"), 0);
        store
            .write("/configmaps", "a", "y", |c| {
                Ok(Write::Put(c.unwrap().clone()))
            })
            .unwrap();
        assert_eq!(
            store.resource_rv("/configmaps"),
            0,
            "an unchanged write is no change"
        );
    }
}
