"""Standard Webhooks v1 signatures: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""

from __future__ import annotations

import base64
import hashlib
import hmac

from rssd.models.users import WebhookSecret


def sign(secret: WebhookSecret, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.reveal(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: WebhookSecret, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt: the id is the message's, the time the attempt's."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
