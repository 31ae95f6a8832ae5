"""brproxy: the command line and the supervisor that runs the whole stack on one machine."""

__all__ = ["cli", "supervisor"]
