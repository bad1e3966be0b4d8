"""Gateway details: byte-for-byte relaying of signed meter data and DataTransfer, a backend that
fails in every way never holding up a wallbox's answers, and the queue across a backend outage."""
import json

import pytest
import websocket
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.gateway.service import Gateway
from appliance.ocpp import rawjson
from appliance.ocpp.rpc import raw_elements
from conftest import wait_for
from gateway_peers import Backend

TS = "2026-12-03T10:00:00Z"


def conf(port: int, offline_auth: str = "cache") -> str:
    return (f"[gateway]\noffline_auth = {offline_auth}\n[devices]\n[[box]]\ntype = ocpp16\naddress = RAW1\n"
            f"gateway_url = ws://127.0.0.1:{port}/\ngateway_id = GWRAW\n")


class RawBox:
    """A wallbox writing its frames by hand (the `websocket-client` package): exact bytes on the wire."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, subprotocols=["ocpp1.6"], timeout=20)
        self.n = 0

    def call(self, action: str, payload_text: str) -> str:
        """Send a CALL with this exact payload text; return the answer's payload text. CALLs from the
        appliance meanwhile (its smart-charging set-up) are answered as a simple box would."""
        self.n += 1
        msg_id = f"m{self.n}"
        self.ws.send(f'[2,"{msg_id}","{action}",{payload_text}]')
        while True:
            frame = self.ws.recv()
            parts = raw_elements(frame)
            if parts[0] == "2":
                answer = '{"status":"Accepted"}' if json.loads(parts[2]) != "GetConfiguration" else '{}'
                self.ws.send(f"[3,{parts[1]},{answer}]")
            elif json.loads(parts[1]) == msg_id:
                return parts[2]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def relayed(central):
    made = []

    def make(*backend_args: str, offline_auth: str = "cache", backend: bool = True):
        b = Backend(*backend_args) if backend else None
        port = b.port if b else __import__("conftest").free_port()
        cs = central(conf(port, offline_auth))
        gw = Gateway(cs.runtime)
        cs.runtime.gateway = gw
        gw.start()
        box = RawBox(cs.url("RAW1"))
        made.append((b, gw, box))
        return cs, b, box, port
    yield make
    for b, gw, box in made:
        box.close()
        gw.stop()
        if b is not None:
            b.close()


def ocmf(key: ec.EllipticCurvePrivateKey) -> str:
    """An OCMF string as a calibration-law meter writes it: payload and ECDSA signature (hex DER)."""
    payload = '{"FV":"1.0","GI":"EBee","GS":"1234","RD":[{"TM":"2026-12-03T10:00:00,000+0000 S","RV":1.10,"RU":"kWh"}]}'
    sig = key.sign(payload.encode(), ec.ECDSA(hashes.SHA256())).hex()
    return f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'


def test_signed_meter_data_and_data_transfer_arrive_byte_for_byte(relayed):
    cs, backend, box, _ = relayed()
    boot = '{ "chargePointVendor":"innogy", "chargePointModel":"eBox professional S","firmwareVersion":"1.10" }'
    box.call("BootNotification", boot)
    wait_for(lambda: backend.raw_calls("GWRAW", "BootNotification"), what="boot relayed")
    assert raw_elements(backend.raw_calls("GWRAW", "BootNotification")[0])[3] == boot

    key = ec.generate_private_key(ec.SECP256R1())
    signed = json.dumps(ocmf(key))           # as JSON text: every quote escaped
    start = box.call("StartTransaction", f'{{"connectorId":1,"idTag":"J\\u00e4ger","meterStart":1000,"timestamp":"{TS}"}}')
    tx = rawjson.value(start, "transactionId")
    mv = (f'{{"connectorId":1, "transactionId":{tx},"meterValue":[{{"timestamp":"{TS}","sampledValue":'
          f'[{{"value":{signed},"format":"SignedData","context":"Sample.Periodic","measurand":'
          f'"Energy.Active.Import.Register","unit":"kWh"}}]}}]}}')
    box.call("MeterValues", mv)
    stop = (f'{{"transactionId":{tx},"meterStop":2000,"timestamp":"{TS}","reason":"Local","transactionData":'
            f'[{{"timestamp":"{TS}","sampledValue":[{{"value":{signed},"format":"SignedData"}}]}}]}}')
    box.call("StopTransaction", stop)
    dt = '{"vendorId":"giro-e","messageId":"receipt","data":"{\\"name\\":\\"J\\u00e4ger\\",\\"amount\\":1.10,\\"max\\":1e3}"}'
    answer = box.call("DataTransfer", dt)
    assert json.loads(answer) == {"status": "Accepted", "data": "backend saw giro-e"}
    assert raw_elements(backend.raw_calls("GWRAW", "DataTransfer")[0])[3] == dt      # unchanged, escapes and all

    wait_for(lambda: backend.raw_calls("GWRAW", "StopTransaction"), what="stop relayed")
    [got_start] = [raw_elements(r)[3] for r in backend.raw_calls("GWRAW", "StartTransaction")]
    assert '"idTag":"J\\u00e4ger"' in got_start
    [got_mv] = [raw_elements(r)[3] for r in backend.raw_calls("GWRAW", "MeterValues")]
    backend_tx = 5001
    assert got_mv == rawjson.replace(mv, {"connectorId": 1, "transactionId": backend_tx})   # only the id differs
    [got_stop] = [raw_elements(r)[3] for r in backend.raw_calls("GWRAW", "StopTransaction")]
    assert got_stop == rawjson.replace(stop, {"transactionId": backend_tx})
    # the backend verifies the calibration-law signature on what it received
    value = json.loads(got_mv)["meterValue"][0]["sampledValue"][0]["value"]
    _, payload, sig = value.split("|")
    key.public_key().verify(bytes.fromhex(json.loads(sig)["SD"]), payload.encode(), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("mode", ["callerror", "garbage", "silent"])
def test_a_failing_backend_never_holds_up_the_wallbox(relayed, mode):
    cs, backend, box, _ = relayed("--mode", mode, offline_auth="all")
    answers = [box.call("BootNotification", '{"chargePointVendor":"V","chargePointModel":"M"}'),
               box.call("StatusNotification", '{"connectorId":1,"errorCode":"NoError","status":"Preparing"}'),
               box.call("Authorize", '{"idTag":"CARD"}'),
               box.call("StartTransaction", f'{{"connectorId":1,"idTag":"CARD","meterStart":0,"timestamp":"{TS}"}}'),
               box.call("Heartbeat", "{}")]
    assert json.loads(answers[0])["status"] == "Accepted"
    assert json.loads(answers[2])["idTagInfo"]["status"] == "Accepted"       # offline_auth = all
    assert json.loads(answers[3])["idTagInfo"]["status"] == "Accepted"
    tx = rawjson.value(answers[3], "transactionId")
    box.call("StopTransaction", f'{{"transactionId":{tx},"meterStop":10,"timestamp":"{TS}"}}')
    status = lambda: cs.runtime.status()["devices"][0]["gateway"]  # noqa: E731
    wait_for(lambda: status()["last_error"], timeout=30, what="the backend's failure shown")
    assert status()["state"] != "connected" and status()["queued"] == 2     # Start and Stop kept for later


def test_queue_survives_a_backend_outage_and_goes_out_in_order_once(relayed):
    cs, _, box, port = relayed(backend=False, offline_auth="cache")
    box.call("BootNotification", '{"chargePointVendor":"V","chargePointModel":"M"}')
    assert json.loads(box.call("Authorize", '{"idTag":"NEVERSEEN"}'))["idTagInfo"]["status"] == "Invalid"
    start = box.call("StartTransaction", f'{{"connectorId":1,"idTag":"T1","meterStart":0,"timestamp":"{TS}"}}')
    tx = rawjson.value(start, "transactionId")
    for i in range(1, 4):
        box.call("MeterValues", f'{{"connectorId":1,"transactionId":{tx},"meterValue":[{{"timestamp":"{TS}",'
                                f'"sampledValue":[{{"value":"{i * 100}"}}]}}]}}')
    box.call("MeterValues", '{"connectorId":1,"meterValue":[{"timestamp":"2026-12-03T10:00:00Z","sampledValue":[{"value":"7"}]}]}')
    box.call("StopTransaction", f'{{"transactionId":{tx},"meterStop":400,"timestamp":"{TS}"}}')
    gw = cs.runtime.status()["devices"][0]["gateway"]
    assert gw["state"] in ("connecting", "offline") and gw["queued"] == 5   # not the MeterValues outside a transaction
    backend = Backend(port=port)
    try:
        wait_for(lambda: backend.raw_calls("GWRAW", "StopTransaction"), timeout=30, what="queue drained")
        calls = [(f[2], f[3]) for f in backend.frames("GWRAW")]
        order = [a for a, _ in calls if a != "Heartbeat"]
        assert order == ["BootNotification", "StartTransaction", "MeterValues", "MeterValues", "MeterValues",
                         "StopTransaction"]
        assert [p["meterValue"][0]["sampledValue"][0]["value"] for a, p in calls if a == "MeterValues"] == \
            ["100", "200", "300"]
        wait_for(lambda: cs.runtime.status()["devices"][0]["gateway"]["queued"] == 0, what="queue empty")
    finally:
        backend.close()


def test_tls_to_the_backend_as_section_6_2_says(central, tmp_path):
    """No CA stored: any server; the backend's CA stored: it must verify; another CA: refused, and
    the page says why; a client certificate is presented (Security Profile 3)."""
    from appliance.certs import manage
    from certkit import Pki, write

    backend_pki, client_pki, other = Pki("Backend Root"), Pki("Client Root"), Pki("Other Root")
    cert, key = backend_pki.leaf("localhost")
    pem = write(tmp_path, "backend.pem", key + cert)
    client_ca = write(tmp_path, "client-ca.pem", client_pki.pem)
    backend = Backend("--cert", str(pem), "--client-ca", str(client_ca))
    try:
        cs = central("[devices]\n[[box]]\ntype = ocpp16\naddress = TLS1\n"
                     f"gateway_url = wss://localhost:{backend.port}/\ngateway_id = GWTLS\n")
        data = cs.runtime.data_dir
        ccert, ckey = client_pki.leaf("GWTLS", usage="client", san=None)
        manage.import_client(data, ccert, ckey, None)
        manage.add_ca(data, other.pem)                   # a CA that did not sign the backend: refused
        gw = Gateway(cs.runtime)
        cs.runtime.gateway = gw
        gw.start()
        box = RawBox(cs.url("TLS1"))
        try:
            box.call("BootNotification", '{"chargePointVendor":"V","chargePointModel":"M"}')
            status = lambda: cs.runtime.status()["devices"][0]["gateway"]  # noqa: E731
            wait_for(lambda: "certificate" in (status()["last_error"] or ""), timeout=20, what="verification failure")
            manage.add_ca(data, backend_pki.pem)         # now the backend's root is trusted too
            wait_for(lambda: status()["state"] == "connected", timeout=30, what="verified connection")
            connected = backend.wait(lambda e: e["event"] == "connected" and e["cp"] == "GWTLS")
            assert connected["client_cn"] == "GWTLS"     # our client certificate was shown
        finally:
            box.close()
            gw.stop()
    finally:
        backend.close()


def test_console_status_line_shows_the_backend():
    from appliance.console.shell import _device_line

    line = _device_line({"name": "garage", "type": "ocpp16", "state": "charging", "online": True,
                         "gateway": {"state": "offline", "queued": 12, "last_error": "connection refused"}})
    assert line.endswith("backend offline, 12 queued (connection refused)")


def test_station_status_as_connector_0(central):
    cs = central("[gateway]\nstatus_connector0 = true\n[load_management]\nmode = monitor\n")
    gw = Gateway(cs.runtime)
    assert gw._own_status() == "Unavailable"
    cs.runtime.config.data["load_management"]["mode"] = "active"
    assert gw._own_status() == "Available"
    cs.runtime.lm_status["meter_faults"] = {"grid": "no answer"}
    assert gw._own_status() == "Faulted"
    assert gw._statuses([])[0] == (0, '{"connectorId":0,"errorCode":"OtherError","status":"Faulted",'
                                      '"info":"grid meter failure or overdraft"}')
