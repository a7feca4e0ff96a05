"""POST /service_output → {"version", "echo"} after input["sleep"] seconds; GET / → 200."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply(200, {"status": "ok", "version": os.environ["VERSION"]})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        data = body.get("data") or {}
        time.sleep(float(data.get("sleep", 0)))
        self._reply(200, {"version": os.environ["VERSION"], "echo": data})

    def log_message(self, *args):
        pass


time.sleep(float(os.environ["STARTUP_DELAY"]))
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
