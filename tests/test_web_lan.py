"""A LAN host must not lock others out of the page, nor get in itself: real HTTP against the real web
server (appliance.webapp.server, in this process's greenlets), clients from several loopback
addresses (127.0.0.2 stands for another host on the LAN)."""
from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import re
import socket
import sys
import urllib.parse

import flask
import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.security import generate_password_hash

from appliance import config
from appliance.runtime import Runtime
from tests.conftest import free_port, wait_for

PASSWORD = "rightful-owner-1"
OTHER_HOST = "127.0.0.2"


class Web:
    """The real web server of a real Runtime on a free port of 127.0.0.1."""

    def __init__(self, tmp_path, web_conf: str = "", password_hash: str | None = None):
        from appliance.webapp.server import make_server

        self.port = free_port()
        h = generate_password_hash(PASSWORD, "pbkdf2:sha256:1000") if password_hash is None else password_hash
        conf = tmp_path / "ampgate.conf"
        conf.write_text(f"[web]\nport = {self.port}\nbind = 127.0.0.1\npassword_hash = '{h}'\n{web_conf}\n"
                        "[devices]\n[[garage]]\ntype = ocpp16\naddress = CP1\n", encoding="utf-8")
        self.rt = Runtime(config.load(conf), tmp_path / "var")
        self.server = make_server(self.rt)
        self.server.start()

    def client(self, source: str = "127.0.0.1") -> "Client":
        return Client(self.port, source)

    def stop(self) -> None:
        self.server.stop(timeout=1)
        self.rt.close()


class Client:
    """One browser or script: its own cookies, its own source address, a new connection per request."""

    def __init__(self, port: int, source: str):
        self.port, self.source = port, source
        self.cookies: dict[str, str] = {}
        self.host = f"127.0.0.1:{port}"

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                auth: str | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        h = {"Host": self.host, **(headers or {})}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if auth is not None:
            h["Authorization"] = "Basic " + base64.b64encode(f"admin:{auth}".encode()).decode()
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            text = r.read().decode("utf-8", "replace")
            for v in r.headers.get_all("Set-Cookie") or ():
                name, _, rest = v.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return r.status, {k.lower(): v for k, v in r.getheaders()}, text
        finally:
            conn.close()

    def token(self, path: str = "/login") -> str:
        _, _, html = self.request("GET", path)
        return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)

    def login(self, password: str = PASSWORD, next_: str | None = None) -> tuple[int, dict[str, str], str]:
        path = "/login" + (f"?next={next_}" if next_ is not None else "")
        return self.request("POST", path, form={"password": password, "csrf_token": self.token()})


@pytest.fixture
def web(tmp_path):
    started = []

    def make(*args, **kw) -> Web:
        w = Web(tmp_path, *args, **kw)
        started.append(w)
        return w
    yield make
    for w in started:
        w.stop()


# -- item 11: logout, next=, CSV ---------------------------------------------------------------------
def test_logout_ends_the_session_on_the_server_too(web):
    w = web()
    browser = w.client()
    assert browser.login()[0] == 302
    stolen = dict(browser.cookies)                     # what a copied cookie would replay
    assert browser.request("GET", "/api/status")[0] == 200
    assert browser.request("POST", "/logout", form={"csrf_token": browser.token("/")})[0] == 302
    replay = w.client()
    replay.cookies = stolen
    assert replay.request("GET", "/api/status")[0] == 401
    status, headers, _ = replay.request("GET", "/settings/")
    assert status == 302 and "/login" in headers["location"]
    again = w.client()                                  # logging in again works, and survives a restart
    assert again.login()[0] == 302
    w.server.stop(timeout=1)                            # a new app reads the sessions back from disk
    from appliance.webapp.server import make_server
    w.server = make_server(w.rt)
    w.server.start()
    assert again.request("GET", "/api/status")[0] == 200
    replay.cookies = stolen
    assert replay.request("GET", "/api/status")[0] == 401


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0a/evil.example", "/%0d%0a/evil.example",
                                    "/%20/evil.example", "%2f%2fevil.example", "/%5cevil.example",
                                    "https:evil.example", "/\\x/evil.example".replace("\\", "%5c")])
def test_login_never_sends_the_browser_to_another_site(web, target):
    w = web()
    status, headers, _ = w.client().login(next_=target)
    assert status == 302
    location = urllib.parse.urljoin(f"http://127.0.0.1:{w.port}/login", headers["location"])
    assert urllib.parse.urlsplit(location).netloc == f"127.0.0.1:{w.port}", location
    assert "evil" not in headers["location"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("/\\\t\n\r .:@?#%ab%2f"), max_size=12))
def test_whatever_next_holds_the_browser_stays_on_this_site(target):
    """As a browser reads a Location: tabs and newlines dropped, backslashes taken for slashes."""
    from appliance.webapp import auth

    base = "http://box:8080/login"
    app, dashboard = flask.Flask("t"), flask.Blueprint("dashboard", "t")
    dashboard.add_url_rule("/", "index")
    app.register_blueprint(dashboard)
    with app.test_request_context("/login"):
        landed = auth._safe_next(target)
    browser_reads = landed.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    assert urllib.parse.urlsplit(urllib.parse.urljoin(base, browser_reads)).netloc == "box:8080", landed

def test_login_still_returns_to_the_page_asked_for(web):
    w = web()
    status, headers, _ = w.client().login(next_=urllib.parse.quote("/transactions?device=garage"))
    assert status == 302 and headers["location"] == "/transactions?device=garage"


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(web):
    w = web()
    tags = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain-1"]
    for tag in tags:
        w.rt.store.start_transaction(connector=1, id_tag=tag, meter_start=5, start_time="2026-11-29T08:00:00Z",
                                     device="garage", charge_box_id="CP1")
    status, headers, text = w.client().request("GET", "/transactions.csv", auth=PASSWORD)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    got = {row["id_tag"] for row in csv.DictReader(io.StringIO(text, newline=""))}
    assert got == {"'" + t for t in tags[:-1]} | {"plain-1"}
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["meter_start"] for r in rows} == {"5"}      # numbers stay numbers


# -- item 9: key derivation off the hub, slowing guessers, never locking out the owner -----------------
def _hashing_elsewhere() -> bool:
    """True while a thread other than this one (the gevent hub's) is inside check_password_hash."""
    import threading

    me = threading.get_ident()
    for tid, frame in sys._current_frames().items():
        if tid == me:
            continue
        f = frame
        while f is not None:
            if f.f_code.co_name == "check_password_hash":
                return True
            f = f.f_back
    return False


def test_a_wrong_password_is_hashed_off_the_hub(web):
    # a deliberately slow hash (several seconds): on the hub it would stop everything meanwhile
    w = web(password_hash=generate_password_hash(PASSWORD, "pbkdf2:sha256:2000000"))
    guesser = gevent.spawn(w.client(OTHER_HOST).request, "GET", "/api/status", auth="a wrong guess")
    wait_for(_hashing_elsewhere, 20, what="the key derivation running in a thread of its own")
    status, _, _ = w.client().request("GET", "/login")        # the page answers meanwhile
    assert status == 200
    assert _hashing_elsewhere() and not guesser.ready()       # ... while the guess is still being hashed
    assert guesser.get(timeout=60)[0] == 401


def test_a_guessing_address_waits_and_the_owner_elsewhere_does_not(web):
    w = web()
    from appliance.throttle import FREE_FAILURES

    guesser = w.client(OTHER_HOST)
    for i in range(FREE_FAILURES + 1):                        # the last of these starts the wait
        assert guesser.request("GET", "/api/status", auth=f"guess {i}")[0] == 401
    status, headers, body = guesser.request("GET", "/api/status", auth="guess x")
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "too many wrong passwords" in json.loads(body)["error"]
    status, _, page = guesser.login("guess y")                # the login form says so too
    assert status == 429 and "try again in" in page
    # the owner, from another address, is not slowed at all
    owner = w.client()
    assert owner.request("GET", "/api/status", auth=PASSWORD)[0] == 200
    assert owner.login()[0] == 302
    # and the guessing address itself is only delayed, never locked out
    wait_for(lambda: guesser.request("GET", "/api/status", auth=PASSWORD)[0] == 200, 10,
             what="the right password accepted again from the address that guessed")
    assert guesser.request("GET", "/api/status", auth="guess z")[0] == 401   # a success cleared its count
    # one log line when the address started to wait, not one per guess
    lines = [e["message"] for e in w.rt.store.events(limit=100) if OTHER_HOST in e["message"]]
    assert len(lines) == 1 and "wrong passwords" in lines[0]



def test_parallel_guesses_from_one_address_queue_and_meet_the_wait(web):
    """All at once, so none would be counted before the others were checked, were they not queued."""
    from appliance.throttle import FREE_FAILURES

    w = web()
    guesser = w.client(OTHER_HOST)
    jobs = [gevent.spawn(guesser.request, "GET", "/api/status", auth=f"parallel guess {i}") for i in range(20)]
    statuses = sorted(j.get(timeout=60)[0] for j in jobs)
    assert statuses == [401] * (FREE_FAILURES + 1) + [429] * (20 - FREE_FAILURES - 1)
    assert w.client().request("GET", "/api/status", auth=PASSWORD)[0] == 200

# -- item 10: DNS rebinding and claiming the box -------------------------------------------------------
def test_only_names_of_this_box_are_served(web):
    import socket

    w = web(web_conf="hostnames = wallbox-server.firma.example, ampgate2", password_hash="")
    c = w.client()
    own = socket.gethostname().split(".")[0]
    for host in (f"127.0.0.1:{w.port}", "127.0.0.1", "localhost", f"[::1]:{w.port}", "192.168.1.10:8080",
                 own, f"{own}.local:{w.port}", f"{own}.lan", "wallbox-server.firma.example", "AMPGATE2:8080"):
        status, _, body = c.request("GET", "/api/status", headers={"Host": host})
        assert status == 200, (host, status, body)
    # a rebinding page's name reaches this address but is refused: nothing to read, nothing to claim
    for host in ("evil.example", f"evil.example:{w.port}", f"{own}.evil.example", "localhost.evil.example"):
        status, _, body = c.request("GET", "/api/status", headers={"Host": host})
        assert status == 421 and "[web] hostnames" in json.loads(body)["error"], host
        assert c.request("GET", "/setup", headers={"Host": host})[0] == 421
    assert "pbkdf2" not in w.rt.config.path.read_text()


def _claim(c: Client, code: str, password: str = PASSWORD) -> tuple[int, str]:
    status, _, html = c.request("POST", "/setup", form={"claim_code": code, "password": password,
                                                        "password2": password, "csrf_token": c.token("/setup")})
    return status, html


def test_claiming_the_box_needs_the_code_from_the_log_or_console(web, caplog):
    from appliance import claim
    from appliance.throttle import FREE_FAILURES

    w = web(password_hash="")
    code = claim.read(w.rt.data_dir)
    assert code and re.fullmatch(r"\d{4}-\d{4}", code)
    assert any(code in r.getMessage() for r in caplog.records)               # in the log at start
    stranger = w.client(OTHER_HOST)
    status, html = _claim(stranger, "")
    assert status == 403 and "wrong claim code" in html
    for i in range(FREE_FAILURES):
        assert _claim(stranger, f"{i:08d}")[0] == 403
    assert _claim(stranger, code)[0] == 429            # guessing it gets slow, even with the right code
    assert "pbkdf2" not in w.rt.config.path.read_text()
    installer = w.client()
    status, html = _claim(installer, code.replace("-", " "), "short")        # a bad password keeps the code
    assert status == 400 and "at least 8" in html
    assert _claim(installer, code)[0] == 302
    assert installer.request("GET", "/api/status")[0] == 200
    assert w.rt.config.section("web")["password_hash"].startswith("pbkdf2:")
    assert claim.read(w.rt.data_dir) is None                                 # used up
    status, headers, _ = w.client().request("GET", "/setup")
    assert status == 302 and headers["location"].endswith("/login")          # the box is claimed
    assert w.client().request("GET", "/api/status")[0] == 401


# -- item 8: slowloris, one host's connections, descriptors kept for the page ---------------------------
def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def test_a_request_trickled_in_byte_by_byte_is_cut_off_at_its_deadline(web, tmp_path):
    from appliance.webapp.server import make_server

    w = web()
    w.server.stop(timeout=1)
    w.server = make_server(w.rt, request_timeout=1.0)
    w.server.start()
    slow = socket.create_connection(("127.0.0.1", w.port), source_address=(OTHER_HOST, 0))
    slow.settimeout(0.2)
    head = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 10000
    sent = 0

    def trickle() -> bool:          # one byte per poll: every single read is quick, the request never ends
        nonlocal sent
        try:
            slow.sendall(head[sent:sent + 1])
            sent += 1
        except OSError:
            return True
        return _closed_by_server(slow)
    wait_for(trickle, 15, interval=0.1, what="the server to close a request that never completes")
    slow.close()
    # a whole body counts too: a POST whose body never arrives
    body = socket.create_connection(("127.0.0.1", w.port))
    body.settimeout(0.2)
    body.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\npassword=")
    wait_for(lambda: _closed_by_server(body), 15, what="the server to give up on the missing body")
    body.close()
    assert w.client().request("GET", "/login")[0] == 200


def test_one_host_cannot_take_every_connection_of_the_page(web):
    from appliance.webapp.server import PER_ADDRESS

    w = web()
    hog = []
    try:
        for _ in range(PER_ADDRESS):            # idle connections, as slowloris keeps them
            hog.append(socket.create_connection(("127.0.0.1", w.port), source_address=(OTHER_HOST, 0)))
        wait_for(lambda: w.server.limits.open.get(OTHER_HOST) == PER_ADDRESS, what="the host's connections counted")
        extra = socket.create_connection(("127.0.0.1", w.port), source_address=(OTHER_HOST, 0), timeout=10)
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        assert w.client().request("GET", "/login")[0] == 200        # everyone else gets in
        assert w.client().login()[0] == 302
    finally:
        for s in hog:
            s.close()
    wait_for(lambda: w.client(OTHER_HOST).request("GET", "/login")[0] == 200, what="the host served again")


def test_the_page_and_stations_keep_working_when_one_host_opens_hundreds_of_connections(tmp_path):
    """The real process with a service's usual small open-file limit (here 256, hard)."""
    import websocket

    from tests.web_appliance import Appliance

    with Appliance(tmp_path, max_open_files=256) as a:
        hog = []
        try:
            for _ in range(400):
                try:
                    hog.append(socket.create_connection(("127.0.0.1", a.web_port), timeout=5,
                                                        source_address=(OTHER_HOST, 0)))
                except OSError:
                    break
            conn = http.client.HTTPConnection("127.0.0.1", a.web_port, timeout=20)
            conn.request("GET", "/setup")
            assert conn.getresponse().status == 200
            conn.close()
            ws = websocket.create_connection(f"ws://127.0.0.1:{a.ocpp_port}/CP-FD", subprotocols=["ocpp1.6"],
                                             timeout=20)
            ws.send('[2, "h1", "Heartbeat", {}]')
            assert json.loads(ws.recv())[0] == 3
            ws.close()
        finally:
            for s in hog:
                s.close()
        assert "connection from 127.0.0.2 refused" in a.log.read_text()


def test_several_hosts_together_cannot_lock_out_one_more(tmp_path):
    """At the total, an idle connection of the address holding the most makes room for a newcomer."""
    from appliance.netguard import ConnectionLimits
    from appliance.webapp.server import make_server

    w = Web(tmp_path)
    w.server.stop(timeout=1)
    w.server = make_server(w.rt, limits=ConnectionLimits(per_address=4, total=8))
    w.server.start()
    hog = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):          # two hosts, each within its own limit, fill it all
            for _ in range(4):
                hog.append(socket.create_connection(("127.0.0.1", w.port), source_address=(source, 0)))
        wait_for(lambda: w.server.limits.count == 8, what="all 8 connections counted")
        assert w.client().request("GET", "/login")[0] == 200                  # a third host still gets in
        assert w.client("127.0.0.4").login()[0] == 302                        # and a fourth
        assert w.server.limits.count <= 8
        for s in hog:
            s.settimeout(0.2)
        closed = sum(_closed_by_server(s) for s in hog)
        assert closed >= 1                                                     # an idle one made room
    finally:
        for s in hog:
            s.close()
        w.stop()


def test_a_connection_being_answered_is_never_the_one_closed():
    from appliance.netguard import ConnectionLimits

    limits = ConnectionLimits(per_address=3, total=4)
    sleepers = [gevent.spawn(gevent.sleep, 60) for _ in range(4)]
    for g in sleepers[:3]:
        assert limits.admit("a", g) is None
    assert limits.admit("b", sleepers[3]) is None
    for g in sleepers[:3]:
        limits.set_busy("a", g, True)                    # all of a's are being answered
    assert limits.admit("c") == "more than 4 connections in total"
    limits.set_busy("a", sleepers[1], False)
    assert limits.admit("c") is None and limits.open == {"a": 2, "b": 1, "c": 1}
    gevent.sleep(0)
    assert sleepers[1].dead and not any(g.dead for i, g in enumerate(sleepers) if i != 1)
    limits.release("a", sleepers[1])                     # its handler's own release counts nothing twice
    assert limits.count == 4
    limits.release("c")                                  # admitted without a greenlet: released the same way
    assert limits.open == {"a": 2, "b": 1} and limits.count == 3
    gevent.killall(sleepers)
