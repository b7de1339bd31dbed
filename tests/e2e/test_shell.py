"""The shell (`eddy`) in a terminal 100 columns wide (tmux), against a server over the real broker:
Tab completes a column name after SELECT from the server's catalog, SHOW QUERIES — whose query text
is far wider than the terminal — is drawn within the 100 columns, the text wrapped, and a statement
error points at its position.

Run by scripts/test:  python tests/e2e/test_shell.py --server-bin target/release/eddy-server
"""

import os
import subprocess
import tempfile
import time

from test_e2e import Server, main_with_broker, post

WIDTH = 100


def tmux(*args):
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def typed(session, text):
    """Types `text` literally (tmux reads an argument's trailing ';' as a command separator unless
    escaped)."""
    tmux("send-keys", "-t", session, "-l", text[:-1] + "\\;" if text.endswith(";") else text)


def screen(session):
    """The pane's text from the start of its history, wrapped lines joined back."""
    return tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session)


def wait_for(session, text, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"'{text}' never showed:\n{screen(session)}")


def test_shell_in_a_terminal(ctx):
    data = tempfile.mkdtemp(prefix="eddy-shell-")
    server = Server(ctx.server_bin, ctx.broker.bootstrap, data, f"shell{os.getpid()}")
    # A CSAS whose text is several times the terminal's width.
    projection = ", ".join(f"speed_kmh * {i} AS times_{i}" for i in range(1, 16))
    for sql in ["CREATE STREAM trips (car STRING KEY, speed_kmh DOUBLE, odometer_km DOUBLE) WITH "
                "(kafka_topic='trips', value_format='JSON', partitions=2);",
                f"CREATE STREAM fast_trips AS SELECT car, {projection} FROM trips WHERE speed_kmh > 100;"]:
        status, body = post(server.url + "/ksql", {"ksql": sql})
        assert status == 200, body
    session = f"eddy-shell-{os.getpid()}"
    shell = os.path.join(os.path.dirname(ctx.server_bin), "eddy")
    tmux("new-session", "-d", "-s", session, "-x", str(WIDTH), "-y", "50",
         f"env HOME={data} TERM=xterm {shell} --server {server.url}")
    try:
        wait_for(session, "eddy> ")
        # Tab completes the column from the catalog (read at start).
        typed(session, "SELECT spe")
        tmux("send-keys", "-t", session, "Tab")
        wait_for(session, "SELECT SPEED_KMH")
        tmux("send-keys", "-t", session, "C-u")
        # SHOW QUERIES: within the terminal's width, the query text wrapped.
        typed(session, "SHOW QUERIES;")
        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for(session, "For detailed information on a Query run:")
        lines = shown.splitlines()
        too_wide = [line for line in lines if len(line) > WIDTH]
        assert not too_wide, "\n".join(too_wide)
        table = [line for line in lines if "|" in line]
        assert any("CSAS_FAST_TRIPS" in line for line in table), shown
        text = "".join(line.split("|")[-1].strip() for line in table)
        assert "speed_kmh*15AStimes_15" in text.replace(" ", ""), shown
        print(f"   SHOW QUERIES drawn in {len(table)} lines within {WIDTH} columns; "
              f"the widest is {max(len(line) for line in lines)}")
        # A statement error points at its position.
        typed(session, "SELECT * FORM trips;")
        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for(session, "Syntax Error")
        lines = shown.splitlines()
        at = max(i for i, line in enumerate(lines) if line == "SELECT * FORM trips;")
        assert lines[at + 1] == "         ^", lines[at:at + 3]
        tmux("send-keys", "-t", session, "exit", "Enter")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        server.stop()


if __name__ == "__main__":
    main_with_broker([test_shell_in_a_terminal])
