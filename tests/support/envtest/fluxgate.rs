//! The real `fluxgate serve` binary in cluster mode against the envtest API server, registered
//! as that cluster's admission webhook with the webhook configurations deploy/ ships: rules,
//! namespace selectors, failure policy and timeouts as rendered by `kubectl kustomize`, only
//! the `clientConfig` pointing at `https://127.0.0.1:<port>` with the test's own CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Cluster, Env, process};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How `fluxgate serve` is started and registered.
#[derive(Debug, Clone)]
pub struct FluxgateOptions {
    /// The policy configuration (`--config`, written to a file); the built-in one when `None`.
    pub config: Option<String>,
    /// More `fluxgate serve` flags. A flag given here replaces the harness's default for it
    /// (`--log-format json`, `--audit-interval 0`, `--reload-interval-ms 200`).
    pub args: Vec<String>,
    /// More environment variables (e.g. `FLUXGATE_LOG=debug`).
    pub env: Vec<(String, String)>,
    /// Register the webhooks (a second replica of the same webhook does not).
    pub webhooks: bool,
    /// The deploy/overlays/ folder the webhook configurations are rendered from: `enforce`
    /// (failurePolicy Fail) or `audit` (Ignore).
    pub overlay: &'static str,
    /// Also register deploy/components/agent-pods' webhook (ownerless ReplicaSets and Pods).
    pub agent_pods: bool,
    /// Wait until `/readyz` says ready (the cluster view synced) before registering.
    pub wait_ready: bool,
    /// Serve with these certificates (a folder with `ca.crt`, `tls.crt` and `tls.key`, as
    /// `fluxgate certs` writes it, e.g. another replica's [`Fluxgate::dir`]) instead of fresh
    /// ones: replicas of one webhook share its certificate.
    pub certs: Option<PathBuf>,
    /// Where the API server is to call the webhooks (`https://127.0.0.1:<port>`, e.g. a
    /// [`super::ServiceProxy`] in front of replicas); its own address when `None`.
    pub webhook_url: Option<String>,
}

impl Default for FluxgateOptions {
    fn default() -> Self {
        FluxgateOptions {
            config: None,
            args: Vec::new(),
            env: Vec::new(),
            webhooks: true,
            overlay: "enforce",
            agent_pods: false,
            wait_ready: true,
            certs: None,
            webhook_url: None,
        }
    }
}

impl FluxgateOptions {
    /// The built-in configuration with these flags.
    pub fn with_args(args: &[&str]) -> Self {
        FluxgateOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..FluxgateOptions::default()
        }
    }

    /// This policy configuration (YAML) and the harness's defaults.
    pub fn with_config(yaml: &str) -> Self {
        FluxgateOptions {
            config: Some(yaml.to_string()),
            ..FluxgateOptions::default()
        }
    }
}

/// A running `fluxgate serve`; killed, and its webhook configurations deleted, on drop.
pub struct Fluxgate {
    cluster: &'static Cluster,
    child: Option<Child>,
    /// The HTTPS webhook listener.
    pub addr: SocketAddr,
    /// The plain-HTTP listener of /metrics, /healthz and /readyz.
    pub metrics_addr: SocketAddr,
    /// Its folder: certificates (`ca.crt`, `tls.crt`, `tls.key`), `config.yaml`, `fluxgate.log`.
    pub dir: PathBuf,
    /// The CA of its serving certificate (the webhooks' caBundle), PEM.
    pub ca_pem: String,
    webhooks: Vec<(ApiResource, String)>,
}

impl Fluxgate {
    pub(super) async fn start(env: &Env, options: FluxgateOptions) -> Fluxgate {
        let dir = process::temp_dir("fluxgate");
        let files = ::fluxgate::certs::CertFiles::in_dir(&dir);
        let ca_pem = match &options.certs {
            Some(from) => {
                for file in ["ca.crt", "tls.crt", "tls.key"] {
                    std::fs::copy(from.join(file), dir.join(file))
                        .unwrap_or_else(|e| panic!("{}: {e}", from.join(file).display()));
                }
                std::fs::read_to_string(&files.ca_cert).expect("ca.crt")
            }
            None => {
                let certs = ::fluxgate::certs::generate(&::fluxgate::certs::CertRequest {
                    dns_names: vec!["localhost".into()],
                    ips: vec![[127, 0, 0, 1].into()],
                    valid_days: 7,
                })
                .expect("certificates");
                ::fluxgate::certs::write_to(&dir, &certs).expect("write certificates");
                certs.ca_cert_pem
            }
        };
        let log = dir.join("fluxgate.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_fluxgate"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key);
        if let Some(yaml) = &options.config {
            let path = dir.join("config.yaml");
            std::fs::write(&path, yaml).expect("config.yaml");
            command.arg("--config").arg(path);
        }
        for (flag, value) in [
            ("--log-format", "json"),
            ("--audit-interval", "0"),
            ("--reload-interval-ms", "200"),
        ] {
            let given = options
                .args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
            if !given {
                command.args([flag, value]);
            }
        }
        command
            .args(&options.args)
            .env("KUBECONFIG", env.kubeconfig())
            // Found before KUBECONFIG by nothing, but never let a test run in a pod pick
            // its own cluster.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(super::log_file(&log))
            .stderr(super::log_file(&log));
        let child = process::spawn(command).expect("fluxgate serve starts");
        let mut fluxgate = Fluxgate {
            cluster: env.cluster,
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            ca_pem,
            webhooks: Vec::new(),
        };
        (fluxgate.addr, fluxgate.metrics_addr) = fluxgate.wait_serving().await;
        if options.wait_ready {
            fluxgate.wait_ready(Duration::from_secs(60)).await;
        }
        if options.webhooks {
            fluxgate.register(env, &options).await;
        }
        fluxgate
    }

    /// The addresses the "fluxgate is serving" log line names.
    async fn wait_serving(&mut self) -> (SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for line in self.log().lines() {
                let Ok(entry) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if entry["message"] == "fluxgate is serving" {
                    let addr = |key: &str| {
                        entry[key]
                            .as_str()
                            .and_then(|a| a.parse().ok())
                            .unwrap_or_else(|| panic!("{key} in {line}"))
                    };
                    return (addr("addr"), addr("metrics_addr"));
                }
            }
            self.assert_running("before serving");
            assert!(
                Instant::now() < deadline,
                "fluxgate not serving after 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.readyz().await;
            if status == 200 {
                return;
            }
            self.assert_running("before it was ready");
            assert!(
                Instant::now() < deadline,
                "fluxgate not ready after {timeout:?} ({status} {body}):\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[track_caller]
    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("fluxgate exited ({status}) {when}:\n{}", self.log());
        }
    }

    /// Registers the webhook configurations `options` say (overlay, agent_pods, webhook_url),
    /// then waits until the API server calls them. [`Env::fluxgate`] does it unless
    /// `options.webhooks` is false; call it for a replica started without.
    pub async fn register(&mut self, env: &Env, options: &FluxgateOptions) {
        use base64::Engine as _;
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let mut configurations = rendered_webhooks(options.overlay);
        if options.agent_pods {
            configurations.extend(manifests(
                &std::fs::read_to_string(
                    Path::new(ROOT).join("deploy/components/agent-pods/webhook.yaml"),
                )
                .expect("deploy/components/agent-pods/webhook.yaml"),
            ));
        }
        let client = env.client();
        let base = options
            .webhook_url
            .clone()
            .unwrap_or_else(|| format!("https://127.0.0.1:{}", self.addr.port()));
        for mut configuration in configurations {
            let kind = configuration["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = format!(
                "{}-envtest-{}",
                configuration["metadata"]["name"]
                    .as_str()
                    .unwrap_or("fluxgate"),
                self.addr.port()
            );
            configuration["metadata"] = json!({"name": name});
            for webhook in configuration["webhooks"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                let path = webhook["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or("/validate")
                    .to_string();
                webhook["clientConfig"] = json!({
                    "url": format!("{base}{path}"),
                    "caBundle": ca_bundle,
                });
            }
            let resource = webhook_resource(&kind);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let object: DynamicObject =
                serde_json::from_value(configuration).expect("a webhook configuration");
            api.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            self.webhooks.push((resource, name));
        }
        self.wait_called(env).await;
    }

    /// Server dry runs until the API server has called each registered endpoint: it picks up
    /// new webhook configurations a moment after they are created.
    async fn wait_called(&mut self, env: &Env) {
        let client = env.client();
        let mutating = self
            .webhooks
            .iter()
            .any(|(r, _)| r.kind == "MutatingWebhookConfiguration");
        let count = |metrics: &str, endpoint: &str| {
            metric(
                metrics,
                &format!("fluxgate_admission_duration_seconds_count{{endpoint=\"{endpoint}\"}}"),
            )
        };
        let before = self.metrics().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let oci: ApiResource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "OCIRepository"),
            "ocirepositories",
        );
        let probe: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": {"name": "envtest-probe", "namespace": "default"},
            "spec": {"interval": "10m", "url": "oci://registry.invalid/probe"},
        }))
        .expect("the probe");
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        // Without the Flux CRDs, a Role (which only the validating webhook judges).
        let role = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
        );
        let role_probe: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "envtest-probe", "namespace": "default"},
            "rules": [],
        }))
        .expect("the probe");
        let mut mutating = mutating;
        loop {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &oci);
            let mut result = api.create(&dry_run, &probe).await;
            if let Err(kube::Error::Api(status)) = &result
                && status.code == 404
            {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), "default", &role);
                result = api.create(&dry_run, &role_probe).await;
                mutating = false;
            }
            let last = match result {
                Ok(_) => "allowed".to_string(),
                Err(e) => e.to_string(),
            };
            let now = self.metrics().await;
            let called = |endpoint| count(&now, endpoint) > count(&before, endpoint);
            if called("validate") && (!mutating || called("mutate")) {
                return;
            }
            self.assert_running("while its webhooks were registered");
            assert!(
                Instant::now() < deadline,
                "the API server did not call fluxgate's webhooks within 30 s (last probe: {last}):\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /readyz`: the status and body.
    pub async fn readyz(&self) -> (u16, String) {
        http_get(self.metrics_addr, "/readyz").await
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let (status, body) = http_get(self.metrics_addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Everything it logged so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fluxgate.log")).unwrap_or_default()
    }

    /// The process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM, as the kubelet does to a pod being stopped.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            process::terminate(child);
        }
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The webhook configurations it registered (kind, name).
    pub fn webhook_configurations(&self) -> Vec<(String, String)> {
        self.webhooks
            .iter()
            .map(|(r, name)| (r.kind.clone(), name.clone()))
            .collect()
    }
}

impl Drop for Fluxgate {
    fn drop(&mut self) {
        // First the registrations: a webhook whose server is gone fails every request it
        // matches (failurePolicy Fail).
        let webhooks = std::mem::take(&mut self.webhooks);
        let cluster = self.cluster;
        if !webhooks.is_empty() {
            let deleted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                process::block_on(|| async move {
                    let client = cluster.client();
                    for (resource, name) in &webhooks {
                        let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
                        let _ = api.delete(name, &DeleteParams::default()).await;
                    }
                })
            }));
            if deleted.is_err() {
                eprintln!("envtest: could not delete fluxgate's webhook configurations");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- fluxgate log ({}) ---\n{}",
                self.dir.display(),
                process::log_tail(&self.dir.join("fluxgate.log"), 16_000)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn webhook_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
        &plural,
    )
}

fn manifests(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The webhook configurations of `kubectl kustomize deploy/overlays/<overlay>`, rendered once
/// per overlay and test binary.
fn rendered_webhooks(overlay: &str) -> Vec<Value> {
    static RENDERED: Mutex<BTreeMap<String, Vec<Value>>> = Mutex::new(BTreeMap::new());
    let mut rendered = super::lock(&RENDERED);
    rendered
        .entry(overlay.to_string())
        .or_insert_with(|| {
            let output = Command::new(std::env::var("KUBECTL").unwrap_or("kubectl".into()))
                .arg("kustomize")
                .arg(Path::new(ROOT).join("deploy/overlays").join(overlay))
                .output()
                .expect("kubectl on PATH (.ci/run installs it; or set KUBECTL)");
            assert!(
                output.status.success(),
                "kubectl kustomize deploy/overlays/{overlay}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let webhooks: Vec<Value> = manifests(&String::from_utf8_lossy(&output.stdout))
                .into_iter()
                .filter(|o| {
                    o["kind"]
                        .as_str()
                        .is_some_and(|k| k.ends_with("WebhookConfiguration"))
                })
                .collect();
            assert!(
                !webhooks.is_empty(),
                "deploy/overlays/{overlay} has no webhook configuration"
            );
            webhooks
        })
        .clone()
}

/// The value of the metric line with exactly these labels, 0 when absent.
fn metric(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A plain HTTP/1.0 GET (the server closes the connection after the answer): status, body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let answer = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(text)) => {
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (status, body.to_string())
        }
        Ok(Err(e)) => (0, e.to_string()),
        Err(_) => (0, format!("GET {path}: no answer in 10 s")),
    }
}
