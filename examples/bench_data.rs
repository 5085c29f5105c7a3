//! Writes the inputs `scripts/bench-load.sh` needs and criterion does not: the synthetic
//! cluster as `--cluster-state` files, a GitOps repository for `fluxgate check`, the 3 MiB
//! UPDATE review, and a RoleBinding review that the cluster view is consulted for.
//!
//!     cargo run --release --example bench_data OUT_DIR [RBAC] [WORKLOADS] [CHECK_OBJECTS]
//!
//! Defaults: 100,000 RBAC objects, 10,000 Deployments, 100,000 objects to check. The cluster
//! is written as JSON `List`s of 1,000 objects each in OUT_DIR/cluster/, so that a server
//! loading it never holds more than one file's parsed JSON at a time.

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: bench_data OUT_DIR [RBAC] [WORKLOADS] [CHECK_OBJECTS]");
        std::process::exit(2);
    };
    let mut number = |default: usize| {
        args.next()
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
            .unwrap_or(default)
    };
    let (rbac, workloads, check_objects) = (number(100_000), number(10_000), number(100_000));
    let cluster = out.join("cluster");
    std::fs::create_dir_all(&cluster).expect("creates the output directory");

    let objects: Vec<serde_json::Value> = support::cluster::objects(rbac, workloads).collect();
    for (i, chunk) in objects.chunks(1000).enumerate() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": chunk});
        let path = cluster.join(format!("part-{i:04}.json"));
        std::fs::write(&path, serde_json::to_vec(&list).expect("serializes"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let manifests = out.join("check.yaml");
    std::fs::write(&manifests, support::manifests::yaml(check_objects)).expect("writes");
    // A review that consults the view: a RoleBinding of a Role the synthetic cluster has.
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "deployers", "namespace": "team-0"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app-3"},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
            "name": "gitlab:project_env:1000:review"}]
    });
    std::fs::write(
        out.join("rolebinding-review.json"),
        support::review("CREATE", &binding, None),
    )
    .expect("writes");
    let update = out.join("update-3mib.json");
    std::fs::write(&update, support::big_update(&support::passing_object())).expect("writes");
    println!(
        "{}: {} cluster objects in {}, {check_objects} objects in {}, {}",
        out.display(),
        objects.len(),
        cluster.display(),
        manifests.display(),
        update.display()
    );
}
