"""integration-hub: the one service that holds a platform's provider keys."""

__version__ = "0.1.0"
