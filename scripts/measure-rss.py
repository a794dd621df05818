#!/usr/bin/env python3
"""Peak memory (VmHWM) of `webhookd serve` and `webhookd work` under load, for sizing the
Kubernetes resource requests and limits (deploy/kubernetes, deploy/README.md "Sizing").

    scripts/measure-rss.py [--binary target/release/webhookd] [--events 20000] [--delay-ms 200]

Runs everything on loopback: a scratch database `webhookd_rss` on the PostgreSQL at
$DATABASE_URL (default postgres://postgres@127.0.0.1:5432/webhookd; created by `webhookd
migrate`, dropped at the end with psql), 16 slow partners (one asyncio server on 16 ports, each
answering 200 with a 4 KiB body after --delay-ms), `serve` and `work` with the settings of
deploy/kubernetes/configmap.yaml. 16 partners x DELIVERY_HOST_CONCURRENCY (32) >= WORKER_COUNT
x WORKER_BATCH_SIZE (500), so the worker can hold its full 500 calls in flight.

Load: --events events submitted with POST /webhooks/batch (1000 per request, 4 clients at once),
then 16 clients posting single events for 10 s, while the worker drains the queue. The peak RSS
of each process is read from /proc/<pid>/status (VmHWM) after the queue is drained; short-lived
commands (migrate, probe) are measured with GNU time (/usr/bin/time, Debian package `time`). Bounded: it gives up after
--deadline seconds and always stops what it started.
"""

import argparse
import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGMAP = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
API_PORT = 18080
PARTNER_PORTS = range(19100, 19116)


def configmap_env():
    """The `data:` entries of the ConfigMap (flat `KEY: "value"` lines)."""
    env, in_data = {}, False
    for line in CONFIGMAP.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_data = line.rstrip() == "data:"
            continue
        if in_data:
            key, _, value = line.strip().partition(":")
            env[key] = value.strip().strip('"')
    return env


def vm(pid, field):
    """A /proc/<pid>/status field in MiB (VmHWM: peak resident set, VmRSS: current)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def cpu_seconds(pid):
    """User + system CPU time a process has used so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd, env):
    """Runs a short command; returns (exit code, peak RSS in MiB). GNU time reports the peak of
    the command alone (wait4 on a child forked from this Python would count Python's pages)."""
    with tempfile.NamedTemporaryFile("r") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"  {' '.join(cmd[1:])}: exit {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
        lines = out.read().split()
        return proc.returncode, int(lines[-1]) / 1024


async def partner(delay):
    """Slow partners: every request on every port answers 200 after `delay` seconds, with a
    body of RESPONSE_BODY_LIMIT (4 KiB) bytes, the most a worker keeps of one."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + b"k" * 4096

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                await asyncio.sleep(delay)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, "127.0.0.1", p, backlog=512) for p in PARTNER_PORTS]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{API_PORT}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def event(config_ids, n, tag):
    return {"event_type": "+credit", "event_id": f"{tag}-{n}", "config_id": config_ids[n % len(config_ids)],
            "url_params": {"user_id": f"user_{n}", "value": str(n % 1000), "token": "t0k3n"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "target" / "debug" / "webhookd"))
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--deadline", type=int, default=600, help="give up after this many seconds")
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/webhookd")
    parts = urllib.parse.urlsplit(base)
    db_url = urllib.parse.urlunsplit(parts._replace(path="/webhookd_rss"))
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))

    def drop_scratch():
        subprocess.run(["psql", "-Xq", "-d", admin_url, "-c", "DROP DATABASE IF EXISTS webhookd_rss WITH (FORCE)"],
                       check=False, stderr=subprocess.DEVNULL)

    drop_scratch()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **configmap_env(),
           "DATABASE_URL": db_url, "SERVER_ADDR": f"127.0.0.1:{API_PORT}",
           "OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32", "LOG_LEVEL": "warn"}
    binary = args.binary
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} does not exist: cargo build --bin webhookd (--release for the image's build)")
    print(f"binary {binary}, {args.events} events, partners answer after {args.delay_ms} ms")
    print("settings: " + ", ".join(f"{k}={env[k]}" for k in
                                   ("WORKER_COUNT", "WORKER_BATCH_SIZE", "DELIVERY_HOST_CONCURRENCY",
                                    "DATABASE_MAX_CONNECTIONS")))
    results = {}
    code, results["migrate"] = run_measured([binary, "migrate"], env)
    if code != 0:
        sys.exit("migrate failed")

    threading.Thread(target=lambda: asyncio.run(partner(args.delay_ms / 1000)), daemon=True).start()
    logs = {name: open(f"/tmp/webhookd-rss-{name}.log", "w") for name in ("serve", "work")}
    procs = {name: subprocess.Popen([binary, name], env=env, stdout=subprocess.DEVNULL, stderr=logs[name])
             for name in ("serve", "work")}
    started = time.monotonic()
    try:
        while run_measured([binary, "probe", "--url", f"http://127.0.0.1:{API_PORT}/health"], env)[0] != 0:
            if time.monotonic() - started > 30:
                sys.exit("serve did not become healthy within 30 s")
            time.sleep(0.2)
        idle = {name: vm(p.pid, "VmRSS") for name, p in procs.items()}

        config_ids = []
        for port in PARTNER_PORTS:
            status, body = api("POST", "/webhook-configs",
                               {"name": f"rss-{port}", "postback_url": f"http://127.0.0.1:{port}/pb?uid={{user_id}}"})
            assert status == 201, (status, body)
            config_ids.append(body["id"])

        # Batches, 4 clients at once.
        batches = [list(range(i, min(i + 1000, args.events))) for i in range(0, args.events, 1000)]
        t0 = time.monotonic()

        def submit_batches(mine):
            for batch in mine:
                status, body = api("POST", "/webhooks/batch", {"events": [event(config_ids, n, "b") for n in batch]})
                assert status == 200, (status, str(body)[:300])

        clients = [threading.Thread(target=submit_batches, args=(batches[i::4],)) for i in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        batch_secs = time.monotonic() - t0

        # Single submits, 16 clients for 10 s.
        singles = [0] * 16
        stop_at = time.monotonic() + 10

        def submit_singles(k):
            n = 0
            while time.monotonic() < stop_at:
                status, _ = api("POST", "/webhooks", event(config_ids, k * 1_000_000 + n, "s"))
                assert status == 201, status
                n += 1
            singles[k] = n

        clients = [threading.Thread(target=submit_singles, args=(k,)) for k in range(16)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        total = args.events + sum(singles)
        print(f"submitted {args.events} events in {batch_secs:.1f} s (batches) "
              f"and {sum(singles)} single events in 10 s ({sum(singles) / 10:.0f}/s)")

        peak_rss = dict(idle)
        while True:
            for name, p in procs.items():
                peak_rss[name] = max(peak_rss[name], vm(p.pid, "VmRSS"))
            proc = subprocess.run([binary, "stats", "--json"], env=env, capture_output=True, text=True)
            completed = json.loads(proc.stdout)["by_status"]["completed"]
            if completed >= total:
                break
            if time.monotonic() - started > args.deadline:
                sys.exit(f"only {completed} of {total} delivered within {args.deadline} s")
            time.sleep(1)
        drain_secs = time.monotonic() - t0
        print(f"all {total} delivered {drain_secs:.1f} s after the first submit ({total / drain_secs:.0f}/s)")

        for name, p in procs.items():
            results[name] = vm(p.pid, "VmHWM")
        cpu = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        _, results["probe (http)"] = run_measured(
            [binary, "probe", "--url", f"http://127.0.0.1:{API_PORT}/health"], env)
        _, results["probe --database"] = run_measured([binary, "probe", "--database"], env)

        exits = {}
        for name, p in procs.items():
            p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            exits[name] = p.wait(timeout=60)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        drop_scratch()

    print()
    print(f"{'process':<18} {'idle RSS':>9} {'peak RSS (VmHWM)':>17}")
    for name, peak in results.items():
        idle_text = f"{idle[name]:.1f}" if name in idle else "-"
        print(f"{name:<18} {idle_text:>9} {peak:>13.1f} MiB")
    print("CPU used under load: " + ", ".join(
        f"{name} {secs:.1f} s = {secs / drain_secs:.2f} cores on average" for name, secs in cpu.items()))
    print(f"sampled VmRSS max: serve {peak_rss['serve']:.1f} MiB, work {peak_rss['work']:.1f} MiB")
    print(f"exit codes after SIGTERM: serve {exits['serve']}, work {exits['work']}")
    sys.exit(0 if all(code == 0 for code in exits.values()) else 1)


if __name__ == "__main__":
    main()
