"""Senders: one delivery attempt of a :class:`Notice` to one receiver.

An attempt either returns or raises :class:`DeliveryError`; ``permanent`` says retrying cannot
help (an HTTP 4xx other than 429: a wrong URL or key; an SMTP 5xx: a refused login or
recipient), so the route reports it in ``/ready`` instead of retrying.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from phaseflow.streams.notify.notices import Notice

_TOO_MANY_REQUESTS: Final = 429
_SMTP_PORTS: Final = {"smtp": 25, "smtps": 465}


class DeliveryError(Exception):
    """One attempt failed; ``permanent``: retrying cannot succeed."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent
        #: Attempts made when the route gave up (set by the notifier).
        self.attempts = 1


class Sender(Protocol):
    """Delivers notices to one receiver."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def problem(self) -> str | None:
        """What is wrong with the configuration, found without sending anything; or None."""

    async def send(self, notice: Notice) -> None: ...


class HttpSender:
    """POSTs ``body(notice)`` as JSON to ``url`` (webhook, Slack, PagerDuty)."""

    def __init__(
        self,
        url: str,
        body: Callable[[Notice], dict[str, Any]],
        *,
        setting: str,
        timeout: float,
    ) -> None:
        self._url = url
        self._body = body
        self._setting = setting
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def problem(self) -> str | None:
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{self._setting} is not an http(s) URL"
        return None

    async def send(self, notice: Notice) -> None:
        if self._session is None:
            raise RuntimeError("HttpSender.send before start()")
        # The URL is a secret (Slack's carries its token): errors name the setting instead.
        try:
            async with self._session.post(self._url, json=self._body(notice)) as response:
                status = response.status
                text = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(
                f"{self._setting}: no answer ({type(error).__name__}: {error})", permanent=False
            ) from error
        if status < 300:
            return
        permanent = status < 500 and status != _TOO_MANY_REQUESTS
        raise DeliveryError(f"{self._setting}: HTTP {status} {text}".strip(), permanent=permanent)


class SmtpSender:
    """Mails each notice through the server of ``smtp[s]://[user:password@]host[:port]``.

    stdlib smtplib in a thread: one session per mail, alerts are rare enough.
    """

    def __init__(
        self,
        url: str,
        build: Callable[[Notice], EmailMessage],
        *,
        timeout: float,
        setting: str = "PHASEFLOW_NOTIFY_SMTP_URL",
    ) -> None:
        self._url = url
        self._build = build
        self._timeout = timeout
        self._setting = setting

    async def start(self) -> None:
        """Nothing to open: a session per mail."""

    async def stop(self) -> None:
        """Nothing held between mails."""

    def problem(self) -> str | None:
        parts = urlsplit(self._url)
        if parts.scheme not in _SMTP_PORTS or not parts.hostname:
            return f"{self._setting} must look like smtp://[user:password@]host[:port]"
        return None

    async def send(self, notice: Notice) -> None:
        mail = self._build(notice)
        await asyncio.to_thread(self._send_blocking, mail)

    def _send_blocking(self, mail: EmailMessage) -> None:
        parts = urlsplit(self._url)
        host = parts.hostname or "localhost"
        port = parts.port or _SMTP_PORTS.get(parts.scheme, 25)
        try:
            if parts.scheme == "smtps":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(host, port, timeout=self._timeout)
            with smtp:
                smtp.ehlo()
                if parts.scheme == "smtp" and smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if parts.username:
                    smtp.login(unquote(parts.username), unquote(parts.password or ""))
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as error:
            reply = error.smtp_error
            text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
            raise DeliveryError(
                f"{self._setting}: the server answered {error.smtp_code} {text}",
                permanent=error.smtp_code >= 500,
            ) from error
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryError(
                f"{self._setting}: recipients refused: {', '.join(error.recipients)} "
                "(PHASEFLOW_NOTIFY_EMAIL_TO)",
                permanent=True,
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(
                f"{self._setting}: {type(error).__name__}: {error}", permanent=False
            ) from error
