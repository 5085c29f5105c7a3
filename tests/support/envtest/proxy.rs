//! A Service in front of webhook replicas, as kube-proxy makes one: each new TCP connection
//! goes to the endpoint the proxy has now; a connection already open stays with the replica it
//! reached, also after that replica left the endpoints (what connection tracking does). TLS
//! passes through: the replicas need the same certificate (`FluxgateOptions::certs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct ServiceProxy {
    /// `https://127.0.0.1:<port>`: the URL to register the webhooks with.
    pub url: String,
    endpoint: Arc<Mutex<SocketAddr>>,
    task: JoinHandle<()>,
}

impl ServiceProxy {
    /// Starts the proxy on a free loopback port, sending new connections to `endpoint`.
    pub async fn start(endpoint: SocketAddr) -> ServiceProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let port = listener.local_addr().expect("the proxy address").port();
        let current = Arc::new(Mutex::new(endpoint));
        let routes = current.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *super::lock(&routes);
                tokio::spawn(async move {
                    // Refused: the client sees its connection closed, as with a Service
                    // whose endpoint is gone.
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        ServiceProxy {
            url: format!("https://127.0.0.1:{port}"),
            endpoint: current,
            task,
        }
    }

    /// From now on, new connections go to `endpoint` (an endpoint update reaching the node).
    pub fn route_to(&self, endpoint: SocketAddr) {
        *super::lock(&self.endpoint) = endpoint;
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
