"""The ceiling for bench/ocpp_server.py and bench/scale.py: an "echo" central system built on
Ampgate's own websocket layer (the same DetectingServer, OcppHandler and OcppWebSocket classes and
the same JSON codec), answering every CALL with a fixed payload. No validation, no storage, no
logging, no load management: what is left is the cost of the stack itself, so appliance/echo says
how close the appliance comes to it."""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import resource  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from appliance.ocpp import codec  # noqa: E402
from appliance.ocpp.server import DetectingServer  # noqa: E402
from appliance.ocpp.websocket import OcppHandler  # noqa: E402

ANSWERS = {
    "BootNotification": {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300},
    "Heartbeat": {"currentTime": "2026-01-01T00:00:00Z"},
}


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("426 Upgrade Required", [])
        return []
    while True:
        text = ws.receive()
        if text is None:
            return []
        frame = codec.loads(text)
        if frame[0] == 2:
            ws.send(codec.dumps([3, frame[1], ANSWERS.get(frame[2], {})]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", help="PEM with key and certificate: serve wss")
    ap.add_argument("--backlog", type=int, default=1024)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # as the appliance does at start
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert)
    server = DetectingServer(("127.0.0.1", args.port), app, "on" if ctx else "off", (lambda: ctx) if ctx else None,
                             handler_class=OcppHandler, log=None, backlog=args.backlog)
    server.start()
    print("ready", flush=True)
    gevent.wait()


if __name__ == "__main__":
    main()
