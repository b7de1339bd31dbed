"""Faults around a running server: the broker unreachable for 30 s; the broker restarted mid-stream; a
push-query client that reads nothing; a read-only data directory.

The server reaches the broker only through a TCP proxy this test controls (the broker advertises the proxy's
address, so every connection goes through it). A stateless CSAS and a windowed CTAS run exactly-once while
input keeps arriving; the proxy then cuts every connection and refuses new ones for 30 s, and lets them through
again (the test's producer waits out the outage too). Expected: the server stays up, the queries come back
by themselves (their consumers rejoin, the producer delivers what waited), and the output is exactly what the
input gives — nothing lost, nothing twice, every window exact — with both queries RUNNING at the end.

The broker restarted (by hand; needs `pip install "moto[server]"`): nisshi keeps its topics and groups in an
S3 bucket (its dynostore engine) that a moto server holds, so a restarted broker has everything it
acknowledged. While exactly-once queries work through the first half of the input, the broker is stopped for
`--outage` seconds and started again; the second half comes after. Expected: the server stays up, the
queries come back by themselves and stay RUNNING, the output is exact.

The data directory on a read-only filesystem: without a cluster (the local broker would keep its topics there)
the server refuses to start and names the directory; with one, the server writes nothing locally and runs
exactly-once queries as usual.

A push query whose client reads nothing: the server's buffer for it is bounded, and after 60 s without a read
the query is closed with an error line the client sees when it reads again; the server's memory does not grow
with the rows the client does not take, and other clients are served meanwhile.

    python tests/e2e/test_faults.py --server-bin target/release/eddy-server [--records 200000] [--outage 30]
        [--only test_broker_unreachable|test_broker_restart|test_slow_push_client|test_read_only_data_dir ...]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from test_e2e import Server, free_port
from test_exactly_once import PARTITIONS, check_output, produce
from test_hostile import ksql, query_stats


class Proxy:
    """A TCP proxy from a local port to `target`; `cut()` drops every connection and refuses new ones until
    `heal()`."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.open = True
        self.conns = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def heal(self):
        self.open = True


class ProxiedBroker:
    """nisshi on a port of its own, advertising the proxy's address."""

    def __init__(self, data):
        self.port = free_port()
        self.proxy = Proxy(self.port)
        self.direct = f"127.0.0.1:{self.port}"
        self.bootstrap = f"127.0.0.1:{self.proxy.port}"
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.proc = subprocess.Popen(
            ["nisshi", "broker", "--listener-url", f"tcp://{self.direct}",
             "--advertised-listener-url", f"tcp://{self.bootstrap}", "--storage-engine", "memory://nisshi/",
             "--group-initial-rebalance-delay", "100ms"],
            cwd=data, env=env, stdout=open(os.path.join(data, "broker.log"), "w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class RestartableBroker:
    """nisshi keeping its data in an S3 bucket of a moto server, so that it can be stopped and started again
    with everything it acknowledged."""

    def __init__(self, data):
        import urllib.request
        s3 = free_port()
        self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(s3)], cwd=data,
                                     stdout=open(os.path.join(data, "moto.log"), "w"), stderr=subprocess.STDOUT)
        wait_for_port(s3)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{s3}/nisshi", method="PUT"))
        self.data = data
        self.port = free_port()
        self.bootstrap = self.direct = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.env.update(AWS_ENDPOINT=f"http://127.0.0.1:{s3}", AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                        AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.proc = subprocess.Popen(
            ["nisshi", "broker", "--listener-url", f"tcp://{self.direct}", "--advertised-listener-url",
             f"tcp://{self.direct}", "--storage-engine", "s3://nisshi/", "--group-initial-rebalance-delay", "100ms"],
            cwd=self.data, env=self.env, stdout=open(os.path.join(self.data, f"broker-{self.starts}.log"), "w"),
            stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)

    def close(self):
        if self.proc.poll() is None:
            self.stop()
        self.moto.terminate()
        self.moto.wait(timeout=10)


def wait_for_port(port):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def exactly_once_queries(url, commit_interval_ms=None):
    """The input stream, an exactly-once copy and a windowed count and sum over it, reading from the start."""
    ksql(url, "CREATE STREAM eo_in (k STRING KEY, seq BIGINT, v INT) "
              f"WITH (kafka_topic='eo_in', value_format='JSON', partitions={PARTITIONS});")
    props = {"auto.offset.reset": "earliest"}
    ksql(url, "CREATE STREAM eo_copy AS SELECT k, seq, v FROM eo_in;", props)
    window_props = dict(props)
    if commit_interval_ms:
        window_props["ksql.streams.commit.interval.ms"] = str(commit_interval_ms)
    ksql(url, "CREATE TABLE eo_windows AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM eo_in "
              "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k EMIT CHANGES;", window_props)


def test_broker_restart(server_bin, records, outage):
    """The broker stopped for `outage` seconds and started again with its data, under exactly-once queries."""
    try:
        import moto  # noqa: F401
    except ImportError:
        print('   SKIP: needs moto\'s S3 server (pip install "moto[server]")')
        return True
    return scenario(broker_restart, RestartableBroker)(server_bin, records, outage)


def broker_restart(server_bin, records, outage, data, broker, servers):
    server = Server(os.path.abspath(server_bin), broker.bootstrap, data, f"restart{os.getpid()}_",
                    ["--processing-guarantee", "exactly_once_v2"])
    servers.append(server)
    pid = server.proc.pid
    half = records // 2
    produce(broker.bootstrap, "eo_in", half)
    exactly_once_queries(server.url, commit_interval_ms=200)
    # Mid-stream: once both queries have consumed some of the input.
    deadline = time.time() + 60
    while time.time() < deadline:
        stats = query_stats(server.url)
        if len(stats) == 2 and all(0 < d["statistics"]["consumed"] < half for d in stats.values()):
            break
        time.sleep(0.05)
    moved = {s: d["statistics"]["consumed"] for s, d in query_stats(server.url).items()}
    broker.stop()
    print(f"   the broker is stopped for {outage} s (consumed so far: {moved})")
    time.sleep(outage)
    assert server.proc.poll() is None, "the server stayed up while the broker was down"
    broker.start()
    produce(broker.bootstrap, "eo_in", records, first=half)
    check_output(broker.bootstrap, records, exactly_once=True)
    states = {s: d["state"] for s, d in query_stats(server.url).items()}
    assert all(state == "RUNNING" for state in states.values()), states
    assert server.proc.poll() is None and server.proc.pid == pid, "the server stayed up"


def scenario(test, make_broker=None):
    """A fault test with a broker of its own (a proxied one unless `make_broker(data)` makes another),
    `test(server_bin, records, outage, data, broker, servers)`: a failure prints where the logs are; the servers
    it appends to `servers` and the broker are stopped either way. Returns whether it passed."""
    def run(server_bin, records, outage):
        data = tempfile.mkdtemp(prefix="eddy-faults-")
        broker = (make_broker or ProxiedBroker)(data)
        servers = []
        try:
            test(server_bin, records, outage, data, broker, servers)
            return True
        except Exception:
            traceback.print_exc()
            print(f"FAIL: logs in {data}")
            return False
        finally:
            for server in servers:
                server.stop()
            broker.close()
    run.__name__ = test.__name__
    return run


@scenario
def test_broker_unreachable(server_bin, records, outage, data, broker, servers):
    """The broker unreachable for `outage` seconds under exactly-once queries."""
    server = Server(os.path.abspath(server_bin), broker.bootstrap, data, f"faults{os.getpid()}_",
                    ["--processing-guarantee", "exactly_once_v2"])
    servers.append(server)
    pid = server.proc.pid
    url = server.url
    exactly_once_queries(url, commit_interval_ms=200)
    # The input arrives before and after the outage.
    producer = threading.Thread(target=produce, args=(broker.direct, "eo_in", records, 5.0 + outage + 10.0))
    producer.start()
    time.sleep(5)
    broker.proxy.cut()
    print(f"   the broker is unreachable for {outage} s")
    time.sleep(outage)
    assert server.proc.poll() is None, "the server stayed up while the broker was unreachable"
    broker.proxy.heal()
    producer.join()
    check_output(broker.direct, records, exactly_once=True)
    states = {s: d["state"] for s, d in query_stats(url).items()}
    assert all(state == "RUNNING" for state in states.values()), states
    assert server.proc.poll() is None and server.proc.pid == pid, "the server stayed up"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@scenario
def test_slow_push_client(server_bin, records, _outage, data, broker, servers):
    """A push-query client that reads nothing for over a minute."""
    server = Server(os.path.abspath(server_bin), broker.bootstrap, data, f"slow{os.getpid()}_")
    servers.append(server)
    url = server.url
    ksql(url, "CREATE STREAM slow_in (k STRING KEY, seq BIGINT, v INT) "
              f"WITH (kafka_topic='slow_in', value_format='JSON', partitions={PARTITIONS});")
    produce(broker.direct, "slow_in", records)
    before = rss_mb(server.proc.pid)
    # A client that asks for every row and never reads them.
    client = socket.create_connection(("127.0.0.1", server.port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"sql": "SELECT * FROM slow_in EMIT CHANGES;",
                       "properties": {"auto.offset.reset": "earliest"}})
    client.sendall((f"POST /query-stream HTTP/1.1\r\nHost: eddy\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    # More rows keep coming while the client reads nothing; other clients are served meanwhile.
    # (Enough of them for long enough that the buffers between fill and the client is late for 60 s.)
    more = threading.Thread(target=produce, args=(broker.direct, "slow_in", 5 * records, 90.0))
    more.start()
    peak = before
    deadline = time.time() + 100
    while time.time() < deadline:
        peak = max(peak, rss_mb(server.proc.pid))
        assert ksql(url, "SHOW STREAMS;")[0]["streams"], "another client is served"
        time.sleep(1)
    more.join()
    # The client reads again: its rows so far, then the error line, then the end of the response.
    client.settimeout(10)
    received = b""
    while True:
        try:
            chunk = client.recv(1 << 20)
        except socket.timeout:
            break
        if not chunk:
            break
        received += chunk
    client.close()
    text = received.decode(errors="replace")
    print(f"   the server's memory: {before:.0f} MB before, {peak:.0f} MB at most while the client read nothing; "
          f"the client got {len(received)} bytes")
    assert "did not read the query's rows for 60 s" in text, text[-500:]
    assert peak - before < 200, f"memory grew by {peak - before:.0f} MB"
    assert server.proc.poll() is None, "the server stayed up"


@scenario
def test_read_only_data_dir(server_bin, records, _outage, data, broker, servers):
    """The data directory on a read-only filesystem (mounting one needs root)."""
    ro = os.path.join(data, "read-only")
    os.makedirs(ro)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], capture_output=True)
    if mounted.returncode != 0:
        print(f"   SKIP: cannot mount a read-only filesystem (needs root): {mounted.stderr.decode().strip()}")
        return
    try:
        # Without a cluster the server would keep the local broker's topics there: it refuses to start, and
        # says why and where.
        alone = subprocess.run([os.path.abspath(server_bin), "--listen", f"127.0.0.1:{free_port()}",
                                "--data-dir", ro], capture_output=True, timeout=60)
        said = (alone.stdout + alone.stderr).decode(errors="replace")
        assert alone.returncode != 0, f"the server started on a read-only data directory: {said}"
        assert "is not writable" in said and ro in said, said
        reason = next(line for line in said.splitlines() if "is not writable" in line)
        print(f"   without a cluster: refused to start ({reason.strip()[:160]})")
        # With a cluster given the server keeps nothing locally: it runs as usual.
        server = Server(os.path.abspath(server_bin), broker.bootstrap, ro, f"ro{os.getpid()}_",
                        ["--processing-guarantee", "exactly_once_v2"], log_dir=data)
        servers.append(server)
        exactly_once_queries(server.url)
        produce(broker.direct, "eo_in", records)
        check_output(broker.direct, records, exactly_once=True)
        assert not os.listdir(ro)
    finally:
        for server in servers:
            server.stop()
        subprocess.run(["umount", ro])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--only", action="append", help="run only the tests with these names (repeatable)")
    args = ap.parse_args()
    failed = 0
    for test in (test_broker_unreachable, test_broker_restart, test_slow_push_client, test_read_only_data_dir):
        if args.only and test.__name__ not in args.only:
            continue
        started = time.time()
        ok = test(args.server_bin, args.records, args.outage)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {test.__name__} ({time.time() - started:.1f}s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
