#!/usr/bin/env python3
"""Hostile load on loopback: each attack from docs/RELIABILITY.md beside a steady trickle of
normal reviews, against a running `fluxgate serve` (started by scripts/hostile-load.sh).

For each attack it prints the normal reviews' p50/p99 latency and failures, how many /healthz
probes answered (2 s timeout, as the Deployment's liveness probe), the server's peak RSS,
the most connections it held, and what the attack itself got back. Nothing is asserted: the
figures are what they are on the machine they ran on.

Every attack is bounded in count and in time, and talks to 127.0.0.1 only. The normal
reviews come from 127.0.0.2 (another peer address, as the API server is), in a process of
their own so that the attackers' work does not delay them on the client side.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import ssl
import statistics
import sys
import threading
import time

ATTACKER = "127.0.0.1"
API_SERVER = "127.0.0.2"
H2_PREFACE_AND_SETTINGS = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"


# ----------------------------------------------------------------------------------------
# Plumbing


def tls_context(ca, alpn):
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(alpn)
    return context


def https(args, source, timeout=10.0):
    connection = http.client.HTTPSConnection(
        "localhost",
        args.port,
        timeout=timeout,
        context=tls_context(args.ca, ["http/1.1"]),
        source_address=(source, 0),
    )
    # Resolve to loopback whatever /etc/hosts says.
    connection.host = "127.0.0.1"
    return connection


def post(connection, body, path="/validate"):
    connection.request(
        "POST", path, body=body, headers={"Content-Type": "application/json", "Host": "localhost"}
    )
    response = connection.getresponse()
    return response.status, response.read()


def review(obj, uid):
    api_version = obj["apiVersion"]
    group, version = api_version.rsplit("/", 1) if "/" in api_version else ("", api_version)
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": group, "version": version, "kind": obj["kind"]},
                "resource": {"group": group, "version": version, "resource": ""},
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"].get("namespace"),
                "operation": "CREATE",
                "userInfo": {"username": "attacker", "groups": ["system:authenticated"]},
                "object": obj,
                "oldObject": None,
                "dryRun": False,
            },
        },
        separators=(",", ":"),
    ).encode()


def oci_repository(identities, padding=0):
    obj = {
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "attack"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"semver": "1.x"},
            "verify": {"provider": "cosign", "matchOIDCIdentity": identities},
        },
    }
    if padding:
        obj["metadata"]["annotations"] = {"example.com/padding": "x" * padding}
    return obj


def heavy_identities(count, salt):
    # Patterns like the adversarial review's: Unicode classes in nested bounded repetitions,
    # each distinct, so that none is in the memo.
    return [
        {
            "issuer": r"^https://gitlab\.com$",
            "subject": r"^https://gitlab\.com/(?:\w{1,20}[\pL\pN]{1,9}){1,4}x" + f"{salt}-{i}$",
        }
        for i in range(count)
    ]


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def get_plain(port, path, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode(errors="replace")


# ----------------------------------------------------------------------------------------
# The observers: normal reviews, probes, memory


def trickle(args, stop, results):
    """Normal reviews at a steady rate from another address, over one keep-alive connection."""
    body = open(args.normal_body, "rb").read()
    latencies, failures, sent = [], {}, 0
    connection = None
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.05))
            continue
        next_at += interval
        sent += 1
        started = time.monotonic()
        try:
            if connection is None:
                connection = https(args, API_SERVER, timeout=10.0)
            status, answer = post(connection, body)
            elapsed = time.monotonic() - started
            allowed = status == 200 and json.loads(answer)["response"]["allowed"] is True
            if not allowed:
                failures[str(status)] = failures.get(str(status), 0) + 1
            elif elapsed > 5.0:
                # The shipped webhook's timeoutSeconds: the API server has given up.
                failures["over 5 s"] = failures.get("over 5 s", 0) + 1
            latencies.append(elapsed)
        except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
            kind = type(e).__name__
            failures[kind] = failures.get(kind, 0) + 1
            connection = None
    results.put(("trickle", {"sent": sent, "latencies": latencies, "failures": failures}))


def prober(args, pid, stop, results):
    """/healthz every 250 ms with the liveness probe's 2 s timeout; RSS every 20 ms; open
    connections from /metrics every 250 ms."""
    healthz_ok = healthz_total = 0
    peak_rss = 0
    peak_connections = 0
    next_probe = 0.0
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        peak_rss = max(peak_rss, int(line.split()[1]))
        except OSError:
            pass
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + 0.25
            healthz_total += 1
            try:
                status, _ = get_plain(args.metrics_port, "/healthz", 2.0)
                healthz_ok += status == 200
            except Exception:  # noqa: BLE001
                pass
            try:
                status, text = get_plain(args.metrics_port, "/metrics", 2.0)
                open_now = metric(text, "fluxgate_connections_open")
                if open_now is not None:
                    peak_connections = max(peak_connections, int(open_now))
            except Exception:  # noqa: BLE001
                pass
        time.sleep(0.02)
    results.put(
        (
            "prober",
            {
                "healthz_ok": healthz_ok,
                "healthz_total": healthz_total,
                "peak_rss_kib": peak_rss,
                "peak_connections": peak_connections,
            },
        )
    )


# ----------------------------------------------------------------------------------------
# The attacks. Each returns a short description of what it got back.


def count(statuses, key):
    statuses[key] = statuses.get(key, 0) + 1


def senders(args, workers, make_body, deadline, path="/validate"):
    """`workers` threads posting bodies until the deadline (each waits for its answer)."""
    statuses, sizes, lock = {}, [], threading.Lock()

    def run(worker):
        connection = None
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = make_body(worker, n)
            try:
                if connection is None:
                    connection = https(args, ATTACKER, timeout=30.0)
                status, answer = post(connection, body, path)
                with lock:
                    count(statuses, status)
                    sizes.append(len(answer))
                if status != 200:
                    connection = None
            except Exception as e:  # noqa: BLE001
                with lock:
                    count(statuses, type(e).__name__)
                connection = None

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"answers {dict(sorted(statuses.items(), key=str))}, largest answer {max(sizes, default=0)} bytes"


def attack_regex_heavy(args, deadline):
    """Two clients, each review 3,500 distinct heavy identity patterns (~400 KiB)."""
    return senders(
        args,
        2,
        lambda w, n: review(oci_repository(heavy_identities(3500, f"{w}-{n}-{time.time_ns()}")), f"heavy-{w}-{n}"),
        deadline,
    )


def attack_huge_body(args, deadline):
    """Two clients, each review just under --max-body-bytes of heavy patterns (~70,000)."""
    limit = args.max_body_bytes - 4096

    def body(w, n):
        salt = f"{w}-{n}-{time.time_ns()}"
        count = limit // (len(json.dumps(heavy_identities(1, salt)[0])) + 1)
        while True:
            body = review(oci_repository(heavy_identities(count, salt)), f"huge-{w}-{n}")
            if len(body) <= limit:
                return body
            # Later patterns have longer numbers: shrink by what is over, and a little more.
            count -= (len(body) - limit) * count // len(body) + 20

    return senders(args, 2, body, deadline)


def attack_broad_flood(args, deadline):
    """60,000 short distinct broad patterns (~2.5 MiB): amplification into the answer and log."""
    log_before = os.path.getsize(args.log) if args.log else 0

    def body(w, n):
        salt = f"{w}{n}{time.time_ns() % 100000}"
        identities = [{"issuer": f"g{i}", "subject": f"s{salt}{i}"} for i in range(30000)]
        return review(oci_repository(identities), f"broad-{w}-{n}")

    outcome = senders(args, 1, body, deadline)
    if args.log:
        grown = os.path.getsize(args.log) - log_before
        outcome += f", log grew {grown / 1024:.0f} KiB"
    return outcome


def attack_large_concurrent(args, deadline):
    """Eight clients at once, each a 2.7 MiB review (one identity, a large annotation)."""
    identities = [{"issuer": r"^https://gitlab\.com$", "subject": r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$"}]
    big = review(oci_repository(identities, padding=int(2.7 * 1024 * 1024)), "large")
    return senders(args, 8, lambda w, n: big, deadline)


def attack_slow_bodies(args, deadline):
    """40 connections, each declaring a body of --max-body-bytes and sending 1 KiB a second."""
    statuses, lock = {}, threading.Lock()

    def run(i):
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=5, source_address=(ATTACKER, 0))
            t = tls_context(args.ca, ["http/1.1"]).wrap_socket(s, server_hostname="localhost")
            t.sendall(
                (
                    "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {args.max_body_bytes}\r\n\r\n"
                ).encode()
            )
            t.settimeout(0.05)
            while time.monotonic() < deadline:
                t.sendall(b" " * 1024)
                try:
                    data = t.recv(4096)
                    if data:
                        with lock:
                            count(statuses, data.split(b" ", 2)[1].decode())
                        return
                    with lock:
                        count(statuses, "closed")
                    return
                except socket.timeout:
                    pass
                time.sleep(1.0)
            with lock:
                count(statuses, "still sending")
            t.close()
        except Exception as e:  # noqa: BLE001
            with lock:
                count(statuses, type(e).__name__)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"connections ended with {dict(sorted(statuses.items()))}"


def hold_h2(args, sockets, stop_at, limit):
    """Opens HTTP/2 connections (preface and SETTINGS, then nothing) until `limit` or `stop_at`."""
    refused = 0
    context = tls_context(args.ca, ["h2"])
    while len(sockets) + refused < limit and time.monotonic() < stop_at:
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=5, source_address=(ATTACKER, 0))
            t = context.wrap_socket(s, server_hostname="localhost")
            t.sendall(H2_PREFACE_AND_SETTINGS)
            t.setblocking(False)
            sockets.append(t)
        except Exception:  # noqa: BLE001
            refused += 1
    return refused


def still_open(sockets):
    """Connections the server has not closed (it answers PINGs we never acknowledge)."""
    open_now = 0
    for t in sockets:
        try:
            while True:
                data = t.recv(65536)
                if not data:
                    break
        except (ssl.SSLWantReadError, BlockingIOError):
            open_now += 1
        except Exception:  # noqa: BLE001
            pass
    return open_now


def attack_h2_idle(args, deadline):
    """300 HTTP/2 connections that send their preface and SETTINGS and nothing else, held."""
    sockets = []
    refused = hold_h2(args, sockets, deadline, 300)
    opened = len(sockets)
    checkpoints = []
    while time.monotonic() < deadline:
        time.sleep(5)
        checkpoints.append(still_open(sockets))
    for t in sockets:
        t.close()
    return f"opened {opened}, refused {refused}, still open every 5 s: {checkpoints}"


def attack_conn_flood(args, deadline):
    """One client opens HTTP/2 connections as fast as it can, up to 4,096, and holds them."""
    sockets = []
    refused = hold_h2(args, sockets, deadline, 4096)
    opened = len(sockets)
    held = still_open(sockets)
    while time.monotonic() < deadline:
        time.sleep(0.5)
    held_at_end = still_open(sockets)
    for t in sockets:
        t.close()
    return f"accepted {opened}, refused {refused}; held after the flood {held}, at the end {held_at_end}"


def attack_oversize_http1(args, deadline):
    """HTTP/1.1 bodies over --max-body-bytes without Expect: 100-continue; write all, then read."""
    statuses = {}
    size = args.max_body_bytes + (1 << 20)
    sent = 0
    while time.monotonic() < deadline and sent < 10:
        sent += 1
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10, source_address=(ATTACKER, 0))
            t = tls_context(args.ca, ["http/1.1"]).wrap_socket(s, server_hostname="localhost")
            t.sendall(
                (
                    "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {size}\r\n\r\n"
                ).encode()
            )
            t.sendall(b" " * size)
            data = t.recv(4096)
            count(statuses, data.split(b" ", 2)[1].decode() if data else "closed")
            t.close()
        except Exception as e:  # noqa: BLE001
            count(statuses, type(e).__name__)
    return f"{sent} bodies of {size} bytes: {dict(sorted(statuses.items()))}"


def attack_none(args, deadline):
    """No attack: the trickle alone."""
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return "-"


ATTACKS = {
    "quiet": attack_none,
    "regex-heavy": attack_regex_heavy,
    "huge-body": attack_huge_body,
    "broad-flood": attack_broad_flood,
    "large-concurrent": attack_large_concurrent,
    "slow-bodies": attack_slow_bodies,
    "h2-idle": attack_h2_idle,
    "conn-flood": attack_conn_flood,
    "oversize-http1": attack_oversize_http1,
}

# h2-idle needs to outlast the server's idle timeout (30 s by default) to show it.
LONGER = {"h2-idle": 45}


def run_attack(name, fn, args, deadline, results):
    results.put(("attack", fn(args, deadline)))


def measure(name, args):
    duration = LONGER.get(name, args.duration) if args.duration_override is None else args.duration_override
    results = mp.Queue()
    stop = mp.Event()
    observers = [
        mp.Process(target=trickle, args=(args, stop, results)),
        mp.Process(target=prober, args=(args, args.pid, stop, results)),
    ]
    for p in observers:
        p.start()
    time.sleep(1.0)  # the trickle's connection is up before the attack starts
    deadline = time.monotonic() + duration
    attacker = mp.Process(target=run_attack, args=(name, ATTACKS[name], args, deadline, results))
    attacker.start()
    attacker.join(duration + 120)
    if attacker.is_alive():
        attacker.terminate()
    stop.set()
    got = {}
    while len(got) < 3:
        try:
            key, value = results.get(timeout=30)
            got[key] = value
        except Exception:  # noqa: BLE001 - a process that died reports nothing
            break
    for p in observers:
        p.join(30)
    return got


def report(name, got):
    t = got.get("trickle", {})
    p = got.get("prober", {})
    latencies = sorted(t.get("latencies", []))
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        lat = f"p50 {p50:6.1f} ms  p99 {p99:7.1f} ms"
    else:
        lat = "no answers"
    failures = t.get("failures", {})
    failed = sum(failures.values())
    print(f"== {name}")
    print(
        f"   normal reviews: {t.get('sent', 0)} sent, {failed} failed {failures if failures else ''}; {lat}"
    )
    print(
        f"   /healthz: {p.get('healthz_ok', 0)}/{p.get('healthz_total', 0)} answered;"
        f" peak RSS {p.get('peak_rss_kib', 0) / 1024:.1f} MiB; connections held (server) up to {p.get('peak_connections', 0)}"
    )
    print(f"   attack: {got.get('attack', 'did not report')}")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server's process, for its RSS")
    parser.add_argument("--log", help="the server's log file, to see what an attack writes")
    parser.add_argument("--normal-body", required=True)
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--rate", type=float, default=20.0, help="normal reviews a second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per attack")
    parser.add_argument("--duration-override", type=float, help="seconds for every attack, h2-idle too")
    parser.add_argument("--only", help="comma-separated attack names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ATTACKS)
    for name in names:
        if name not in ATTACKS:
            sys.exit(f"unknown attack {name}; known: {', '.join(ATTACKS)}")
    for name in names:
        report(name, measure(name, args))
        time.sleep(2.0)  # let the server settle between attacks


if __name__ == "__main__":
    main()
