"""KillB credential broker: the shared layer's logic (KillB client, token store, refresh policy)."""

__version__ = "0.1.0"
