"""`ampgate cert ...` as users run it: exit 0 on success, 2 with one clear line on bad usage or input,
never a traceback; --help on every action."""
import json
import subprocess

import pytest

from appliance import cli
from conftest import PYTHON, ROOT, subprocess_env

ACTIONS = [["show"], ["import"], ["regenerate"], ["ca"], ["ca", "add"], ["ca", "remove"], ["ca", "list"], ["client"],
           ["make-ca"], ["make-cert"], ["make-csr"], ["sign"]]


def argv(args, data):
    return ["cert"] + (["--data", str(data)] if data else []) + [str(a) for a in args]


def run(*args, data=None, env=None, stdin=None):
    """A real `python -m appliance cert ...` process."""
    e = subprocess_env()
    e.update(env or {})
    return subprocess.run([PYTHON, "-m", "appliance", *argv(args, data)], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=60, stdin=stdin)


@pytest.fixture
def inproc(capsys):
    """The same entry point in this process (fast), with argparse's SystemExit turned into a status."""
    def call(*args, data=None):
        try:
            code = cli.main(argv(args, data))
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return call


def one_error_line(r, text):
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and text in errors[0], r.stderr


@pytest.mark.parametrize("action", ACTIONS, ids=" ".join)
def test_help_everywhere(action, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["cert", *action, "--help"])
    assert e.value.code == 0
    assert "usage: ampgate cert" in capsys.readouterr().out


def test_workflow_and_exit_codes(tmp_path, inproc):
    data = tmp_path / "var"
    r = run("show", "--json", data=data)  # first use makes the onboard certificate
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    assert state["onboard"] is True and "DNS:localhost" in state["server"]["san"] and state["client"] is None

    key, crt = tmp_path / "s.key", tmp_path / "s.crt"
    r = inproc("make-cert", "--subject", "/O=Müller Ladetechnik GmbH/CN=localhost", "--key-out", key, "--out", crt,
            "--key-password", "pw")
    assert r.returncode == 0, r.stderr
    # the key password from the environment, `--data` after the action
    r = run("import", crt, key, "--data", data, env={"AMPGATE_KEY_PASSWORD": "pw"})
    assert r.returncode == 0 and "O=Müller Ladetechnik GmbH" in r.stdout, r.stderr
    r = inproc("show", data=data)
    assert r.returncode == 0 and "(imported)" in r.stdout and "Müller" in r.stdout

    one_error_line(run("import", crt, key, "--key-password", "wrong", data=data), "wrong password for the key")
    one_error_line(run("import", crt, key, data=data, stdin=subprocess.DEVNULL), "the key is encrypted")
    one_error_line(inproc("import", crt, tmp_path / "missing.key", data=data), "cannot read")
    one_error_line(inproc("ca", "add", key, data=data), "no certificate")
    one_error_line(inproc("ca", "remove", "abcdef0123", data=data), "no CA certificate with fingerprint")
    one_error_line(inproc("make-cert", "--subject", "/C=Germany/CN=x", "--key-out", tmp_path / "x.key", data=data), "two-letter")
    one_error_line(inproc("make-cert", "--subject", "/CN=x", "--key-out", key, data=data), "exists; use --force")
    one_error_line(inproc("sign", crt, "--ca-cert", crt, "--ca-key", key, data=data), "no certificate request")
    # nothing is written when the request is bad
    one_error_line(inproc("make-cert", "--subject", "/CN=y", "--days", "0", "--key-out", tmp_path / "y.key", data=data),
                   "use 1 to 36500 days")
    one_error_line(inproc("make-cert", "--subject", "/CN=y", "--ca-cert", crt, "--ca-key", tmp_path / "x.key",
                          "--key-out", tmp_path / "y.key", data=data), "cannot read")
    assert inproc("make-csr", "--subject", "/CN=z", "--ec", "--key-out", tmp_path / "z.key", "--out", tmp_path / "z.csr").returncode == 0
    one_error_line(inproc("make-cert", "--subject", "/CN=y", "--ca-cert", crt, "--ca-key", tmp_path / "z.key",
                          "--key-out", tmp_path / "y.key", data=data), "is not the key of")
    assert not (tmp_path / "y.key").exists() and not (tmp_path / "x.key").exists()
    # argparse's own usage errors: exit 2, usage plus one error line
    one_error_line(run("import", crt, data=data), "the following arguments are required: KEY")
    one_error_line(inproc("frobnicate", data=data), "invalid choice")

    r = inproc("regenerate", data=data)
    assert r.returncode == 0 and "new onboard certificate" in r.stdout
    assert json.loads(inproc("show", "--json", data=data).stdout)["onboard"] is True


def test_ca_and_client_commands(tmp_path, inproc):
    data = tmp_path / "var"
    ca_key, ca = tmp_path / "ca.key", tmp_path / "ca.crt"
    assert inproc("make-ca", "--subject", "CN=Site Root,O=Ladepark Süd,C=DE", "--ec", "--key-out", ca_key, "--out", ca).returncode == 0
    r = inproc("make-cert", "--client", "--subject", "/CN=ampgate-gw", "--ca-cert", ca, "--ca-key", ca_key, "--ec",
            "--key-out", tmp_path / "c.key", "--out", tmp_path / "c.crt")
    assert r.returncode == 0, r.stderr
    assert inproc("client", tmp_path / "c.crt", tmp_path / "c.key", data=data).returncode == 0
    r = inproc("ca", "add", ca, data=data)
    assert r.returncode == 0 and "O=Ladepark Süd" in r.stdout
    listed = json.loads(inproc("ca", "list", "--json", data=data).stdout)
    assert [i["common_name"] for i in listed] == ["Site Root"]
    state = json.loads(inproc("show", "--json", data=data).stdout)
    assert state["client"]["common_name"] == "ampgate-gw" and state["client"]["extended_key_usage"] == ["clientAuth"]
    assert inproc("ca", "remove", listed[0]["fingerprint_sha256"], data=data).returncode == 0
    assert inproc("client", "--remove", data=data).returncode == 0
    r = inproc("show", data=data)
    assert "trusted CAs: none" in r.stdout and "client certificate: none" in r.stdout
