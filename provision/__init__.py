"""provision: turn a fresh Ubuntu/Debian machine into a ready deep-learning server over SSH."""

__version__ = "0.1.0"
