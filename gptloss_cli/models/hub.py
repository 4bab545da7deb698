"""Whether the Hugging Face hub can be reached: one quick probe instead of half a minute of retries."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

HUB_TIMEOUT = 3.0  # seconds; GPTLOSS_HUB_TIMEOUT overrides it


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set to a true value (in the environment, or in huggingface_hub once imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on"):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def hub_reachable() -> bool:
    """False when offline mode is set or the hub's host does not take a connection in time."""
    if hub_offline():
        return False
    timeout = float(os.environ.get("GPTLOSS_HUB_TIMEOUT", HUB_TIMEOUT))
    try:
        socket.create_connection((hub_host(), 443), timeout=timeout).close()
    except OSError:
        return False
    return True
