"""mkimage: build minimal, hardened base container images from RPM repositories."""

__version__ = "0.1.0"
