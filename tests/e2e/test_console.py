"""The web console in headless Chromium against a server over the real broker: the page loads (its
time printed), a CREATE STREAM and a CSAS typed into the editor and run, the query seen in the
queries view, a completion of a column name taken, a push query's rows arriving in the table and
its points in the chart, PRINT of the topic, a statement error marked at the position the server
reports, the query's rate, the query terminated. Then the same with authentication on, after logging in. A screenshot of each step is
written to target/console-screenshots/.

Run by scripts/test:  python tests/e2e/test_console.py --server-bin target/release/eddy-server
"""

import json
import os
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Producer

from browser import Browser
from test_e2e import ROOT, Server, main_with_broker

SHOTS = os.path.join(ROOT, "target/console-screenshots")
CTRL_ENTER = dict(key="Enter", code="Enter", key_code=13, ctrl=True)


def produce_forever(bootstrap, topic, stop):
    """Readings every 50 ms until `stop` is set."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    i = 0
    while not stop.is_set():
        p.produce(topic, json.dumps({"id": i, "temp": 20 + (i % 17) * 0.5, "site": f"s{i % 3}"}).encode(),
                  key=f"s{i % 3}".encode())
        p.poll(0)
        i += 1
        time.sleep(0.05)
    p.flush(10)


def clear_editor(browser):
    """Empties the editor (as a user selecting all and deleting) and puts the caret in it."""
    browser.evaluate("(() => { const t = document.querySelector('#editor textarea'); t.value = '';"
                     " t.dispatchEvent(new Event('input')); })()")
    browser.focus("#editor textarea")


def run_in_editor(browser, sql, expect, timeout=30):
    """Replaces the editor's text with `sql`, runs the statement at the caret (its end) and waits for
    a message containing `expect`."""
    clear_editor(browser)
    browser.type(sql)
    browser.press(**CTRL_ENTER)
    return browser.wait_for(
        f"[...document.querySelectorAll('#messages li')].map(l => l.textContent).find(t => t.includes({json.dumps(expect)}))",
        timeout, what=f"'{expect}' after {sql}")


def console_steps(ctx, browser, server, name):
    """The acceptance's steps on an open, logged-in console; screenshots named after `name`."""
    shot = lambda step: browser.screenshot(os.path.join(SHOTS, f"{name}-{step}.png"))
    topic = f"console_{name}"
    stream, sink = f"readings_{name}", f"hot_{name}"

    run_in_editor(browser, "SET 'auto.offset.reset'='earliest';", "auto.offset.reset")
    run_in_editor(browser, f"CREATE STREAM {stream} (site STRING KEY, id BIGINT, temp DOUBLE) WITH "
                           f"(kafka_topic='{topic}', value_format='JSON', partitions=2);", "Stream created")
    run_in_editor(browser, f"CREATE STREAM {sink} AS SELECT site, id, temp FROM {stream} WHERE temp > 24;",
                  "Created query")
    shot("1-statements")

    stop = threading.Event()
    producer = threading.Thread(target=produce_forever, args=(ctx.broker.bootstrap, topic, stop))
    producer.start()
    try:
        # The queries view lists the CSAS running, with its rate once it moved.
        browser.click("nav button[data-tab=queries]")
        query_id = browser.wait_for(
            f"[...document.querySelectorAll('#queries tr[data-id]')].map(r => r.dataset.id)"
            f".find(id => id.includes({json.dumps(sink.upper())}))", 30, what="the CSAS in the queries view")
        browser.wait_for(f"document.querySelector('#queries tr[data-id=\"{query_id}\"]').dataset.state === 'RUNNING'",
                         30, what="the CSAS running")
        shot("2-queries")

        # A column completed: the catalog knows the stream's columns.
        browser.click("nav button[data-tab=editor]")
        browser.wait_for(f"!!document.querySelector('#catalog details[data-name=\"{stream.upper()}\"]')", 30,
                         what="the stream in the catalog")
        clear_editor(browser)
        # At a statement's start: templates and keywords.
        browser.type("cr")
        offered = browser.wait_for(
            "[...document.querySelectorAll('#editor .completions li .label')].map(l => l.textContent)", 10,
            what="completions for 'cr'")
        assert offered[:2] == ["CREATE STREAM", "CREATE TABLE"], offered
        clear_editor(browser)
        browser.type("SELECT site, id, te")
        offered = browser.wait_for(
            "[...document.querySelectorAll('#editor .completions li .label')].map(l => l.textContent)", 10,
            what="completions for 'te'")
        assert "TEMP" in offered, offered
        shot("3-completion")
        browser.press(key="Tab", code="Tab", key_code=9)
        value = browser.evaluate("document.querySelector('#editor textarea').value")
        assert value == "SELECT site, id, TEMP", value

        # A push query: rows in the table, points in the chart.
        browser.type(f" FROM {stream} EMIT CHANGES;")
        browser.press(**CTRL_ENTER)
        browser.wait_for("Number(document.querySelector('#results table.rows').dataset.rows) >= 10", 60,
                         what="push query rows in the table")
        browser.wait_for("Number(document.querySelector('#results canvas').dataset.points) >= 10", 30,
                         what="points in the chart")
        header = browser.evaluate("[...document.querySelectorAll('#results th')].map(h => h.textContent)")
        assert header == ["SITE", "ID", "TEMP"], header
        shot("4-push-query")
        browser.click("#results button.stop")
        browser.wait_for("document.querySelector('#results button.stop').disabled", 10, what="the query stopped")

        # PRINT of the topic: its lines in the table.
        clear_editor(browser)
        browser.type(f"PRINT '{topic}' FROM BEGINNING LIMIT 3;")
        browser.press(**CTRL_ENTER)
        printed = browser.wait_for(
            "(() => { const cells = [...document.querySelectorAll('#results td')].map(c => c.textContent);"
            " return cells.filter(c => c.includes('rowtime:')).length >= 3 && cells; })()", 30,
            what="PRINT's records in the table")
        assert any('"temp":' in c for c in printed), printed

        # A statement error, marked where the server says it is.
        clear_editor(browser)
        browser.type(f"SELECT * FORM {stream};")
        browser.press(**CTRL_ENTER)
        message = browser.wait_for("document.querySelector('#messages li.error .text')?.textContent", 10,
                                   what="the statement error")
        assert message.startswith("line 1:"), message
        column = int(message.split(":")[1])
        marked = browser.wait_for("document.querySelector('#editor mark.error-mark')?.textContent", 10,
                                  what="the error's mark in the editor")
        text = f"SELECT * FORM {stream};"
        assert text[column - 1:].startswith(marked.strip()), (message, marked)
        shot("5-error")

        # Terminated from the queries view, which shows its rate by now (counters read twice).
        browser.click("nav button[data-tab=queries]")
        rate = browser.wait_for(
            f"document.querySelector('#queries tr[data-id=\"{query_id}\"] td:nth-child(4)')"
            ".textContent.match(/^[0-9.]+\\/s$/)?.[0]", 15, what="the query's input rate")
        print(f"   the queries view shows {query_id} reading {rate}")
        browser.click(f"#queries button.terminate[data-id=\"{query_id}\"]")
        browser.wait_for(f"!document.querySelector('#queries tr[data-id=\"{query_id}\"]')", 30,
                         what="the query gone after terminate")
        shot("6-terminated")
    finally:
        stop.set()
        producer.join()


def test_console(ctx):
    data = tempfile.mkdtemp(prefix="eddy-console-")
    server = Server(ctx.server_bin, ctx.broker.bootstrap, data, f"console{os.getpid()}")
    browser = Browser()
    try:
        started = time.time()
        browser.open(server.url + "/")
        browser.wait_for("document.body.dataset.ready === '1'", 30, what="the console to be ready")
        loaded = browser.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        print(f"   the console loaded and read the catalog in {time.time() - started:.2f} s "
              f"(navigation to load event {loaded:.0f} ms)")
        console_steps(ctx, browser, server, "open")
    finally:
        browser.close()
        server.stop()


def test_console_with_authentication(ctx):
    folder = tempfile.mkdtemp(prefix="eddy-console-auth-")
    hashed = subprocess.run([ctx.server_bin, "hash-password"], input="flintstone", capture_output=True,
                            text=True, check=True).stdout.strip()
    users = os.path.join(folder, "users")
    with open(users, "w") as f:
        f.write(f"fred: {hashed}, admin\n")
    config = os.path.join(folder, "server.properties")
    with open(config, "w") as f:
        f.write(f"authentication.method=BASIC\neddy.authentication.credentials.file={users}\n")
    server = Server(ctx.server_bin, ctx.broker.bootstrap, folder, f"consoleauth{os.getpid()}", ["--config", config])
    browser = Browser()
    try:
        browser.open(server.url + "/")
        browser.wait_for("!document.querySelector('#login').hidden", 30, what="the login form")
        browser.screenshot(os.path.join(SHOTS, "auth-0-login.png"))
        browser.focus("#login input[name=user]")
        browser.type("fred")
        browser.focus("#login input[name=password]")
        browser.type("wrong")
        browser.evaluate("document.querySelector('#login').requestSubmit()")
        browser.wait_for("document.querySelector('#login .error').textContent", 10, what="a refused login")
        browser.evaluate("document.querySelector('#login input[name=password]').value = ''")
        browser.focus("#login input[name=password]")
        browser.type("flintstone")
        started = time.time()
        browser.evaluate("document.querySelector('#login').requestSubmit()")
        browser.wait_for("document.body.dataset.ready === '1'", 30, what="the console after logging in")
        print(f"   logged in; the console read the catalog in {time.time() - started:.2f} s")
        console_steps(ctx, browser, server, "auth")
    finally:
        browser.close()
        server.stop()


if __name__ == "__main__":
    main_with_broker([test_console, test_console_with_authentication])
