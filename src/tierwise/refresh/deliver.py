"""Sending what an alert or a digest says: a signed JSON POST to a webhook, a mail over SMTP (docs/refresh.md).

Both retry what may pass on the next try (no connection, a timeout, HTTP 5xx or 429, an SMTP 4xx reply) with a
doubling wait, and give up at once on what will not (HTTP 4xx, an SMTP 5xx reply, an untrusted certificate). The
outcome's detail names only the kind of failure — never the payload, an address or a server's reply text, which
may echo either — because it is stored in the refresh log and printed. Standard library only: the refresh job
imports this module on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tierwise.refresh.mail import MailContent
    from tierwise.refresh.settings import DeliverySettings

SIGNATURE_HEADER = "X-Tierwise-Signature"
EVENT_HEADER = "X-Tierwise-Event"
# A server asking for more than this (Retry-After) is waited for this long: a refresh must not hang for hours.
RETRY_AFTER_CAP = 60.0


@dataclass
class Outcome:
    status: str  # "delivered" | "failed"
    attempts: int
    detail: str  # the kind of result only ("HTTP 503 after 4 tries"): never payload, addresses, secrets


@dataclass
class _Try:
    ok: bool
    detail: str
    retry: bool = False
    wait: float | None = None  # the server's own Retry-After, instead of the backoff


def _with_retries(attempts: int, backoff: float, sleep: Callable[[float], None], once: Callable[[], _Try]) -> Outcome:
    attempt = 0
    while True:
        attempt += 1
        result = once()
        if result.ok or not result.retry or attempt >= attempts:
            break
        sleep(result.wait if result.wait is not None else backoff * 2 ** (attempt - 1))
    detail = result.detail if attempt == 1 else f"{result.detail} after {attempt} tries"
    return Outcome("delivered" if result.ok else "failed", attempt, detail)


def _network_error(exc: BaseException) -> _Try:
    """What went wrong on the way to the server, in words safe for the log, and whether another try may help."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return _network_error(reason) if isinstance(reason, BaseException) else _Try(False, "connection error", True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # the certificate will not change within a minute: a setup problem, not a passing one
        return _Try(False, "TLS certificate not trusted")
    if isinstance(exc, TimeoutError):
        return _Try(False, "timed out", True)
    if isinstance(exc, ConnectionRefusedError):
        return _Try(False, "connection refused", True)
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return _Try(False, "connection lost", True)
    if isinstance(exc, socket.gaierror):
        return _Try(False, "host name not found", True)
    if isinstance(exc, ssl.SSLError):
        return _Try(False, "TLS error", True)
    if isinstance(exc, http.client.HTTPException):
        return _Try(False, "no valid HTTP response", True)
    return _Try(False, f"connection error ({type(exc).__name__})", True)


# --- webhooks ------------------------------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: the receiver recomputes it over the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302 with a GET and no body: the receiver would see an empty request and the log a
    # success. A moved webhook is reported as its 3xx instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for webhooks, and the backoff is a fair wait
    return None if seconds is None or seconds != seconds else min(max(seconds, 0.0), RETRY_AFTER_CAP)


def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None,
    settings: DeliverySettings,
    event_id: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """POST `payload` as JSON to `url`, signed with `secret` when there is one; retried as the module says."""
    if urlsplit(url).scheme not in ("http", "https"):
        return Outcome("failed", 0, "not an http:// or https:// URL")
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "tierwise",
        EVENT_HEADER: event_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)

    def once() -> _Try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(request, timeout=settings.timeout_seconds) as response:
                return _Try(True, f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            code = exc.code
            exc.close()
            retry = code >= 500 or code == 429
            return _Try(False, f"HTTP {code}", retry, _retry_after(exc.headers.get("Retry-After")) if retry else None)
        except (OSError, http.client.HTTPException) as exc:
            return _network_error(exc)

    return _with_retries(settings.attempts, settings.backoff_seconds, sleep, once)


# --- mail ----------------------------------------------------------------------------------------------------


def _message(settings: DeliverySettings, to: str, content: MailContent) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = content.subject
    message["From"] = settings.sender
    message["To"] = to
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message


def _smtp_reply(exc: smtplib.SMTPException) -> _Try:
    """A server's refusal: 4xx says try again later, 5xx says no."""
    code: int | None = None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next((int(reply[0]) for reply in exc.recipients.values()), None)
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = int(exc.smtp_code)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _Try(False, "SMTP server disconnected", True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _Try(False, "the SMTP server does not offer what is needed (STARTTLS, login or SMTPUTF8)")
    if code is None or code < 0:
        return _Try(False, f"SMTP error ({type(exc).__name__})", True)
    what = " (login refused)" if isinstance(exc, smtplib.SMTPAuthenticationError) else ""
    return _Try(False, f"SMTP {code}{what}", 400 <= code < 500)


def send_mail(
    settings: DeliverySettings,
    to: str,
    content: MailContent,
    *,
    env: Mapping[str, str] = os.environ,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Send one message (text and HTML) to one recipient through [delivery]'s SMTP server; retried as the module
    says. Login only when the variable named by smtp_user_env is set. The server's certificate is checked against
    the system's CAs; a company CA is trusted through OpenSSL's SSL_CERT_FILE (as for webhooks over https)."""
    try:
        message = _message(settings, to, content)
    except (ValueError, TypeError):  # a line break in an address or the subject: refused before sending
        return Outcome("failed", 0, "the recipient address or subject is not valid in a mail header")
    user = env.get(settings.smtp_user_env)
    password = env.get(settings.smtp_password_env, "")
    if user and not (user + password).isascii():
        # smtplib sends the login as ASCII only (and would raise mid-conversation): say so instead of retrying
        return Outcome("failed", 0, "the SMTP user or password holds non-ASCII characters, which login cannot send")
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.timeout_seconds

    def once() -> _Try:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP | None = None
        try:
            if settings.smtp_security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
                if settings.smtp_security == "starttls":
                    smtp.starttls(context=context)
            if user:
                smtp.login(user, password)
            smtp.send_message(message, from_addr=settings.sender, to_addrs=[to])
            # the message is accepted: a server dropping the line before QUIT changes nothing
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
            return _Try(True, "accepted by the SMTP server")
        except smtplib.SMTPException as exc:
            return _smtp_reply(exc)
        except OSError as exc:
            return _network_error(exc)
        finally:
            if smtp is not None:
                smtp.close()

    return _with_retries(settings.attempts, settings.backoff_seconds, sleep, once)
