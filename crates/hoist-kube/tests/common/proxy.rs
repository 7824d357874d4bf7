//! A loopback TCP proxy in front of the API server whose connections a test can cut, to
//! check that clients reconnect (watches, log streams, port-forwards).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct CuttableProxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                list.lock().unwrap().push(task);
            }
        });
        Self {
            addr,
            conns,
            acceptor,
        }
    }

    /// Drops every open connection (both sides see a reset/EOF); returns how many.
    pub fn cut(&self) -> usize {
        let mut list = self.conns.lock().unwrap();
        let n = list.iter().filter(|t| !t.is_finished()).count();
        for t in list.drain(..) {
            t.abort();
        }
        n
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
