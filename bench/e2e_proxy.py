"""Latency recorder between the uploader and the store (benchmark only).

Listens for InfluxDB v2 writes (/api/v2/write), forwards each request unchanged to the real
store and answers with the store's status, so the uploader sees exactly what the store says.
For every point it records, against the point's own timestamp (the probe writes the append
time of a line as its event time, so timestamp = append time):

  recv  - when the write request carrying the point reached the store's door
  ack   - when the store acknowledged that request (what the uploader waits for)

and, for a sample of points, when the point became readable through the store's query API
(`visible`): one sampled point at a time is polled every 10 ms via /api/v1/export.

  python3 e2e_proxy.py LISTEN_PORT UPSTREAM_URL OUT_JSON
SIGTERM/SIGINT write OUT_JSON (raw latency arrays in ms) and exit.
"""

import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, OUT = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
MEASUREMENT = "heart_rate"

lock = threading.Lock()
recv_ms: list[float] = []
ack_ms: list[float] = []
visible_ms: list[float] = []
event_s: list[float] = []  # event (= append) time of each point, seconds since the epoch
recv_wall: list[float] = []  # wall time of each request
points_total = 0
requests_total = 0
latest: tuple[str, int] | None = None  # (sensor_id, ts_ns) of the newest point seen


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        # The influxdb2 crate streams its body: Transfer-Encoding: chunked, no Content-Length.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _forward(self, body: bytes | None):
        req = urllib.request.Request(UPSTREAM + self.path, data=body, method=self.command)
        for h in ("Content-Type", "Content-Encoding", "Authorization"):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "text/plain")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "text/plain")

    def _reply(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply(*self._forward(None))

    def do_POST(self):
        global points_total, requests_total, latest
        t_recv = time.time()
        body = self._body()
        status, data, ctype = self._forward(body)
        t_ack = time.time()
        if self.path.startswith("/api/v2/write") and 200 <= status < 300:
            q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[q.get("precision", ["ns"])[0]]
            payload = body
            if self.headers.get("Content-Encoding") == "gzip":
                import gzip

                payload = gzip.decompress(body)
            r, a, e, last = [], [], [], None
            for line in payload.split(b"\n"):
                if not line.startswith(MEASUREMENT.encode()):
                    continue
                ts = int(line.rsplit(b" ", 1)[1])
                t = ts * scale
                r.append((t_recv - t) * 1000.0)
                a.append((t_ack - t) * 1000.0)
                e.append(t)
                last = (line, ts)
            with lock:
                recv_ms.extend(r)
                ack_ms.extend(a)
                event_s.extend(e)
                recv_wall.append(t_recv)
                points_total += len(r)
                requests_total += 1
                if last is not None:
                    tags = last[0].split(b" ", 1)[0].decode()
                    sensor = dict(kv.split("=", 1) for kv in tags.split(",")[1:]).get("sensor_id")
                    if sensor:
                        latest = (sensor, int(last[1] * scale * 1e9))
        self._reply(status, data, ctype)


def sampler(stop: threading.Event):
    """Polls the store for one freshly written point at a time until it is readable."""
    seen = None
    while not stop.is_set():
        with lock:
            cand = latest
        if cand is None or cand == seen:
            time.sleep(0.01)
            continue
        seen = cand
        sensor, ts_ns = cand
        ts_ms = ts_ns // 1_000_000
        q = urllib.parse.urlencode({
            "match[]": f'{{__name__="{MEASUREMENT}_value",sensor_id="{sensor}"}}',
            "start": str(ts_ns / 1e9 - 1),
        })
        deadline = time.time() + 30
        while time.time() < deadline and not stop.is_set():
            try:
                with urllib.request.urlopen(f"{UPSTREAM}/api/v1/export?{q}", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                text = ""
            if str(ts_ms) in text:
                with lock:
                    visible_ms.append(time.time() * 1000.0 - ts_ns / 1e6)
                break
            time.sleep(0.01)


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
    srv.daemon_threads = True
    stop = threading.Event()
    threading.Thread(target=sampler, args=(stop,), daemon=True).start()

    def finish(*_):
        stop.set()
        with lock:
            out = {"points": points_total, "requests": requests_total, "recv_ms": recv_ms,
                   "ack_ms": ack_ms, "event_s": event_s, "visible_ms": visible_ms, "request_wall": recv_wall}
        with open(OUT, "w") as f:
            json.dump(out, f)
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    srv.serve_forever()


if __name__ == "__main__":
    main()
