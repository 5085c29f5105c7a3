#!/usr/bin/env python3
"""Vendors public GitOps repositories into tests/fixtures/gitops/ for the golden-file
regression test (tests/gitops.rs), raw and rendered.

    scripts/gitops-fixtures.py vendor NAME SOURCE_DIR URL COMMIT LICENSE [SUBDIR...]
    scripts/gitops-fixtures.py render NAME [SOURCE_DIR]

`vendor` copies the manifests (*.yaml, *.yml, *.json and kustomization files; nothing under
.git/ or .github/) of SOURCE_DIR, or of its SUBDIRs, into tests/fixtures/gitops/NAME/raw/,
with the repository's LICENSE (and NOTICE), writes NAME/README.md (source, commit, license,
what was copied) and then renders. Only Apache-2.0 and MIT repositories may be vendored.
SOURCE_DIR must be a checkout of URL at COMMIT (for example `git archive COMMIT | tar -x`).

`render` writes NAME/rendered/ from the raw tree (or from SOURCE_DIR, which has the files
kustomize generators read that raw/ leaves out, such as scripts and .conf files):
- every "root" kustomization directory (one that no other kustomization of the tree
  includes) is built with `kubectl kustomize` into rendered/<dir>/kustomize-build.yaml, so
  that the rendered file sits in the directory a Flux Kustomization's spec.path names;
- every manifest outside any kustomization directory (the plain files Flux applies as they
  are, such as clusters/<name>/apps.yaml) is copied as it is;
- a root that does not build offline (remote resources) is listed in
  rendered/NOT-RENDERED.txt with kubectl's error, and left out.

Needs python3 with PyYAML and kubectl (kustomize v5); no network. After a change, run
`FLUXGATE_UPDATE_GOLDEN=1 cargo test --test gitops` and review the golden files' diff.
"""

import os
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "gitops")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
ALLOWED_LICENSES = ("Apache-2.0", "MIT")
SKIPPED_DIRS = (".git", ".github")


def is_manifest(name):
    return name.endswith(MANIFEST_EXTENSIONS) or name in KUSTOMIZATION_NAMES


def walk_files(top):
    """Relative paths of the manifests under top, sorted."""
    found = []
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if is_manifest(name):
                found.append(os.path.relpath(os.path.join(root, name), top))
    return sorted(found)


def kustomization_in(directory):
    for name in KUSTOMIZATION_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def local_entries(kustomization_path):
    """The local directories a kustomization includes (resources, components, bases)."""
    try:
        with open(kustomization_path) as f:
            document = yaml.safe_load(f) or {}
    except yaml.YAMLError:
        return []
    entries = []
    for key in ("resources", "components", "bases"):
        for entry in document.get(key) or []:
            if isinstance(entry, str) and "://" not in entry and "?ref=" not in entry:
                entries.append(entry)
    return entries


def remote_entries(kustomization_path):
    """The remote resources a kustomization names (URLs, go-getter paths)."""
    try:
        with open(kustomization_path) as f:
            document = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [
        e
        for key in ("resources", "components", "bases")
        for e in document.get(key) or []
        if isinstance(e, str) and ("://" in e or "?ref=" in e)
    ]


def roots(tree):
    """Kustomization directories (relative to tree) that no other one includes."""
    dirs = sorted(
        os.path.relpath(root, tree)
        for root, subdirs, _ in os.walk(tree)
        if kustomization_in(root) and not any(p in SKIPPED_DIRS for p in root.split(os.sep))
    )
    included = set()
    for d in dirs:
        for entry in local_entries(kustomization_in(os.path.join(tree, d))):
            target = os.path.normpath(os.path.join(d, entry))
            if os.path.isdir(os.path.join(tree, target)):
                included.add(target)
    return [d for d in dirs if d not in included], set(dirs)


def under_kustomization(rel_file, kustomization_dirs):
    parts = os.path.dirname(rel_file).split(os.sep)
    for i in range(len(parts), -1, -1):
        d = os.path.join(*parts[:i]) if i else "."
        if os.path.normpath(d) in kustomization_dirs:
            return True
    return False


def kubectl_kustomize(directory):
    """The build's YAML, or the error's last line."""
    result = subprocess.run(["kubectl", "kustomize", directory], capture_output=True, text=True)
    if result.returncode == 0:
        return result.stdout, None
    lines = [l.strip() for l in result.stderr.splitlines()]
    errors = [l for l in lines if "error" in l.lower() and not l.startswith("E")]
    return None, (errors[-1] if errors else " ".join(lines)[-300:]) or "failed"


def render(name, source=None):
    fixture = os.path.join(FIXTURES, name)
    raw = os.path.join(fixture, "raw")
    tree = source or raw
    out = os.path.join(fixture, "rendered")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    # Roots of what was vendored, built from the source (which has the generators' inputs).
    root_dirs, kustomization_dirs = roots(raw)
    failures = []
    built = 0
    pending = list(root_dirs)
    seen = set()
    while pending:
        d = pending.pop(0)
        if d in seen:
            continue
        seen.add(d)
        output, error = kubectl_kustomize(os.path.join(tree, d))
        if error is not None:
            remote = remote_entries(kustomization_in(os.path.join(raw, d)))
            if remote:
                error = f"includes remote resources, which are not fetched offline ({remote[0]})"
            elif "no such host" in error or "unable to access" in error:
                error = "includes something remote (a base's remote resources), which is not fetched offline"
            failures.append(f"{d}: {error}")
            # What it includes may still build on its own (remote resources elsewhere).
            for entry in local_entries(kustomization_in(os.path.join(raw, d))):
                target = os.path.normpath(os.path.join(d, entry))
                if kustomization_in(os.path.join(raw, target)):
                    pending.append(target)
            continue
        target = os.path.join(out, d, "kustomize-build.yaml")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(f"# kubectl kustomize {d} (kustomize v5), written by scripts/gitops-fixtures.py\n")
            f.write(output)
        built += 1
    for rel in walk_files(raw):
        if under_kustomization(rel, kustomization_dirs):
            continue
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(raw, rel), target)
    if failures:
        with open(os.path.join(out, "NOT-RENDERED.txt"), "w") as f:
            f.write("Kustomization directories kubectl kustomize could not build offline\n")
            f.write("(what they include is rendered on its own where it builds):\n")
            for line in failures:
                f.write(line + "\n")
    print(f"{name}: {built} kustomization builds, {len(failures)} failed")


def vendor(name, source, url, commit, license_id, subdirs):
    if license_id not in ALLOWED_LICENSES:
        sys.exit(f"{license_id}: only {', '.join(ALLOWED_LICENSES)} repositories may be vendored")
    fixture = os.path.join(FIXTURES, name)
    raw = os.path.join(fixture, "raw")
    shutil.rmtree(raw, ignore_errors=True)
    os.makedirs(raw)
    tops = subdirs or ["."]
    copied = 0
    for top in tops:
        for rel in walk_files(os.path.join(source, top)):
            path = os.path.normpath(os.path.join(top, rel))
            target = os.path.join(raw, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(source, path), target)
            copied += 1
    for notice in ("LICENSE", "NOTICE"):
        if os.path.isfile(os.path.join(source, notice)):
            shutil.copyfile(os.path.join(source, notice), os.path.join(fixture, notice))
    what = ", ".join(f"`{t}/`" for t in subdirs) if subdirs else "the whole repository"
    with open(os.path.join(fixture, "README.md"), "w") as f:
        f.write(
            f"# {name}\n\n"
            f"- Source: {url}\n"
            f"- Commit: `{commit}`\n"
            f"- License: {license_id} (`LICENSE` next to this file, copied from the repository)\n"
            f"- Copied: the manifests (`*.yaml`, `*.yml`, `*.json`, kustomization files) of {what},"
            f" {copied} files, unchanged, into `raw/`; nothing else (no code, workflows or docs).\n"
            f"- `rendered/`: written by `scripts/gitops-fixtures.py` from the checkout at that commit:"
            f" `kubectl kustomize` of every root kustomization directory, plain manifests copied as they are"
            f" (see the script's header; `NOT-RENDERED.txt` lists what did not build offline).\n"
            f"- Expected findings: `tests/golden/gitops/{name}.raw.txt` and `.rendered.txt`"
            f" (`FLUXGATE_UPDATE_GOLDEN=1 cargo test --test gitops` rewrites them).\n"
        )
    render(name, source)


def main(argv):
    if len(argv) >= 7 and argv[1] == "vendor":
        vendor(argv[2], argv[3], argv[4], argv[5], argv[6] if len(argv) > 6 else "", argv[7:])
    elif len(argv) in (3, 4) and argv[1] == "render":
        render(argv[2], argv[3] if len(argv) == 4 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
