"""Eddy against a secured Kafka, configured as a ksqlDB user configures ksqlDB: a `ksql-server.properties`
file with Java client property names.

The broker (nisshi) listens with TLS only, with a certificate signed by a CA this test makes (openssl).
- Over TLS: the server's file says `security.protocol=SSL` and names the CA as a PEM truststore; a stream
  is created, 2,000 records produced over TLS, a CSAS filters them, and the output read over TLS is exactly
  the expected records; a push query returns rows; a client setting for producers only
  (`ksql.streams.producer.linger.ms`) and a Kafka Streams setting Eddy has no use for
  (`ksql.streams.num.stream.threads`) are taken.
- A plugin reads its `ksql.functions.<name>.<key>` setting from the server's file.
- The Schema Registry over HTTPS with HTTP Basic credentials (`ksql.schema.registry.basic.auth.*`,
  `ksql.schema.registry.ssl.truststore.location`): a registry this test serves (a certificate from its CA,
  401 without the credentials) gives the schema of an AVRO stream created without columns.
- SASL: this broker build cannot hold SASL users, so the test shows the SASL settings reach librdkafka: with
  `SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512` and a JAAS line, the client logs in with SCRAM-SHA-512 and the
  broker refuses the handshake, which the server's log shows.
- The REST API over HTTPS with authentication (two servers of one service id, a users' file with Argon2
  hashes made by `eddy-server hash-password`, an API token): 401 without credentials, 403 for a read-only
  user's DDL, the shell with `--user` and `--ca-cert`, the PyPI ksqldb client (as far as its Basic auth
  works), a push query with a bearer token over HTTP/2, and pull queries answered by both servers, which
  call each other over HTTPS with the shared `eddy.internal.secret`; their logs are JSON lines, a query's
  lines with its id as a field.
- Refusals: a misspelt key in the file stops the server at start, naming the key it probably means; a JKS
  truststore is refused with how to export it as PEM; `streamsProperties` with a misspelt key is refused
  naming the closest known one; a Kafka client setting in a request is refused (it applies to the whole
  server).

    python tests/e2e/test_security.py --server-bin target/release/eddy-server [--only NAME]
"""

import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer
from ksqldb import KSQLdbClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_e2e import ROOT, Server, free_port, post, run_each  # noqa: E402

RECORDS = 2_000


def make_certificates(folder):
    """A CA, and a broker certificate for 127.0.0.1 and localhost signed by it (PEM files)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Eddy test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=localhost")
    with open(os.path.join(folder, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.pem", "-days", "2", "-extfile", "san.cnf")
    return {name: os.path.join(folder, f"{name}.pem") for name in ["ca", "broker"]} | {
        "key": os.path.join(folder, "broker.key")}


class TlsBroker:
    def __init__(self, certs):
        self.port = free_port()
        out = subprocess.run([os.path.join(ROOT, "scripts/broker"), "start", "--port", str(self.port),
                              "--tls", certs["broker"], certs["key"]], check=True, capture_output=True, text=True)
        self.bootstrap = out.stdout.strip()

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts/broker"), "stop", "--port", str(self.port)], check=False)


class Ctx:
    pass


def write_properties(folder, name, lines):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("# as ksql-server.properties\n" + "\n".join(lines) + "\n")
    return path


def tls_client(ctx, **extra):
    return {"bootstrap.servers": ctx.broker.bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": ctx.certs["ca"], **extra}


def tls_properties(ctx):
    return [f"bootstrap.servers={ctx.broker.bootstrap}", "security.protocol=SSL",
            f"ssl.truststore.location={ctx.certs['ca']}", "ssl.truststore.type=PEM",
            "ssl.endpoint.identification.algorithm=https"]


def start_server(ctx, name, lines, extra_args=(), https_ca=None):
    data = tempfile.mkdtemp(prefix=f"eddy-security-{name}-")
    config = write_properties(data, "ksql-server.properties", lines)
    server = Server(ctx.binary, ctx.broker.bootstrap, data, f"{name}{os.getpid()}",
                    ["--config", config, *extra_args], https_ca=https_ca)
    ctx.servers.append(server)
    return server


def ksql(server, sql, props=None):
    status, body = post(server.url + "/ksql", {"ksql": sql, "streamsProperties": props or {}})
    assert status == 200, f"{sql}: {status} {body}"
    return json.loads(body)


def test_tls(ctx):
    server = start_server(ctx, "tls", tls_properties(ctx) + [
        "ksql.streams.producer.linger.ms=2", "ksql.streams.num.stream.threads=4", "ksql.service.id=ignored_by_flag"])
    ksql(server, "CREATE STREAM pings (id INT KEY, n INT, tag STRING) WITH (kafka_topic='pings', "
                 "value_format='JSON', partitions=2);")
    producer = Producer(tls_client(ctx, **{"linger.ms": 10}))
    for i in range(RECORDS):
        producer.produce("pings", json.dumps({"N": i, "TAG": "even" if i % 2 == 0 else "odd"}).encode(),
                         key=i.to_bytes(4, "big"))
    assert producer.flush(30) == 0, "not every record reached the TLS broker"
    ksql(server, "CREATE STREAM evens AS SELECT id, n FROM pings WHERE tag = 'even';",
         {"auto.offset.reset": "earliest"})
    consumer = Consumer(tls_client(ctx, **{"group.id": f"check-{time.time()}", "auto.offset.reset": "earliest"}))
    consumer.subscribe(["EVENS"])
    seen = set()
    deadline = time.time() + 60
    while len(seen) < RECORDS // 2 and time.time() < deadline:
        for m in consumer.consume(num_messages=1000, timeout=1.0):
            if not m.error():
                seen.add(json.loads(m.value())["N"])
    consumer.close()
    assert seen == set(range(0, RECORDS, 2)), f"{len(seen)} of {RECORDS // 2} records came out over TLS"
    status, body = post(server.url + "/query-stream",
                        {"sql": "SELECT n FROM pings WHERE n < 100 EMIT CHANGES LIMIT 3;",
                         "properties": {"auto.offset.reset": "earliest"}})
    assert status == 200 and len(body.strip().splitlines()) == 4, (status, body)
    # A flag wins over the file.
    with urllib.request.urlopen(server.url + "/info") as r:
        assert json.load(r)["KsqlServerInfo"]["ksqlServiceId"] == server.service_id
    log = open(os.path.join(server.data_dir, "server.log")).read()
    assert "ksql.streams.num.stream.threads has no effect" in log, log[-2000:]
    assert "Kafka client setting producer: linger.ms=2" in log, log[-2000:]
    print(f"   {len(seen)} records filtered through a TLS-only broker")


def test_plugin_setting_from_the_server_file(ctx):
    server = start_server(ctx, "plugin", tls_properties(ctx) + ["ksql.functions.greeting.word=ahoy"],
                          ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    ksql(server, "CREATE STREAM people (name STRING) WITH (kafka_topic='people', value_format='JSON', "
                 "partitions=1);")
    ksql(server, "INSERT INTO people (name) VALUES ('bob');")
    status, body = post(server.url + "/query-stream",
                        {"sql": "SELECT GREETING(name) AS g FROM people EMIT CHANGES LIMIT 1;",
                         "properties": {"auto.offset.reset": "earliest"}})
    assert status == 200 and "ahoy bob" in body, (status, body)


def test_sasl_settings_reach_librdkafka(ctx):
    data = tempfile.mkdtemp(prefix="eddy-security-sasl-")
    config = write_properties(data, "sasl.properties", [
        f"bootstrap.servers={ctx.broker.bootstrap}", "security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="eddy" password="not-in-logs";',
        f"ssl.truststore.location={ctx.certs['ca']}"])
    log_path = os.path.join(data, "server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([ctx.binary, "--config", config, "--listen", f"127.0.0.1:{free_port()}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline and "SCRAM-SHA-512 mechanism handshake failed" not in text:
            time.sleep(0.5)
            text = open(log_path).read()
        assert "SCRAM-SHA-512 mechanism handshake failed" in text, text[-3000:]
        assert "sasl.password=***" in text and "not-in-logs" not in text, text[-3000:]
    finally:
        proc.kill()
        proc.wait()



class FakeRegistry:
    """A Schema Registry over HTTPS (a certificate from the test's CA) that asks for HTTP Basic
    credentials and knows one subject: enough to see Eddy's client reach it as configured."""

    def __init__(self, certs, user, password, subject, schema):
        import base64
        import http.server
        import ssl
        import threading
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                registry.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != expected:
                    self.answer(401, b'{"error_code":401,"message":"Unauthorized"}')
                elif self.path == f"/subjects/{subject}/versions/latest":
                    self.answer(200, json.dumps({"subject": subject, "version": 1, "id": 7,
                                                 "schema": json.dumps(schema)}).encode())
                else:
                    self.answer(404, b'{"error_code":40401,"message":"Subject not found"}')

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs["broker"], certs["key"])
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def test_schema_registry_over_https_with_basic_auth(ctx):
    schema = {"type": "record", "name": "Car", "fields": [{"name": "vin", "type": "string"},
                                                          {"name": "speed", "type": "double"}]}
    registry = FakeRegistry(ctx.certs, "eddy", "sr-secret", "cars-value", schema)
    try:
        server = start_server(ctx, "registry", tls_properties(ctx) + [
            f"ksql.schema.registry.url={registry.url}",
            "ksql.schema.registry.basic.auth.credentials.source=USER_INFO",
            "ksql.schema.registry.basic.auth.user.info=eddy:sr-secret",
            f"ksql.schema.registry.ssl.truststore.location={ctx.certs['ca']}",
            "ksql.schema.registry.ssl.truststore.type=PEM"])
        ksql(server, "CREATE STREAM cars WITH (kafka_topic='cars', value_format='AVRO', partitions=1);")
        described = ksql(server, "DESCRIBE cars;")[0]["sourceDescription"]["fields"]
        assert [f["name"] for f in described] == ["VIN", "SPEED"], described
        assert registry.requests and all(auth for _, auth in registry.requests), registry.requests
        log = open(os.path.join(server.data_dir, "server.log")).read()
        assert "sr-secret" not in log, "the registry password is in the server's log"
        # Without the CA the registry's certificate is not trusted.
        untrusting = start_server(ctx, "untrusting", tls_properties(ctx) + [
            f"ksql.schema.registry.url={registry.url}", "ksql.schema.registry.basic.auth.user.info=eddy:sr-secret"])
        status, body = post(untrusting.url + "/ksql", {"ksql": "CREATE STREAM cars2 WITH (kafka_topic='cars', "
                                                              "value_format='AVRO', partitions=1);"})
        assert status != 200 and "cannot be reached" in body, (status, body)
    finally:
        registry.stop()


def refused_at_start(ctx, lines, env=None):
    data = tempfile.mkdtemp(prefix="eddy-security-refused-")
    config = write_properties(data, "bad.properties", lines)
    out = subprocess.run([ctx.binary, "--config", config, "--listen", f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ, **(env or {})))
    assert out.returncode != 0, out
    return out.stderr + out.stdout


def test_rest_api_over_https_with_authentication(ctx):
    folder = tempfile.mkdtemp(prefix="eddy-rest-security-")

    def hashed(tool, secret):
        return subprocess.run([ctx.binary, tool], input=secret, capture_output=True, text=True,
                              check=True).stdout.strip()

    token = secrets.token_hex(32)
    users = write_properties(folder, "users", [f"fred: {hashed('hash-password', 'flintstone')}, admin",
                                               f"barney: {hashed('hash-password', 'rubble')}, user"])
    tokens = write_properties(folder, "tokens", [f"ci: {hashed('hash-token', token)}, admin"])
    ca = ctx.certs["ca"]
    lines = tls_properties(ctx) + [
        "listeners=https://0.0.0.0:1", "authentication.method=BASIC",
        f"eddy.authentication.credentials.file={users}", f"eddy.authentication.tokens.file={tokens}",
        f"eddy.rest.ssl.certificate.location={ctx.certs['broker']}", f"eddy.rest.ssl.key.location={ctx.certs['key']}",
        f"eddy.rest.ssl.ca.location={ca}",
        f"eddy.internal.secret={secrets.token_hex(32)}", "eddy.log.format=json"]
    first, second = (start_server(ctx, "rest", lines, https_ca=ca) for _ in range(2))
    fred, barney = (("Basic " + base64.b64encode(pair.encode()).decode()) for pair in ["fred:flintstone", "barney:rubble"])
    import requests
    import httpx

    def call(server, path, body=None, authorization=None):
        headers = {"Authorization": authorization} if authorization else {}
        r = (requests.post(server.url + path, json=body, headers=headers, verify=ca) if body is not None
             else requests.get(server.url + path, headers=headers, verify=ca))
        return r.status_code, r.text

    for path, body in [("/info", None), ("/ksql", {"ksql": "SHOW STREAMS;"}), ("/metrics", None),
                       ("/query-stream", {"sql": "SELECT * FROM x;"})]:
        status, text = call(first, path, body)
        assert status == 401 and "40100" in text, (path, status, text)
    assert call(first, "/healthcheck")[0] == 200
    status, text = call(first, "/ksql", {"ksql": "CREATE STREAM cars (id STRING KEY, speed INT) WITH ("
                                                 "kafka_topic='fleet', value_format='JSON', partitions=4);"}, barney)
    assert status == 403 and "40300" in text, (status, text)

    # The shell: over https with a CA, a user, the password from the environment (or its prompt).
    shell = os.path.join(os.path.dirname(ctx.binary), "eddy")
    def eddy(*args, user="fred", password="flintstone"):
        return subprocess.run([shell, "--server", first.url, "--ca-cert", ca, "--user", user, *args],
                              capture_output=True, text=True, env=dict(os.environ, EDDY_PASSWORD=password))
    out = eddy("-e", "CREATE STREAM cars (id STRING KEY, speed INT) WITH (kafka_topic='fleet', "
                     "value_format='JSON', partitions=4);")
    assert out.returncode == 0, out.stderr
    out = eddy("-e", "DROP STREAM cars;", user="barney", password="rubble")
    assert out.returncode == 1 and "Forbidden" in out.stderr, (out.stdout, out.stderr)
    out = eddy("-e", "SHOW STREAMS;", password="wrong")
    assert out.returncode == 1 and "password is wrong" in out.stderr, (out.stdout, out.stderr)
    out = subprocess.run([shell, "--server", first.url, "--user", "fred", "-e", "SHOW STREAMS;"],
                         capture_output=True, text=True, env=dict(os.environ, EDDY_PASSWORD="flintstone"))
    assert out.returncode != 0, "the server's certificate is not trusted without --ca-cert"

    # The PyPI ksqldb client: its own Basic auth fails in the client (`bytes(str)` without an encoding, in
    # ksqldb 1.0.1), so the test sets the header the client meant to send; its queries send none (401).
    env = {"REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca}
    os.environ.update(env)
    try:
        try:
            KSQLdbClient(first.url, "fred", "flintstone")
            raise AssertionError("ksqldb's Basic auth was fixed: use it")
        except TypeError:
            pass
        client = KSQLdbClient(first.url)
        client.api.headers["Authorization"] = fred
        client.ksql("CREATE TABLE speeds AS SELECT id, MAX(speed) AS top FROM cars GROUP BY id EMIT CHANGES;",
                    stream_properties={"auto.offset.reset": "earliest", "ksql.streams.commit.interval.ms": "300"})
        acks = client.inserts_stream("CARS", [{"ID": f"car-{i % 10}", "SPEED": i} for i in range(100)])
        assert len(acks) == 100 and all(a.get("status") == "ok" for a in acks), acks[:3]
        lines = client.query_sync("SELECT * FROM cars;")
        assert lines[0].get("error_code") == 40100, lines[:2]
        client.api.headers["Authorization"] = barney
        try:
            client.ksql("DROP TABLE speeds;")
            raise AssertionError("a read-only user dropped a table")
        except requests.HTTPError as e:
            assert e.response.status_code == 403
    finally:
        for k in env:
            os.environ.pop(k, None)

    # A push query over HTTP/2 with an API token.
    with httpx.Client(http1=False, http2=True, verify=ssl.create_default_context(cafile=ca)) as h:
        with h.stream("POST", first.url + "/query-stream", headers={"Authorization": f"Bearer {token}"},
                      json={"sql": "SELECT id, speed FROM cars EMIT CHANGES LIMIT 5;",
                            "properties": {"auto.offset.reset": "earliest"}}, timeout=30) as r:
            rows = [json.loads(l) for l in r.iter_lines() if l.strip()]
    assert r.status_code == 200 and len(rows) == 6, rows

    # Peers over HTTPS with the shared secret: both servers answer a pull query over the whole table,
    # though only one holds each partition's state.
    want = {f"car-{i}": 90 + i for i in range(10)}

    def pulled(server):
        status, text = call(server, "/query-stream", {"sql": "SELECT * FROM speeds;"}, barney)
        if status != 200:
            return status, text
        return status, {row[0]: row[1] for row in (json.loads(l) for l in text.splitlines()[1:])}

    for server in [first, second]:
        deadline = time.time() + 60
        got = pulled(server)
        while got != (200, want) and time.time() < deadline:
            time.sleep(0.5)
            got = pulled(server)
        assert got == (200, want), (server.url, got)
    for s in [first, second]:
        s.stop()
    # JSON logs: every line an object; a query's lines name it in a field.
    with open(os.path.join(first.data_dir, "server.log")) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    assert any(e.get("query", "").startswith("CTAS_SPEEDS") for e in entries), entries[-5:]
    print("   401 without credentials, 403 for a read-only user, the shell and the ksqldb client over HTTPS, "
          "pull queries answered by both servers")


def test_refusals(ctx):
    message = refused_at_start(ctx, tls_properties(ctx) + ["securty.protocol=SSL"])
    assert "did you mean 'security.protocol'" in message, message
    # ksqlDB's Docker convention: KSQL_<PROPERTY> variables are properties too, checked alike.
    message = refused_at_start(ctx, tls_properties(ctx), {"KSQL_KSQL_SERIVCE_ID": "x"})
    assert "did you mean 'ksql.service.id'" in message and "KSQL_KSQL_SERIVCE_ID" in message, message
    message = refused_at_start(ctx, [f"bootstrap.servers={ctx.broker.bootstrap}",
                                     "ssl.truststore.location=/etc/kafka/truststore.jks"])
    assert "keytool -exportcert" in message, message
    server = ctx.servers[0] if ctx.servers else start_server(ctx, "refusals", tls_properties(ctx))
    status, body = post(server.url + "/ksql", {"ksql": "SHOW STREAMS;",
                                               "streamsProperties": {"auto.ofset.reset": "earliest"}})
    assert status == 400 and "did you mean 'auto.offset.reset'" in body, (status, body)
    status, body = post(server.url + "/query-stream", {"sql": "SELECT * FROM pings EMIT CHANGES;",
                                                       "properties": {"ksql.streams.consumer.fetch.min.bytes": 1}})
    assert status == 400 and "configuration file" in body, (status, body)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.binary = os.path.abspath(args.server_bin)
    ctx.servers = []
    ctx.certs = make_certificates(tempfile.mkdtemp(prefix="eddy-certs-"))
    ctx.broker = TlsBroker(ctx.certs)
    failures = 0
    try:
        failures = run_each([test_tls, test_plugin_setting_from_the_server_file, test_sasl_settings_reach_librdkafka,
                             test_schema_registry_over_https_with_basic_auth,
                             test_rest_api_over_https_with_authentication, test_refusals], ctx, args.only)
    finally:
        for s in ctx.servers:
            s.stop()
        ctx.broker.stop()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
