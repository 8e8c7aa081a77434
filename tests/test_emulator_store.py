"""The emulator's object store: presigned URLs, signatures and expiry."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from clocks import FakeClock

from flask_trigger_outputs.emulator import Emulator, EmulatorServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=1_714_566_896.0)


@pytest.fixture
def server(clock: FakeClock) -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(clock=clock, url_expiry=300)) as running:
        running.emulator.store.put(
            "runs/out.json", b'{"json":{"ok":true}}', "application/super+json"
        )
        yield running


def xml_code(response: requests.Response) -> str:
    text = response.text
    return text[text.index("<Code>") + 6 : text.index("</Code>")]


def test_get_returns_body_and_content_type(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json")

    response = requests.get(url, timeout=5)

    assert response.status_code == 200
    assert response.content == b'{"json":{"ok":true}}'
    assert response.headers["Content-Type"] == "application/super+json"
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.headers["ETag"].startswith('"')


def test_url_carries_s3_style_query(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json")

    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))

    assert parts.path == "/storage/packets/runs/out.json"
    assert params["X-Amz-Expires"] == "300"
    assert set(params) >= {"X-Amz-Date", "X-Amz-Signature", "X-Amz-Algorithm"}
    assert parts.query.endswith("&X-Amz-Signature=" + params["X-Amz-Signature"])
    assert server.secret_key not in url


def test_put_then_get_keeps_content_type(server: EmulatorServer) -> None:
    put_url = server.emulator.presign("uploads/p.txt", "PUT")

    put = requests.put(put_url, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=5)
    get = requests.get(server.emulator.presign("uploads/p.txt"), timeout=5)

    assert put.status_code == 200
    assert get.content == b"hello"
    assert get.headers["Content-Type"] == "text/plain"
    assert server.emulator.stats.uploads["uploads/p.txt"] == 1


def test_get_url_cannot_put(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json", "GET")

    response = requests.put(url, data=b"overwrite", timeout=5)

    assert response.status_code == 403
    assert xml_code(response) == "SignatureDoesNotMatch"
    assert server.emulator.store.get("runs/out.json").data == b'{"json":{"ok":true}}'  # type: ignore[union-attr]


def test_missing_object_is_no_such_key(server: EmulatorServer) -> None:
    response = requests.get(server.emulator.presign("runs/none.json"), timeout=5)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/xml"
    assert xml_code(response) == "NoSuchKey"
    assert "<Key>runs/none.json</Key>" in response.text


def test_unsupported_method_is_405_xml(server: EmulatorServer) -> None:
    response = requests.delete(server.emulator.presign("runs/out.json"), timeout=5)

    assert response.status_code == 405
    assert xml_code(response) == "MethodNotAllowed"


def replace_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    params = [(k, value if k == name else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(params)))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: replace_param(url, "X-Amz-Expires", "999999"),
        lambda url: replace_param(url, "X-Amz-Date", "20990101T000000Z"),
        lambda url: replace_param(url, "X-Amz-Signature", "0" * 64),
        lambda url: url.replace("/runs/out.json", "/runs/other.json"),
        lambda url: url.replace("X-Amz-Algorithm=", "X-Amz-Algorithm=x"),
        lambda url: url + "&extra=1",
    ],
    ids=["expires", "date", "signature", "path", "algorithm", "appended"],
)
def test_tampered_url_is_rejected(server: EmulatorServer, tamper: object) -> None:
    url = server.emulator.presign("runs/out.json")

    response = requests.get(tamper(url), timeout=5)  # type: ignore[operator]

    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/xml"
    assert xml_code(response) in {"SignatureDoesNotMatch", "AccessDenied"}
    assert b"ok" not in response.content


def test_reencoded_query_is_rejected(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json")
    # Decoding %2F in the credential, as a careless client might, breaks the signature.
    reencoded = url.replace("%2F", "/")

    response = requests.get(reencoded, timeout=5)

    assert response.status_code == 403
    assert xml_code(response) == "SignatureDoesNotMatch"


def test_missing_signature_is_access_denied(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json").split("&X-Amz-Signature=")[0]

    response = requests.get(url, timeout=5)

    assert response.status_code == 403
    assert xml_code(response) == "AccessDenied"


def test_authorization_header_is_rejected(server: EmulatorServer) -> None:
    url = server.emulator.presign("runs/out.json")

    response = requests.get(
        url, headers={"Authorization": f"Bearer {server.secret_key}"}, timeout=5
    )

    assert response.status_code == 403
    assert xml_code(response) == "AccessDenied"
    assert "Authorization" in response.text


def test_url_expires_after_its_lifetime(server: EmulatorServer, clock: FakeClock) -> None:
    url = server.emulator.presign("runs/out.json")

    clock.advance(299)
    assert requests.get(url, timeout=5).status_code == 200

    clock.advance(2)
    response = requests.get(url, timeout=5)
    assert response.status_code == 403
    assert xml_code(response) == "AccessDenied"
    assert "<Message>Request has expired</Message>" in response.text


def test_fresh_url_after_expiry_works(server: EmulatorServer, clock: FakeClock) -> None:
    old = server.emulator.presign("runs/out.json")
    clock.advance(600)

    new = server.emulator.presign("runs/out.json")

    assert requests.get(old, timeout=5).status_code == 403
    assert requests.get(new, timeout=5).status_code == 200


def test_url_expiry_is_configurable(clock: FakeClock) -> None:
    with EmulatorServer(Emulator(clock=clock, url_expiry=5)) as server:
        server.emulator.store.put("k", b"v", "text/plain")
        url = server.emulator.presign("k")
        assert "X-Amz-Expires=5&" in url

        clock.advance(6)
        assert requests.get(url, timeout=5).status_code == 403


def test_urls_from_another_emulator_are_rejected(server: EmulatorServer) -> None:
    other = Emulator(secret_key=server.secret_key)
    other.base_url = server.url
    url = other.presign("runs/out.json")

    response = requests.get(url, timeout=5)

    assert response.status_code == 403
    assert xml_code(response) == "SignatureDoesNotMatch"
    other.close()


def test_run_urls_use_the_request_host(clock: FakeClock) -> None:
    with EmulatorServer(Emulator(clock=clock, offload_threshold=1)) as server:
        run_id = server.emulator.create_run(output={"a": 1})
        localhost_url = server.url.replace("127.0.0.1", "localhost")
        headers = {"Authorization": f"Bearer {server.secret_key}"}

        run = requests.get(f"{localhost_url}/api/v3/runs/{run_id}", headers=headers, timeout=5)

        presigned = run.json()["outputPresignedUrl"]
        assert presigned.startswith(localhost_url + "/storage/")
        assert requests.get(presigned, timeout=5).status_code == 200
