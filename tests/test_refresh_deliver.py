"""Deliveries against real servers on 127.0.0.1: an SMTP server (aiosmtpd, plain, STARTTLS with a self-signed
certificate and login, implicit TLS) and an HTTP server receiving webhooks. The waits between tries are recorded,
not slept."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.conftest import free_port

from tierwise.refresh.deliver import SIGNATURE_HEADER, post_webhook, send_mail, sign
from tierwise.refresh.mail import MailContent
from tierwise.refresh.settings import DeliverySettings

BACKOFF = 0.25
CONTENT = MailContent(
    subject="[tierwise] 新晋A级客户: 2 位客户 (运行 r-1, 截至 2024-06-30)",
    text="运行 r-1 中有 2 位客户符合提醒「新晋A级客户」。\n张三 · 李四\n",
    html="<p>运行 r-1 中有 2 位客户符合提醒「新晋A级客户」。</p><p>张三 &amp; 李四</p>",
)


def settings(**overrides: Any) -> DeliverySettings:
    values: dict[str, Any] = {
        "sender": "tierwise@example.com",
        "smtp_host": "127.0.0.1",
        "smtp_security": "none",
        "attempts": 4,
        "backoff_seconds": BACKOFF,
        "timeout_seconds": 5,
    }
    return DeliverySettings(**{**values, **overrides})


def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


# --- SMTP ------------------------------------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler keeping what it accepts; `data_replies` / `rcpt_replies` answer the first calls."""

    def __init__(self, data_replies: list[str] | None = None, rcpt_replies: list[str] | None = None) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.data_replies = list(data_replies or [])
        self.rcpt_replies = list(rcpt_replies or [])
        self.data_calls = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def controllers() -> Iterator[list[Controller]]:
    """The SMTP servers a test starts (start_smtp), stopped after it."""
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def start_smtp(controllers: list[Controller], inbox: Inbox, **parameters: Any) -> int:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **parameters)
    controller.start()
    controllers.append(controller)
    return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl: `cryptography` is not in the environment)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


class Accounts:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()
        self.logins: list[bytes] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data.login)
        ok = auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


def check_delivered(inbox: Inbox, to: str) -> None:
    assert len(inbox.messages) == 1
    mail_from, rcpt_tos, message = inbox.messages[0]
    assert (mail_from, rcpt_tos) == ("tierwise@example.com", [to])
    assert message["Subject"] == CONTENT.subject
    assert message["From"] == "tierwise@example.com"
    assert message["To"] == to
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    # SMTP carries lines ending in CRLF
    assert text.get_content().replace("\r\n", "\n") == CONTENT.text
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == CONTENT.html


def test_mail_is_delivered_with_both_parts_and_chinese(controllers: list[Controller]) -> None:
    inbox = Inbox()
    port = start_smtp(controllers, inbox)
    sleeps: list[float] = []
    outcome = send_mail(settings(smtp_port=port), "sales-lead@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, sleeps) == ("delivered", 1, [])
    check_delivered(inbox, "sales-lead@example.com")


def test_mail_retries_a_temporary_refusal_with_doubling_waits(controllers: list[Controller]) -> None:
    inbox = Inbox(data_replies=["451 4.3.0 try again later", "451 4.3.0 try again later"])
    port = start_smtp(controllers, inbox)
    sleeps: list[float] = []
    outcome = send_mail(settings(smtp_port=port), "lead@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts) == ("delivered", 3)
    assert sleeps == [BACKOFF, 2 * BACKOFF]
    assert inbox.data_calls == 3
    check_delivered(inbox, "lead@example.com")


def test_mail_gives_up_at_once_on_a_permanent_refusal(controllers: list[Controller]) -> None:
    inbox = Inbox(rcpt_replies=["550 5.1.1 <nobody@example.com>: no such mailbox"])
    port = start_smtp(controllers, inbox)
    sleeps: list[float] = []
    outcome = send_mail(settings(smtp_port=port), "nobody@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail, sleeps) == ("failed", 1, "SMTP 550", [])
    assert inbox.messages == []


def test_mail_temporary_refusals_until_the_last_try_fail(controllers: list[Controller]) -> None:
    inbox = Inbox(data_replies=["421 4.7.0 busy"] * 5)
    port = start_smtp(controllers, inbox)
    sleeps: list[float] = []
    outcome = send_mail(settings(smtp_port=port, attempts=3), "a@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 3, "SMTP 421 after 3 tries")
    assert sleeps == [BACKOFF, 2 * BACKOFF]
    assert inbox.data_calls == 3


def test_mail_to_a_closed_port_fails_after_every_try() -> None:
    sleeps: list[float] = []
    config = settings(smtp_port=closed_port(), attempts=3)
    outcome = send_mail(config, "a@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert outcome.detail == "connection refused after 3 tries"
    assert sleeps == [BACKOFF, 2 * BACKOFF]


def test_mail_with_a_line_break_in_the_address_is_refused_before_sending() -> None:
    outcome = send_mail(settings(smtp_port=closed_port()), "a@example.com\nBcc: x@evil.example", CONTENT, env={})
    assert (outcome.status, outcome.attempts) == ("failed", 0)
    assert "example" not in outcome.detail


def test_mail_over_starttls_with_login(
    controllers: list[Controller], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    accounts = Accounts("robot", "s3cret-pw")
    port = start_smtp(
        controllers, inbox, tls_context=server_context(certificate), require_starttls=True,
        authenticator=accounts, auth_required=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the client trusts the test's certificate
    env = {"SMTP_USER": "robot", "SMTP_PASSWORD": "s3cret-pw"}
    config = settings(smtp_port=port, smtp_security="starttls", smtp_user_env="SMTP_USER",
                      smtp_password_env="SMTP_PASSWORD")  # fmt: skip
    outcome = send_mail(config, "lead@example.com", CONTENT, env=env)
    assert outcome.status == "delivered", outcome.detail
    assert accounts.logins == [b"robot"]
    check_delivered(inbox, "lead@example.com")

    # a wrong password is refused for good (535), without a retry
    sleeps: list[float] = []
    wrong = {**env, "SMTP_PASSWORD": "wrong"}
    outcome = send_mail(config, "lead@example.com", CONTENT, env=wrong, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail, sleeps) == ("failed", 1, "SMTP 535 (login refused)", [])
    assert "wrong" not in outcome.detail and "robot" not in outcome.detail

    # without the user variable there is no login: the server, which requires one, refuses the mail
    logins = len(accounts.logins)
    outcome = send_mail(config, "lead@example.com", CONTENT, env={}, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 1, "SMTP 530")
    assert len(accounts.logins) == logins
    assert set(accounts.logins) == {b"robot"}  # smtplib tried the wrong password with each mechanism offered
    assert len(inbox.messages) == 1

    # smtplib cannot send a non-ASCII login: a clear failure, not a traceback
    outcome = send_mail(config, "lead@example.com", CONTENT, env={**env, "SMTP_PASSWORD": "密码"})
    assert (outcome.status, outcome.attempts) == ("failed", 0)
    assert "non-ASCII" in outcome.detail and "密码" not in outcome.detail


def test_mail_over_starttls_refuses_an_untrusted_certificate(
    controllers: list[Controller], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    port = start_smtp(controllers, inbox, tls_context=server_context(certificate), require_starttls=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    sleeps: list[float] = []
    outcome = send_mail(settings(smtp_port=port, smtp_security="starttls"), "a@example.com", CONTENT, env={},
                        sleep=sleeps.append)  # fmt: skip
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 1, "TLS certificate not trusted")
    assert inbox.messages == []


def test_mail_over_implicit_tls(
    controllers: list[Controller], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    port = start_smtp(controllers, inbox, ssl_context=server_context(certificate))
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    outcome = send_mail(settings(smtp_port=port, smtp_security="tls"), "lead@example.com", CONTENT, env={})
    assert outcome.status == "delivered", outcome.detail
    check_delivered(inbox, "lead@example.com")


# --- webhooks --------------------------------------------------------------------------------------------------


class Hook(ThreadingHTTPServer):
    """Answers POSTs from `script` ((status, headers, delay) per request, then 200) and keeps what it received."""

    def __init__(self, script: list[tuple[int, dict[str, str], float]]) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.script = list(script)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/tierwise"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, headers, delay = self.server.script.pop(0) if self.server.script else (200, {}, 0.0)
        time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up waiting (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_hook(script: list[tuple[int, dict[str, str], float]] | None = None) -> Hook:
    hook = Hook(script or [])
    threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return hook


@pytest.fixture
def hooks() -> Iterator[list[Hook]]:
    servers: list[Hook] = []
    yield servers
    for hook in servers:
        hook.shutdown()
        hook.server_close()


PAYLOAD = {
    "rule": "new_grade_a",
    "label": "新晋A级客户",
    "run_id": "r-20240630",
    "as_of": date(2024, 6, 30),
    "customers": [{"customer_id": "C001", "name": "张三", "owner": "李四", "changes": {"grade": {"previous": "B",
                                                                                              "now": "A"}}}],
}  # fmt: skip
EXPECTED = {**PAYLOAD, "as_of": "2024-06-30"}


def test_webhook_body_and_signature(hooks: list[Hook]) -> None:
    hook = start_hook()
    hooks.append(hook)
    secret = "webhook-秘密"
    outcome = post_webhook(hook.url, PAYLOAD, secret=secret, settings=settings(), event_id="ev-1")
    assert (outcome.status, outcome.attempts, outcome.detail) == ("delivered", 1, "HTTP 200")
    [(headers, body)] = hook.received
    assert json.loads(body.decode("utf-8")) == EXPECTED
    assert "张三".encode() in body  # not \u escapes
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    assert sign(body, secret) == expected
    assert not hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], sign(body, "another secret"))
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-tierwise-event"] == "ev-1"
    assert headers["user-agent"] == "tierwise"


def test_webhook_without_a_secret_is_not_signed(hooks: list[Hook]) -> None:
    hook = start_hook()
    hooks.append(hook)
    for secret in (None, ""):
        outcome = post_webhook(hook.url, PAYLOAD, secret=secret, settings=settings(), event_id="ev-2")
        assert outcome.status == "delivered"
    assert [SIGNATURE_HEADER.lower() in headers for headers, _ in hook.received] == [False, False]


def test_webhook_retries_server_errors(hooks: list[Hook]) -> None:
    hook = start_hook([(503, {}, 0.0), (503, {}, 0.0)])
    hooks.append(hook)
    sleeps: list[float] = []
    outcome = post_webhook(hook.url, PAYLOAD, secret="k", settings=settings(), event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("delivered", 3, "HTTP 200 after 3 tries")
    assert sleeps == [BACKOFF, 2 * BACKOFF]
    assert len(hook.received) == 3
    assert len({body for _, body in hook.received}) == 1  # the same body, so the same signature, every time


def test_webhook_server_errors_until_the_last_try_fail(hooks: list[Hook]) -> None:
    hook = start_hook([(500, {}, 0.0)] * 4)
    hooks.append(hook)
    sleeps: list[float] = []
    outcome = post_webhook(hook.url, PAYLOAD, secret="k", settings=settings(), event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 4, "HTTP 500 after 4 tries")
    assert sleeps == [BACKOFF, 2 * BACKOFF, 4 * BACKOFF]
    assert len(hook.received) == 4


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_webhook_client_errors_and_redirects_are_not_retried(hooks: list[Hook], status: int) -> None:
    hook = start_hook([(status, {"Location": "http://127.0.0.1:1/elsewhere"}, 0.0)])
    hooks.append(hook)
    sleeps: list[float] = []
    outcome = post_webhook(hook.url, PAYLOAD, secret="k", settings=settings(), event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail, sleeps) == ("failed", 1, f"HTTP {status}", [])
    assert len(hook.received) == 1


@pytest.mark.parametrize(("retry_after", "waited"), [("7", 7.0), ("3600", 60.0), ("0", 0.0), ("soon", BACKOFF)])
def test_webhook_honours_retry_after(hooks: list[Hook], retry_after: str, waited: float) -> None:
    hook = start_hook([(429, {"Retry-After": retry_after}, 0.0)])
    hooks.append(hook)
    sleeps: list[float] = []
    outcome = post_webhook(hook.url, PAYLOAD, secret="k", settings=settings(), event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts) == ("delivered", 2)
    assert sleeps == [waited]


def test_webhook_timeouts_are_retried(hooks: list[Hook]) -> None:
    hook = start_hook([(200, {}, 1.0), (200, {}, 1.0)])
    hooks.append(hook)
    sleeps: list[float] = []
    config = settings(attempts=2, timeout_seconds=0.2)
    outcome = post_webhook(hook.url, PAYLOAD, secret="k", settings=config, event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 2, "timed out after 2 tries")
    assert sleeps == [BACKOFF]


def test_webhook_to_a_closed_port_fails_after_every_try() -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{closed_port()}/hook"
    outcome = post_webhook(url, PAYLOAD, secret="k", settings=settings(attempts=3), event_id="ev", sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, outcome.detail) == ("failed", 3, "connection refused after 3 tries")
    assert sleeps == [BACKOFF, 2 * BACKOFF]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "file:///etc/passwd", "127.0.0.1:8000/hook"])
def test_webhook_only_posts_to_http_urls(url: str) -> None:
    outcome = post_webhook(url, PAYLOAD, secret="k", settings=settings(), event_id="ev")
    assert (outcome.status, outcome.attempts) == ("failed", 0)


def test_import_stays_light() -> None:
    """The refresh job imports deliver on every run: standard library only, no pydantic, no jinja2."""
    heavy = "('pydantic', 'jinja2', 'ibis')"
    code = f"import sys, tierwise.refresh.deliver; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
