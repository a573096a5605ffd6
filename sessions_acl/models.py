"""Clients, grants and sessions arrive with the grants issue; the app exists so migrations stay linear."""

from __future__ import annotations
