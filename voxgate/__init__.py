"""VoxGate composition root: settings, command line, HTTP API and wiring."""

__version__ = "0.1.0"
