"""provisioning/connect/watch against a stand-in of Kafka Connect's REST API: what it
reports and when it restarts (the e2e suite runs it against real Connect). Needs bash,
curl, jq."""

import base64
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

WATCH = Path(__file__).resolve().parent.parent / "provisioning" / "connect" / "watch"
NAME = "pulsewire-readings-file"
PASSWORD = "s3cret\\with:colon"
AUTHORIZATION = "Basic " + base64.b64encode(f"pulsewire:{PASSWORD}".encode()).decode()
TRACE = ("org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception trying to send\n"
         "\tat org.apache.kafka.connect.runtime.ExactlyOnceWorkerSourceTask.producerSendFailed(X.java:1)\n"
         "Caused by: org.apache.kafka.common.KafkaException: Cannot execute transactional method\n"
         "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is 9 bytes\n")
FAILED = (f"connect-watch: task {NAME}-0 FAILED on worker w1:8083: org.apache.kafka.connect.errors.ConnectException: "
          "Unrecoverable exception trying to send; root cause: "
          "org.apache.kafka.common.errors.RecordTooLargeException: The message is 9 bytes")


def status(connector="RUNNING", tasks=(("RUNNING", None),)):
    return {"name": NAME, "connector": {"state": connector, "worker_id": "w1:8083"},
            "tasks": [dict({"id": i, "state": s, "worker_id": "w1:8083"}, **({"trace": t} if t else {}))
                      for i, (s, t) in enumerate(tasks)], "type": "source"}


class Connect:
    """Answers GET /connectors/<name>/status with `code`/`body`, records every POST; answers
    401 to a request without user pulsewire's basic auth, as the real worker does."""

    def __init__(self):
        self.code, self.body, self.posts = 200, status(), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                payload = json.dumps(outer.body).encode()
                code = outer.code if self.path == f"/connectors/{NAME}/status" else 404
                if self.headers.get("Authorization") != AUTHORIZATION:
                    code, payload = 401, b"User cannot access the resource."
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                if self.headers.get("Authorization") != AUTHORIZATION:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.posts.append(self.path)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def connect():
    c = Connect()
    yield c
    c.server.shutdown()


def watch(url: str, state: Path, password: str = PASSWORD, **env) -> tuple[int, list[str]]:
    secret = state / "connect-rest-password"
    secret.write_text(password + "\n")
    e = dict(os.environ, CONNECT_URL=url, CONNECTOR_NAME=NAME, WATCH_STATE=str(state),
             CONNECT_USER="pulsewire", CONNECT_PASSWORD_FILE=str(secret),
             **{k: str(v) for k, v in env.items()})
    res = subprocess.run(["bash", str(WATCH)], env=e, capture_output=True, text=True, timeout=60)
    assert res.stderr == ""
    return res.returncode, res.stdout.splitlines()


def test_running_is_silent(connect, tmp_path):
    assert watch(connect.url, tmp_path) == (0, [])
    assert connect.posts == []


def test_wrong_password_is_reported(connect, tmp_path):
    connect.body = status(tasks=(("FAILED", TRACE),))
    assert watch(connect.url, tmp_path, password="wrong") == (1, [
        f"connect-watch: GET {connect.url}/connectors/{NAME}/status answered HTTP 401: User cannot access the resource."])
    assert connect.posts == []


def test_missing_paused_unreachable_are_reported_not_changed(connect, tmp_path):
    connect.code = 404
    assert watch(connect.url, tmp_path) == (
        1, [f"connect-watch: connector {NAME} is missing (pulsewire-connect-register registers it)"])
    connect.code, connect.body = 200, status("PAUSED")
    assert watch(connect.url, tmp_path) == (1, [
        f"connect-watch: connector {NAME} is PAUSED: nothing is read from the file "
        f"(PUT {connect.url}/connectors/{NAME}/resume resumes it)"])
    connect.body = status(tasks=())
    assert watch(connect.url, tmp_path) == (
        1, [f"connect-watch: connector {NAME} is RUNNING with 0 task(s) not all RUNNING yet: none"])
    assert connect.posts == []
    code, lines = watch("http://127.0.0.1:1", tmp_path)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("connect-watch: Kafka Connect at http://127.0.0.1:1 does not answer: curl: (7)")


def test_failed_task_restarts_with_backoff_then_gives_up(connect, tmp_path):
    connect.body = status(tasks=(("FAILED", TRACE),))
    restart = f"/connectors/{NAME}/restart?includeTasks=true&onlyFailed=true"
    env = dict(WATCH_BACKOFF=100, WATCH_MAX_RESTARTS=3, WATCH_WINDOW=3600)
    assert watch(connect.url, tmp_path, **env) == (1, [
        FAILED, f"connect-watch: restarting the failed tasks of {NAME} (restart 1 of 3 within 3600s)"])
    assert connect.posts == [restart]
    # Restart 2 is due 100 s after restart 1.
    code, lines = watch(connect.url, tmp_path, **env)
    assert code == 1 and lines[0] == FAILED
    assert lines[1].startswith(f"connect-watch: restart 2 of 3 of {NAME} is due in ") and len(lines) == 2
    assert connect.posts == [restart]
    # Pretend the first was 150 s ago: restart 2; restart 3 waits 200 s after it.
    log = tmp_path / f"{NAME}.restarts"
    now = int(time.time())
    log.write_text(f"{now - 150}\n")
    assert watch(connect.url, tmp_path, **env)[1][1] == (
        f"connect-watch: restarting the failed tasks of {NAME} (restart 2 of 3 within 3600s)")
    log.write_text(f"{now - 500}\n{now - 201}\n")
    assert watch(connect.url, tmp_path, **env)[1][1].endswith("(restart 3 of 3 within 3600s)")
    assert watch(connect.url, tmp_path, **env) == (1, [
        FAILED, f"connect-watch: not restarting {NAME}: 3 restarts within 3600s did not help; fix the cause, "
                f"then POST {connect.url}/connectors/{NAME}/restart?includeTasks=true&onlyFailed=true"])
    assert len(connect.posts) == 3
    # Restarts older than the window no longer count.
    log.write_text(f"{now - 4000}\n{now - 3900}\n{now - 3800}\n")
    assert watch(connect.url, tmp_path, **env)[1][1].endswith("(restart 1 of 3 within 3600s)")


def test_failed_connector_is_reported_with_its_trace(connect, tmp_path):
    connect.body = status("FAILED", tasks=())
    connect.body["connector"]["trace"] = "java.lang.IllegalStateException: no file\n\tat X.y(X.java:1)\n"
    assert watch(connect.url, tmp_path)[1] == [
        f"connect-watch: connector {NAME} FAILED on worker w1:8083: java.lang.IllegalStateException: no file",
        f"connect-watch: restarting the failed tasks of {NAME} (restart 1 of 3 within 3600s)"]


def test_an_unreadable_password_file_is_named(connect, tmp_path):
    e = dict(os.environ, CONNECT_URL=connect.url, CONNECTOR_NAME=NAME, WATCH_STATE=str(tmp_path),
             CONNECT_USER="pulsewire", CONNECT_PASSWORD_FILE=str(tmp_path / "missing"))
    res = subprocess.run(["bash", str(WATCH)], env=e, capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (
        1, "", f"watch: cannot read CONNECT_PASSWORD_FILE={tmp_path / 'missing'} (Connect's REST password)\n")
