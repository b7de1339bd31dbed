"""Takes the screenshot of the console on the connected-car demo that the README and docs/console.md
show: a broker and a server with the anomaly plugin and the committed models, the demo's
udfs/anomaly/sql/car-alerts.sql, an hour of 20 cars' telemetry with its faults (the demo's generator,
as fast as the broker takes it), then the console's "Connected cars" view watching the alerts.

    python tests/e2e/console_demo_shot.py --server-bin target/release/eddy-server [--out docs/images/console-demo.png]
(scripts/build-plugins first.)
"""

import argparse
import os
import sys
import tempfile

from browser import Browser
from test_e2e import ROOT, Broker, Server

sys.path.insert(0, os.path.join(ROOT, "udfs/anomaly/train"))
import telemetry  # noqa: E402
from ksqldb import KSQLdbClient  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/images/console-demo.png"))
    args = ap.parse_args()
    os.environ["EDDY_MODEL_DIR"] = os.path.join(ROOT, "udfs/anomaly/models")
    broker = Broker()
    data = tempfile.mkdtemp(prefix="eddy-console-demo-")
    server = Server(os.path.abspath(args.server_bin), broker.bootstrap, data, f"demo{os.getpid()}",
                    ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    browser = None
    try:
        client = KSQLdbClient(server.url)
        client.ksql("ALTER MODEL gaussian_20s SET ALIAS production = 2;")
        script = open(os.path.join(ROOT, "udfs/anomaly/sql/car-alerts.sql")).read()
        script = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
        earliest = {"auto.offset.reset": "earliest"}
        for statement in filter(str.strip, script.split(";")):
            if not statement.strip().upper().startswith("SET "):
                client.ksql(statement + ";", stream_properties=earliest)
        sent = telemetry.produce(broker.bootstrap, "telemetry", 20, 1, 7, 3.0, rate=1e9)
        print(f"produced {sent} readings")
        browser = Browser(width=1400, height=1100)
        browser.open(server.url + "/")
        browser.wait_for("document.body.dataset.ready === '1'", 30, what="the console")
        browser.click("nav button[data-tab=demo]")
        browser.click("#demo-start")
        rows = browser.wait_for("Number(document.querySelector('#demo-results table.rows').dataset.rows) >= 40 &&"
                                " document.querySelector('#demo-results table.rows').dataset.rows", 180,
                                what="alerts in the demo view")
        browser.evaluate("new Promise(r => setTimeout(r, 1500))")
        browser.screenshot(args.out)
        print(f"{rows} alerts shown; screenshot in {args.out}")
    finally:
        if browser:
            browser.close()
        server.stop()
        broker.stop()


if __name__ == "__main__":
    main()
