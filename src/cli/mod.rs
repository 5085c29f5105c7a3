//! The command line: `fluxgate serve`, `fluxgate certs`, `fluxgate config default`.
//! Each subcommand parses its flags and calls into the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::reports::ReportApi;
use crate::certs::{self, CertFiles, CertRequest};
use crate::cluster::{ClusterView, MemoryView};
use crate::config::{Config, DEFAULT_CONFIG_YAML};
use crate::finding::Mode;
use crate::metrics::Metrics;
use crate::server::{BoundServer, ServerOptions};
use crate::tls::TlsFiles;

#[derive(Debug, Parser)]
#[command(
    name = "fluxgate",
    version,
    about = "Admission webhook for GitLab + Flux GitOps best practices"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and the metrics listener (HTTP).
    Serve(Box<ServeArgs>),
    /// Make a CA and a serving certificate for the webhook, and print the caBundle.
    Certs(CertsArgs),
    /// Judge manifests (files, directories, or - for stdin) with the cluster's policies,
    /// for CI pipelines. Exit 0: clean; 1: an enforce violation; 2: unreadable input.
    Check(crate::check::CheckArgs),
    /// Judge every object already in the cluster that the policies cover, once.
    Audit(AuditArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the built-in configuration as a commented file to start from.
    Default,
    /// Check a configuration file and report the first error with its key and line.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// PEM certificate chain for the webhook (reloaded when it changes).
    #[arg(long, required_unless_present = "demo", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the webhook (reloaded when it changes).
    #[arg(long, required_unless_present = "demo", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept only clients with a certificate from this CA (mutual TLS with the API server).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Policy configuration file (YAML); reloaded when it changes. Without it, the
    /// built-in default (every policy enforced) is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run every policy in this mode, whatever the configuration says (e.g. audit for a
    /// dry-run rollout).
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Request body bytes read and judged at once, across all requests (memory); a body
    /// that finds no room within a second gets a 429. At least --max-body-bytes plus 4 MiB
    /// kept for small bodies.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_INFLIGHT_BODY_BYTES)]
    pub max_inflight_body_bytes: usize,
    /// Most TLS connections open at once; more are closed on accept.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most TLS connections open at once from one peer address.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS_PER_PEER)]
    pub max_connections_per_peer: usize,
    /// Seconds a connection may stay open without a request in progress.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout: u64,
    /// Milliseconds a review may take from its arrival; at this deadline the answer is a
    /// 503 so that the webhook's failurePolicy decides, and the review's work stops. Keep
    /// it below the webhook's timeoutSeconds (deploy/ sets timeoutSeconds minus one second).
    #[arg(long, default_value_t = 8000)]
    pub eval_timeout_ms: u64,
    /// Threads that judge the reviews needing real work (regex compilation, large bodies);
    /// default: half the CPUs, at least one.
    #[arg(long)]
    pub eval_threads: Option<usize>,
    /// Seconds requests in flight may take to finish after SIGTERM.
    #[arg(long, default_value_t = 10)]
    pub drain_timeout: u64,
    /// Seconds fluxgate keeps answering after SIGTERM, each HTTP/1.1 answer closing its
    /// connection, before it stops accepting and drains: the API server reuses kept-alive
    /// connections, and one closed under a request it was sending loses that request.
    #[arg(long, default_value_t = 2)]
    pub drain_linger: u64,
    /// Milliseconds between checks of the configuration and certificate files.
    #[arg(long, default_value_t = 5000)]
    pub reload_interval_ms: u64,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// Seconds between audit scans of the cluster (0 turns the periodic scan off).
    #[arg(long, default_value_t = 600)]
    pub audit_interval: u64,
    /// Report API the audit scan writes: auto (OpenReports when the cluster serves it,
    /// else wgpolicyk8s.io PolicyReports), wgpolicyk8s or openreports.
    #[arg(long, value_enum, default_value_t = ReportApi::Auto)]
    pub report_api: ReportApi,
    /// Seconds a watch of the cluster may keep failing (API server unreachable, watch
    /// errors) before the view stops answering for its kind: policies that need that kind
    /// then follow their fail-open or fail-closed setting, and /readyz turns false.
    #[arg(long, default_value_t = 60)]
    pub view_grace_seconds: u64,
    /// Run without cluster state: policies see an empty cluster. Without this flag fluxgate
    /// watches the cluster it finds through the in-cluster service account or KUBECONFIG.
    #[arg(long)]
    pub no_cluster: bool,
    /// Serve with a fixed cluster view read from these manifests (files or directories, as
    /// `fluxgate check --cluster-state` reads them; e.g. `kubectl get ... -o yaml` output)
    /// instead of watching a cluster. For air-gapped trials, demos and benchmarks.
    #[arg(long = "cluster-state", value_name = "FILE", conflicts_with = "demo")]
    pub cluster_state: Vec<PathBuf>,
    /// Local demo: certificates generated into ./certs if missing, localhost listeners, no
    /// cluster, and a printed example request.
    #[arg(long)]
    pub demo: bool,
    /// Namespace of fluxgate's Leases: `fluxgate-single-agent`, through which every replica
    /// reserves a new GitLab agent installation before allowing it, and `fluxgate-audit`,
    /// whose holder is the one replica that writes the audit scan's reports and Events.
    /// Default: the namespace of fluxgate's service account in a cluster, else the
    /// kubeconfig context's.
    #[arg(long, visible_alias = "lease-namespace", value_name = "NAMESPACE")]
    pub reservation_namespace: Option<String>,
    /// Seconds the audit writer's Lease (`fluxgate-audit`) lasts without a renewal: of
    /// several replicas only its holder runs the audit scan and writes reports and Events,
    /// and another takes over within about this time when the holder dies or shuts down.
    /// At least 2; 0 turns the election off (every replica writes).
    #[arg(long, default_value_t = 15)]
    pub audit_lease_seconds: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum AuditOutput {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Policy configuration file (default: the built-in one, every policy enforced).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Judge every policy in this mode, whatever the configuration says.
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// Also write reports (PolicyReports or OpenReports) and Events, as the periodic scan
    /// in `serve` does.
    #[arg(long)]
    pub write_reports: bool,
    /// Report API --write-reports writes: auto (OpenReports when the cluster serves it,
    /// else wgpolicyk8s.io PolicyReports), wgpolicyk8s or openreports.
    #[arg(long, value_enum, default_value_t = ReportApi::Auto)]
    pub report_api: ReportApi,
    /// Seconds to wait for the cluster view to sync.
    #[arg(long, default_value_t = 60)]
    pub sync_timeout: u64,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, ca.key, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// DNS names of the serving certificate (e.g. fluxgate.fluxgate-system.svc).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate.
    #[arg(long = "ip")]
    pub ip: Vec<IpAddr>,
    /// Days the serving certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Certs(args) => certs_command(&args),
        Command::Audit(args) => audit_command(&args),
        Command::Check(args) => {
            let code = crate::check::run(
                &args,
                std::io::stdin().lock(),
                std::io::stdout().lock(),
                std::io::stderr().lock(),
            );
            ExitCode::from(u8::try_from(code).unwrap_or(2))
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{DEFAULT_CONFIG_YAML}");
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => match Config::from_file(&file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging(format: LogFormat) -> crate::logging::LogGuard {
    crate::logging::init(matches!(format, LogFormat::Json))
}

fn certs_command(args: &CertsArgs) -> ExitCode {
    let request = CertRequest {
        dns_names: args.dns.clone(),
        ips: args.ip.clone(),
        valid_days: args.days,
    };
    match certs::generate(&request).and_then(|c| certs::write_to(&args.out, &c).map(|f| (c, f))) {
        Ok((generated, files)) => {
            eprintln!(
                "wrote {}, {}, {} and {}",
                files.ca_cert.display(),
                files.ca_key.display(),
                files.cert.display(),
                files.key.display()
            );
            eprintln!("caBundle for the webhook configurations:");
            println!("{}", generated.ca_bundle());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The demo's certificates: generated into ./certs on first run, reused after.
fn demo_certs() -> Result<TlsFiles, String> {
    let dir = PathBuf::from("certs");
    let files = CertFiles::in_dir(&dir);
    if !files.all_exist() {
        let generated = certs::generate(&CertRequest {
            dns_names: vec!["localhost".into()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
            valid_days: 365,
        })
        .map_err(|e| e.to_string())?;
        certs::write_to(&dir, &generated).map_err(|e| e.to_string())?;
        tracing::info!(dir = %dir.display(), "generated demo certificates");
    }
    Ok(TlsFiles {
        cert: files.cert,
        key: files.key,
    })
}

fn serve(mut args: ServeArgs) -> ExitCode {
    let _log = init_logging(args.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = args.worker_threads {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.demo {
        args.no_cluster = true;
        let default_listen: SocketAddr = ([0, 0, 0, 0], 8443).into();
        let default_metrics: SocketAddr = ([0, 0, 0, 0], 9090).into();
        if args.listen == default_listen {
            args.listen = ([127, 0, 0, 1], 8443).into();
        }
        if args.metrics_listen == default_metrics {
            args.metrics_listen = ([127, 0, 0, 1], 9090).into();
        }
    }
    match runtime.block_on(run_server(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster view for `serve`: watches of the cluster found through the in-cluster account
/// or KUBECONFIG; with no cluster configuration at all (`--no-cluster`, or a laptop without a
/// kubeconfig) an empty in-memory view, said loudly in the log.
async fn cluster_view(
    args: &ServeArgs,
) -> Result<(Arc<dyn ClusterView>, Option<kube::Client>), String> {
    if !args.cluster_state.is_empty() {
        return Ok((Arc::new(static_view(args)?), None));
    }
    if args.no_cluster {
        return Ok((Arc::new(MemoryView::new()), None));
    }
    Ok(match kube::Client::try_default().await {
        Ok(client) => (
            crate::cluster::kube::KubeView::start_with_grace(
                client.clone(),
                Duration::from_secs(args.view_grace_seconds),
            ),
            Some(client),
        ),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no Kubernetes configuration found (in-cluster or KUBECONFIG); running without cluster state: rules that need it see an empty cluster"
            );
            (Arc::new(MemoryView::new()), None)
        }
    })
}

/// The view of `--cluster-state`: every object of the files, applied once. Files are read one
/// at a time, so that the parsed JSON of a large state is never all in memory at once.
fn static_view(args: &ServeArgs) -> Result<MemoryView, String> {
    let config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let view = MemoryView::new();
    // Which images count as agentk comes from the configuration: set before applying.
    view.reconfigure(config.policies.single_agent.detector());
    let mut files = Vec::new();
    for path in &args.cluster_state {
        manifest_files(path, &mut files, &mut std::collections::HashSet::new())
            .map_err(|e| format!("--cluster-state {}: {e}", path.display()))?;
    }
    let (mut applied, mut skipped) = (0usize, 0usize);
    for file in &files {
        let mut inputs = crate::check::reader::Inputs::default();
        crate::check::reader::Reader::new(&mut std::io::empty())
            .read_paths(std::slice::from_ref(file), &mut inputs);
        if let Some(error) = inputs.errors.first() {
            return Err(format!("--cluster-state: {error}"));
        }
        skipped += inputs.skipped.len();
        for doc in &inputs.documents {
            match &doc.content {
                crate::check::reader::Content::Object { json, head } => {
                    match view.apply_object(head, json) {
                        Ok(()) => applied += 1,
                        Err(e) => {
                            return Err(format!("--cluster-state {}:{}: {e}", doc.file, doc.line));
                        }
                    }
                }
                crate::check::reader::Content::AgentConfig { .. } => skipped += 1,
            }
        }
    }
    tracing::info!(
        files = files.len(),
        objects = applied,
        skipped,
        "cluster view loaded from --cluster-state; the cluster is not watched"
    );
    Ok(view)
}

/// `path` itself, or the manifests under it (`*.yaml`, `*.yml`, `*.json`), in name order.
fn manifest_files(
    path: &std::path::Path,
    out: &mut Vec<PathBuf>,
    visited: &mut std::collections::HashSet<PathBuf>,
) -> std::io::Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    // A symlink may point back up the tree.
    if !visited.insert(std::fs::canonicalize(path)?) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let manifest = matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if entry.is_dir() || manifest {
            manifest_files(&entry, out, visited)?;
        }
    }
    Ok(())
}

async fn client_from(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

fn audit_command(args: &AuditArgs) -> ExitCode {
    let _log = init_logging(LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run_audit(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_audit(args: &AuditArgs) -> Result<ExitCode, String> {
    use crate::audit::{AuditResult, cluster};
    let config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let client = client_from(args.kubeconfig.as_ref()).await?;
    let view = crate::cluster::kube::KubeView::start(client.clone());
    view.reconfigure(config.policies.single_agent.detector());
    let engine = crate::engine::Engine::new(config, args.mode);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.sync_timeout);
    while !view.synced() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the cluster view did not sync within {}s (is the API server reachable, and may this user list the watched kinds?)",
                args.sync_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let options = cluster::AuditOptions {
        write_reports: args.write_reports,
        publish_events: args.write_reports,
        report_api: args.report_api,
        ..cluster::AuditOptions::default()
    };
    let auditor = cluster::ClusterAuditor::new(client, options);
    let cluster::AuditRun { report, written } = auditor
        .run_once(&engine, view.as_ref(), &Metrics::new())
        .await;
    match args.output {
        AuditOutput::Table => {
            print!("{}", crate::audit::render_table(&report));
            if !report.rotation.is_empty() {
                print!(
                    "\nKey and token rotation (secret-rotation):\n{}",
                    crate::audit::render_rotation_table(&report.rotation)
                );
            }
        }
        AuditOutput::Json => {
            let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            if args.write_reports {
                value["written"] = serde_json::to_value(&written).map_err(|e| e.to_string())?;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
            );
        }
    }
    if args.write_reports {
        let kinds = if written.report_kinds.is_empty() {
            "no report kind served".to_string()
        } else {
            written.report_kinds.join(", ")
        };
        eprintln!(
            "wrote {} reports ({kinds}) and {} Events",
            written.reports.len(),
            written.events
        );
        if !written.retired.is_empty() {
            eprintln!(
                "removed {} reports of the report API fluxgate no longer writes: {}",
                written.retired.len(),
                written.retired.join(", ")
            );
        }
        for error in &written.event_errors {
            eprintln!("warning: {error}");
        }
        for error in &written.report_errors {
            eprintln!("error: {error}");
        }
        // Reports were asked for and not all could be written: the findings above stand, but
        // a script must not take the cluster's reports for up to date. (An Event that cannot
        // be published, e.g. in a namespace being deleted, is only warned about.)
        if !written.report_errors.is_empty() {
            return Ok(ExitCode::from(2));
        }
    }
    let enforced_failure = report
        .findings
        .iter()
        .any(|f| f.result == AuditResult::Fail && f.mode == Mode::Enforce);
    Ok(if enforced_failure {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_server(args: ServeArgs) -> Result<(), String> {
    let tls = match (&args.tls_cert, &args.tls_key, args.demo) {
        (Some(cert), Some(key), _) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, true) => demo_certs()?,
        _ => return Err("--tls-cert and --tls-key are required (or --demo)".into()),
    };
    // Before anything can take long or say it is up: a SIGTERM from then on drains.
    let (_handle, shutdown) = crate::server::shutdown_on_signals();
    let (view, client) = cluster_view(&args).await?;
    let mut options = ServerOptions::new(args.listen, args.metrics_listen, tls);
    options.config_path = args.config.clone();
    options.client_ca = args.client_ca.clone();
    options.eval_timeout = Duration::from_millis(args.eval_timeout_ms.max(1));
    options.max_body_bytes = args.max_body_bytes;
    options.max_connections = args.max_connections.max(1);
    options.max_connections_per_peer = args.max_connections_per_peer.max(1);
    options.max_inflight_body_bytes = args.max_inflight_body_bytes;
    options.idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    if let Some(threads) = args.eval_threads {
        options.eval_threads = threads.max(1);
    }
    options.drain_timeout = Duration::from_secs(args.drain_timeout);
    options.drain_linger = Duration::from_secs(args.drain_linger);
    options.reload_interval = Duration::from_millis(args.reload_interval_ms.max(10));
    let lease_namespace = client.as_ref().map(|client| {
        args.reservation_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    });
    if let (Some(client), Some(namespace)) = (&client, &lease_namespace) {
        tracing::info!(
            namespace = %namespace,
            lease = crate::cluster::reservation::LEASE_NAME,
            "new GitLab agent installations are reserved through a Lease shared by every replica"
        );
        options.reservations = Arc::new(crate::cluster::reservation::LeaseReservations::new(
            client.clone(),
            namespace,
        ));
    }
    let server = BoundServer::bind(options, args.mode, view, Metrics::new())
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let metrics_addr = server.metrics_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        %addr,
        %metrics_addr,
        mode_override = args.mode.map(|m| m.as_str()).unwrap_or("none"),
        "fluxgate is serving"
    );
    if args.demo {
        print_demo_help(addr, metrics_addr);
    }
    let mut leadership = None;
    if let (Some(client), true) = (client, args.audit_interval > 0) {
        if let (Some(namespace), true) = (lease_namespace, args.audit_lease_seconds > 0) {
            leadership = Some(crate::server::leader::Leadership::start(
                client.clone(),
                crate::server::leader::ElectionOptions {
                    namespace,
                    identity: crate::server::leader::ElectionOptions::default_identity(),
                    lease_duration: Duration::from_secs(args.audit_lease_seconds),
                },
                shutdown.clone(),
            ));
        }
        let auditor = Arc::new(crate::audit::cluster::ClusterAuditor::new(
            client,
            crate::audit::cluster::AuditOptions {
                report_api: args.report_api,
                ..crate::audit::cluster::AuditOptions::default()
            },
        ));
        tokio::spawn(crate::server::audit::periodic(
            auditor,
            server.state(),
            Duration::from_secs(args.audit_interval),
            shutdown.clone(),
            leadership.as_ref().map(|l| l.subscribe()),
        ));
    }
    server.run(shutdown).await;
    if let Some(leadership) = leadership {
        leadership.stopped(Duration::from_secs(3)).await;
    }
    tracing::info!("fluxgate stopped");
    Ok(())
}

fn print_demo_help(addr: SocketAddr, metrics_addr: SocketAddr) {
    eprintln!(
        "\nfluxgate demo is serving on https://{addr} (certificates in ./certs, built-in policies, no cluster).\n\
         Send it a review, for example an OCIRepository without signature verification:\n\n  \
         curl --cacert certs/ca.crt -H 'Content-Type: application/json' \\\n    \
         --data @tests/fixtures/admission/deny-ocirepo-create__validate-OCIRepository-CREATE.json \\\n    \
         https://localhost:{port}/validate\n\n\
         Metrics: curl http://{metrics_addr}/metrics   Readiness: curl http://{metrics_addr}/readyz\n\
         Stop with Ctrl-C.\n",
        port = addr.port()
    );
}
