//! A real kube-apiserver and etcd for integration tests, started from the binaries the folder
//! `KUBEBUILDER_ASSETS` names (the layout controller-runtime's `setup-envtest` gives it).
//! /work/notes/status/harness.md and README's tests section say how to use it.
//!
//! Include it with `#[path = "support/envtest/mod.rs"] mod envtest;` and start each test with
//! `let Some(env) = envtest::cluster().await else { return };`:
//! - without `KUBEBUILDER_ASSETS` the test binary prints one line saying its tests were skipped
//!   and how to get the binaries, and each test returns at once;
//! - with it set but the binaries missing or broken, every test fails with what went wrong;
//! - with it, the first test starts etcd and kube-apiserver on free loopback ports, with their
//!   own temporary data folder, certificates and admin token, and installs the Flux CRDs
//!   ([`FLUX_CRDS`]). One API server serves every test of the binary; it is killed when the
//!   binary exits, however it exits.
//!
//! Webhook configurations and the cluster view are cluster-wide: a `fluxgate serve` watching
//! the cluster sees every test's objects, and every test's writes go through every registered
//! webhook. So the tests of one binary take turns: [`Env`] holds the turn, and when it is
//! dropped, the objects the test created (of the kinds fluxgate watches, webhook
//! configurations, Leases, CRDs) are deleted, so that the next test starts from the same
//! cluster. Namespaces stay (without a kube-controller-manager a deleted namespace never goes
//! away); each test makes its own with [`Env::namespace`].
// Each test binary uses part of the harness.
#![allow(dead_code, unused_imports)]

mod fluxgate;
mod process;
mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};

pub use fluxgate::{Fluxgate, FluxgateOptions};
pub use proxy::ServiceProxy;

/// What a test binary prints, once, when it skips its envtest tests.
pub const SKIPPED: &str = "skipped: KUBEBUILDER_ASSETS is not set; get the binaries with \
`setup-envtest use 1.28.x` (go install sigs.k8s.io/controller-runtime/tools/setup-envtest@latest) \
and set KUBEBUILDER_ASSETS to the folder it prints, as .ci/run does";

/// Where the CRDs (and other fixtures) are read from.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The CRDs every cluster starts with: the newest release of each Flux controller, as
/// `flux install` applies them (paths under tests/fixtures/).
pub const FLUX_CRDS: &[&str] = &[
    "corpus/crds/source.toolkit.fluxcd.io_buckets.yaml",
    "corpus/crds/source.toolkit.fluxcd.io_externalartifacts.yaml",
    "corpus/crds/source.toolkit.fluxcd.io_gitrepositories.yaml",
    "corpus/crds/source.toolkit.fluxcd.io_helmcharts.yaml",
    "corpus/crds/source.toolkit.fluxcd.io_helmrepositories.yaml",
    "corpus/crds/source.toolkit.fluxcd.io_ocirepositories.yaml",
    "corpus/crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    "corpus/crds/helm.toolkit.fluxcd.io_helmreleases.yaml",
];

/// How long the API server may take to answer `/readyz` after it starts (1-6 s on 2 idle
/// cores; much more while other builds run).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The API server and etcd of this test binary.
pub struct Cluster {
    dir: PathBuf,
    assets: PathBuf,
    port: u16,
    etcd_port: u16,
    token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    config: kube::Config,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    namespaces: AtomicUsize,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Whose turn it is: one test of the binary at a time uses the cluster. (tokio's lock: it is
/// held across awaits, and a test that panics with it does not poison it.)
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster for one test, or `None` (after saying so once) when `KUBEBUILDER_ASSETS` is
/// not set. Waits for the tests before it to finish with the cluster.
pub async fn cluster() -> Option<Env> {
    let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) else {
        static SAID: Once = Once::new();
        // Straight to the standard error: libtest would capture (and hide) eprintln!.
        SAID.call_once(|| {
            let _ = writeln!(std::io::stderr(), "{SKIPPED}");
        });
        return None;
    };
    let cluster = CLUSTER.get_or_init(|| {
        // A failed start is kept (and every test fails with it) rather than tried again by
        // each test.
        std::panic::catch_unwind(|| Cluster::start(PathBuf::from(assets)))
            .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())))
    });
    let cluster = match cluster {
        Ok(cluster) => cluster,
        Err(e) => panic!("envtest: {e}"),
    };
    let turn = TURN.lock().await;
    // A test that panicked while the API server was stopped left it so.
    if cluster.apiserver_stopped() {
        cluster.start_apiserver().await;
    }
    let client = cluster.client();
    let before = Snapshot::take(&client).await;
    Some(Env {
        cluster,
        before,
        _turn: turn,
    })
}

impl Cluster {
    fn start(assets: PathBuf) -> Result<Cluster, String> {
        let assets = std::fs::canonicalize(&assets)
            .map_err(|e| format!("KUBEBUILDER_ASSETS={}: {e}", assets.display()))?;
        for binary in ["etcd", "kube-apiserver"] {
            let path = assets.join(binary);
            let runs = Command::new(&path)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !runs.success() {
                return Err(format!("{} --version failed: {runs}", path.display()));
            }
        }
        process::remove_stale_temp_dirs();
        let dir = process::temp_dir("cluster");
        // SAFETY: registers a plain function; it runs when the binary exits normally.
        unsafe {
            libc::atexit(shut_down_at_exit);
        }
        let pki = dir.join("pki");
        let certs = ::fluxgate::certs::generate(&::fluxgate::certs::CertRequest {
            dns_names: vec!["localhost".into()],
            ips: vec![[127, 0, 0, 1].into()],
            valid_days: 7,
        })
        .map_err(|e| e.to_string())?;
        ::fluxgate::certs::write_to(&pki, &certs).map_err(|e| e.to_string())?;
        let service_accounts = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        write(&pki.join("sa.key"), &service_accounts.serialize_pem())?;
        write(&pki.join("sa.pub"), &service_accounts.public_key_pem())?;
        let token = random_hex(16);
        write(
            &pki.join("tokens.csv"),
            &format!("{token},admin,admin,\"system:masters\"\n"),
        )?;
        let (etcd, etcd_port) = start_etcd(&assets, &dir)?;
        let port = process::free_port();
        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(port, &certs.ca_cert_pem, &token),
        )?;
        let config = process::block_on(|| async {
            let file =
                kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| e.to_string())
        })?;
        let cluster = Cluster {
            dir,
            assets,
            port,
            etcd_port,
            token,
            ca_pem: certs.ca_cert_pem,
            kubeconfig,
            config,
            etcd: Mutex::new(Some(etcd)),
            apiserver: Mutex::new(None),
            namespaces: AtomicUsize::new(0),
        };
        process::block_on(|| async {
            cluster.start_apiserver().await;
            install_crds(&cluster.client(), FLUX_CRDS).await;
        });
        Ok(cluster)
    }

    /// A client for the admin user, on the runtime of the caller.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone()).expect("a client from the kubeconfig")
    }

    fn apiserver_stopped(&self) -> bool {
        lock(&self.apiserver).is_none()
    }

    fn apiserver_command(&self) -> Command {
        let pki = self.dir.join("pki");
        let mut command = Command::new(self.assets.join("kube-apiserver"));
        command
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .arg(format!("--secure-port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("apiserver").display()
            ))
            .arg(format!("--tls-cert-file={}", pki.join("tls.crt").display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.join("tls.key").display()
            ))
            .arg(format!(
                "--service-account-key-file={}",
                pki.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.join("sa.key").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=RBAC")
            .arg(format!(
                "--token-auth-file={}",
                pki.join("tokens.csv").display()
            ))
            // On loopback it would retry forever to publish 127.0.0.1 as the `kubernetes`
            // Service's endpoint.
            .arg("--endpoint-reconciler-type=none");
        command
    }

    /// Starts the API server (again, after [`Env::stop_apiserver`]) and waits for `/readyz`.
    async fn start_apiserver(&self) {
        let log = self.dir.join("kube-apiserver.log");
        {
            let mut slot = lock(&self.apiserver);
            if slot.is_some() {
                return;
            }
            let mut command = self.apiserver_command();
            command
                .stdin(Stdio::null())
                .stdout(log_file(&log))
                .stderr(log_file(&log));
            *slot = Some(process::spawn(command).expect("kube-apiserver starts"));
        }
        let client = self.client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let request = axum::http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            if client.request_text(request).await.is_ok() {
                return;
            }
            if let Some(status) = lock(&self.apiserver)
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "kube-apiserver exited ({status}) before it was ready; the end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, 4000)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?}; the end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop_apiserver(&self) {
        if let Some(mut child) = lock(&self.apiserver).take() {
            // SIGKILL: a SIGTERM'd kube-apiserver waits for its watches (15 s and more), and a
            // crash or a network partition breaks them just the same.
            let _ = child.kill();
            child.wait().expect("kube-apiserver stops");
        }
    }

    /// Kills both processes and removes the data folder (at exit).
    fn shut_down(&self) {
        for slot in [&self.apiserver, &self.etcd] {
            // A test thread still holding the lock at exit is stuck; the processes then die
            // with the binary (PR_SET_PDEATHSIG).
            if let Ok(mut slot) = slot.try_lock()
                && let Some(mut child) = slot.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    /// Only a cluster that failed to start is dropped; the binary's cluster lives in a static
    /// and is shut down at exit.
    fn drop(&mut self) {
        self.shut_down();
    }
}

extern "C" fn shut_down_at_exit() {
    if let Some(Ok(cluster)) = CLUSTER.get() {
        cluster.shut_down();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the cluster did not start".into())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buffer)
        .expect("random bytes");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// etcd on free ports (picked again when another process took one first).
fn start_etcd(assets: &Path, dir: &Path) -> Result<(Child, u16), String> {
    let log = dir.join("etcd.log");
    for _attempt in 0..3 {
        let (client_port, peer_port) = (process::free_port(), process::free_port());
        let mut command = Command::new(assets.join("etcd"));
        command
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            // Throwaway data: no need to wait for the disk.
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log));
        let mut child = process::spawn(command).map_err(|e| format!("etcd: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = process::log_tail(&log, 4000);
                if tail.contains("address already in use") {
                    break;
                }
                return Err(format!(
                    "etcd exited ({status}); the end of {}:\n{tail}",
                    log.display()
                ));
            }
            if std::net::TcpStream::connect(("127.0.0.1", client_port)).is_ok() {
                return Ok((child, client_port));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "etcd did not listen within {READY_TIMEOUT:?}; the end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, 4000)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err("etcd: no free port after three tries".into())
}

fn kubeconfig_yaml(port: u16, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: admin\n    namespace: default\ncurrent-context: envtest\n"
    )
}

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// Applies the CRD files (paths under tests/fixtures/) and waits until each is Established.
async fn install_crds(client: &kube::Client, files: &[&str]) -> Vec<String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let mut names = Vec::new();
    for file in files {
        let path = Path::new(FIXTURES).join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let crd: Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no metadata.name", path.display()))
            .to_string();
        api.patch(
            &name,
            &PatchParams::apply("fluxgate-envtest").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &names {
        loop {
            let crd = api.get(name).await.expect("the CRD just applied");
            let established = crd.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "CRD {name} not Established after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    names
}

/// Deletes the CRDs and waits until the API server has removed them and their objects.
async fn remove_crds(client: &kube::Client, names: &[String]) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        while api.get_opt(name).await.ok().flatten().is_some() {
            assert!(
                Instant::now() < deadline,
                "CRD {name} still there 60 s after its deletion"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The kinds a test's leftovers are looked for in, in the order they are deleted: webhook
/// configurations first (a leftover webhook whose server is gone would refuse the deletes),
/// then what fluxgate's cluster view watches, Leases, and last the CRDs.
fn tracked_kinds() -> Vec<(ApiResource, bool)> {
    let kind = |group: &str, version: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    };
    let mut kinds = vec![
        (
            kind(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
            ),
            false,
        ),
        (
            kind(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
            ),
            false,
        ),
    ];
    for watched in ::fluxgate::cluster::WATCHED_KINDS {
        // Namespaces stay: nothing would finish deleting them.
        if watched.kind != "Namespace" {
            kinds.push((
                kind(watched.group, watched.version, watched.kind, watched.plural),
                watched.namespaced,
            ));
        }
    }
    kinds.push((kind("coordination.k8s.io", "v1", "Lease", "leases"), true));
    kinds.push((crd_resource(), false));
    kinds
}

/// The objects of the tracked kinds when a test's turn began, by UID, and the
/// resourceVersion of each Flux CRD.
struct Snapshot {
    uids: BTreeMap<String, HashSet<String>>,
    flux_crds: BTreeMap<String, String>,
}

fn key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.group, resource.plural)
}

impl Snapshot {
    async fn take(client: &kube::Client) -> Snapshot {
        let mut uids = BTreeMap::new();
        for (resource, _) in tracked_kinds() {
            let seen = list(client, &resource)
                .await
                .into_iter()
                .map(|(uid, _, _)| uid)
                .collect();
            uids.insert(key(&resource), seen);
        }
        Snapshot {
            uids,
            flux_crds: flux_crd_versions(client).await,
        }
    }

    /// Deletes the objects of the tracked kinds that were not there when it was taken.
    async fn restore(&self, client: &kube::Client) {
        let mut crds = Vec::new();
        for (resource, namespaced) in tracked_kinds() {
            let before = self.uids.get(&key(&resource));
            for (uid, namespace, name) in list(client, &resource).await {
                if before.is_some_and(|uids| uids.contains(&uid)) {
                    continue;
                }
                // The API server's own Leases.
                if resource.kind == "Lease"
                    && matches!(
                        namespace.as_deref(),
                        Some("kube-system" | "kube-node-lease")
                    )
                {
                    continue;
                }
                if resource.kind == "CustomResourceDefinition" {
                    crds.push(name);
                    continue;
                }
                let api: Api<DynamicObject> = match (&namespace, namespaced) {
                    (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resource),
                    _ => Api::all_with(client.clone(), &resource),
                };
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::background()
                };
                if let Err(e) = api.delete(&name, &params).await {
                    eprintln!("envtest: could not delete {} {name}: {e}", resource.kind);
                }
            }
        }
        remove_crds(client, &crds).await;
        // A test that removed or changed a Flux CRD gets the newest ones back.
        if flux_crd_versions(client).await != self.flux_crds {
            install_crds(client, FLUX_CRDS).await;
        }
    }
}

/// name -> resourceVersion of the Flux CRDs the cluster has.
async fn flux_crd_versions(client: &kube::Client) -> BTreeMap<String, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let crds = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list the CRDs");
    crds.items
        .into_iter()
        .filter_map(|crd| {
            let name = crd.metadata.name?;
            name.ends_with(".toolkit.fluxcd.io")
                .then(|| (name, crd.metadata.resource_version.unwrap_or_default()))
        })
        .collect()
}

/// (uid, namespace, name) of every object of a kind; none when the kind is not served.
async fn list(
    client: &kube::Client,
    resource: &ApiResource,
) -> Vec<(String, Option<String>, String)> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|o| {
                (
                    o.metadata.uid.unwrap_or_default(),
                    o.metadata.namespace,
                    o.metadata.name.unwrap_or_default(),
                )
            })
            .collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => panic!("listing {}: {e}", resource.plural),
    }
}

/// What a kubectl command did.
#[derive(Debug)]
pub struct Kubectl {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// The output, after asserting that the command succeeded.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success, "kubectl failed:\n{}", self.stderr);
        &self.stdout
    }

    /// The error message, after asserting that the command failed.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert!(!self.success, "kubectl succeeded:\n{}", self.stdout);
        &self.stderr
    }
}

/// One test's turn on the cluster. Dropping it deletes what the test created (see the
/// module's documentation) and lets the next test have its turn.
pub struct Env {
    cluster: &'static Cluster,
    before: Snapshot,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    /// A client for the admin user (`system:masters`), on the caller's runtime.
    pub fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// A kubeconfig file for the admin user: for kubectl, `fluxgate serve` and `fluxgate audit`.
    pub fn kubeconfig(&self) -> &Path {
        &self.cluster.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.cluster.port)
    }

    /// The CA that signed the API server's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.cluster.ca_pem
    }

    /// The admin user's bearer token.
    pub fn token(&self) -> &str {
        &self.cluster.token
    }

    /// A new namespace, `<prefix>-<n>`, unique in this binary's cluster.
    pub async fn namespace(&self, prefix: &str) -> String {
        let n = self.cluster.namespaces.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(50)
            .collect();
        let name = format!("{}-{n}", prefix.trim_matches('-'));
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client());
        let namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
        name
    }

    /// Runs `kubectl` against the cluster as the admin user, with `stdin` as its input.
    pub async fn kubectl(&self, args: &[&str], stdin: &str) -> Kubectl {
        let mut command = Command::new(std::env::var("KUBECTL").unwrap_or("kubectl".into()));
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .arg(format!(
                "--cache-dir={}",
                self.cluster.dir.join("kubectl-cache").display()
            ))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = stdin.to_string();
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command
                .spawn()
                .expect("kubectl on PATH (.ci/run installs it; or set KUBECTL)");
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.as_bytes()).expect("kubectl's input");
            }
            child.wait_with_output().expect("kubectl runs")
        })
        .await
        .expect("the kubectl task");
        Kubectl {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Applies CRD files (paths under tests/fixtures/, e.g.
    /// `corpus/crds/policy-reports/kyverno-wgpolicyk8s.io_policyreports.yaml`) and waits until
    /// they are Established. CRDs that were not there when the test began are deleted at its
    /// end, and the newest Flux CRDs put back if the test removed or changed one.
    pub async fn install_crds(&self, files: &[&str]) -> Vec<String> {
        install_crds(&self.client(), files).await
    }

    /// Deletes CRDs by name and waits until they and their objects are gone.
    pub async fn remove_crds(&self, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        remove_crds(&self.client(), &names).await;
    }

    /// Kills the kube-apiserver process (as a crash would); etcd and its data stay. Watches
    /// break and requests fail until [`Env::start_apiserver`].
    pub fn stop_apiserver(&self) {
        self.cluster.stop_apiserver();
    }

    /// Starts the kube-apiserver again on the same port and waits until it is ready.
    pub async fn start_apiserver(&self) {
        self.cluster.start_apiserver().await;
    }

    /// Starts `fluxgate serve` against this cluster (see [`FluxgateOptions`]).
    pub async fn fluxgate(&self, options: FluxgateOptions) -> Fluxgate {
        Fluxgate::start(self, options).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let cluster = self.cluster;
        let before = &self.before;
        // Never a panic in a drop that may run during one (that would abort the binary).
        let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process::block_on(|| async move {
                cluster.start_apiserver().await;
                before.restore(&cluster.client()).await;
            })
        }));
        if restored.is_err() {
            eprintln!(
                "envtest: the cluster could not be restored after this test; the next ones may see its objects"
            );
        }
    }
}
