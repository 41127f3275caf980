"""podkit: small helper containers for Kubernetes pods."""

__version__ = "0.1.0"
