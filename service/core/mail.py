"""Outgoing mail: SMTP when `SMTP_URL` is set, otherwise `.eml` files in
`var/outbox/` that a person can open."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.core.config import Settings
from service.core.time import utcnow


def build_message(
    settings: Settings, to: str, subject: str, text: str, html: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="callpact.localhost")
    message["Date"] = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


async def send_message(settings: Settings, message: EmailMessage) -> str:
    """Deliver `message`; return where it went (a file path or the SMTP host)."""
    if settings.smtp.url is None:
        outbox = settings.outbox_dir
        name = f"{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{message['Message-ID'].strip('<>').split('@')[0]}.eml"

        def write() -> Path:
            outbox.mkdir(parents=True, exist_ok=True)
            path = outbox / name
            path.write_bytes(bytes(message))
            return path

        return str(await asyncio.to_thread(write))
    import aiosmtplib

    parts = urlsplit(settings.smtp.url)
    await aiosmtplib.send(
        message,
        hostname=parts.hostname or "localhost",
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=parts.scheme == "smtps",
        start_tls=None,
        timeout=settings.smtp.timeout_s,
    )
    return parts.hostname or "localhost"
