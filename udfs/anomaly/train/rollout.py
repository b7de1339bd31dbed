"""A rollout of a new model version under running queries: the version runs as production's shadow (every
row production scores is scored by it too, its scores only in /metrics), and after a watch their alert
rates from the server's /metrics (`eddy_plugin_model_alerts_total / eddy_plugin_model_rows_total`, live
against shadow) decide: production moves to the new version when it alerts at most `--tolerance` times
as often as production (or both under `--floor`); otherwise production stays, and the reason is printed.

    python rollout.py --server http://localhost:8088 --model gaussian_20s --version 2 --watch 300
"""

import argparse
import json
import time
import urllib.request


def ksql(server, sql):
    req = urllib.request.Request(f"{server}/ksql", data=json.dumps({"ksql": sql}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def rates(server, model, versions):
    """(rows, alerts) per (version, role) of `model` from the server's /metrics."""
    text = urllib.request.urlopen(f"{server}/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        for name, slot in (("eddy_plugin_model_rows_total", 0), ("eddy_plugin_model_alerts_total", 1)):
            if line.startswith(name + "{") and f'model="{model}"' in line:
                labels = dict(p.split("=", 1) for p in line[len(name) + 1:line.index("}")].split(","))
                key = (int(labels["version"].strip('"')), labels["role"].strip('"'))
                if key[0] in versions:
                    out.setdefault(key, [0.0, 0.0])[slot] += float(line.rsplit(" ", 1)[1])
    return out


def watch(server, model, production, new, seconds, tolerance, floor):
    """Runs `new` as the shadow of version `production` for `seconds`, then promotes it or not."""
    print(ksql(server, f"ALTER MODEL {model} SET ALIAS production = {production} SHADOW {new};")
          [0]["commandStatus"]["message"], flush=True)
    before = rates(server, model, {production, new})
    time.sleep(seconds)
    after = rates(server, model, {production, new})

    def rate(key):
        rows = after.get(key, [0, 0])[0] - before.get(key, [0, 0])[0]
        alerts = after.get(key, [0, 0])[1] - before.get(key, [0, 0])[1]
        return rows, alerts, (alerts / rows if rows else None)
    live_rows, live_alerts, live = rate((production, "live"))
    shadow_rows, shadow_alerts, shadow = rate((new, "shadow"))
    print(f"in {seconds:.0f} s: version {production} (production) alerted on {live_alerts:.0f} of {live_rows:.0f} "
          f"rows, version {new} (shadow) on {shadow_alerts:.0f} of {shadow_rows:.0f}", flush=True)
    if shadow is None or live is None:
        print("nothing was scored meanwhile: production stays")
        ksql(server, f"ALTER MODEL {model} SET ALIAS production = {production};")
        return False
    if shadow <= max(live * tolerance, floor):
        print(ksql(server, f"ALTER MODEL {model} SET ALIAS production = {new};")[0]["commandStatus"]["message"])
        return True
    ksql(server, f"ALTER MODEL {model} SET ALIAS production = {production};")
    print(f"version {new} alerts {shadow / max(live, 1e-12):.1f} times as often: production stays at {production}")
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--version", type=int, required=True, help="the version to roll out")
    ap.add_argument("--watch", type=float, default=300.0, help="seconds in shadow before deciding")
    ap.add_argument("--tolerance", type=float, default=1.5)
    ap.add_argument("--floor", type=float, default=0.001, help="alert rates below this count as equal")
    a = ap.parse_args()
    server = a.server.rstrip("/")
    with urllib.request.urlopen(f"{server}/models/{a.model}", timeout=30) as r:
        production = json.load(r).get("aliases", {}).get("production")
    if not isinstance(production, int):
        raise SystemExit(f"model {a.model} has no production alias on one version to roll out from")
    watch(server, a.model, production, a.version, a.watch, a.tolerance, a.floor)


if __name__ == "__main__":
    main()
