"""`podkit pg-ambassador`: PgBouncer's job in the pod, transaction pooling every driver survives.

The application connects to localhost:5432; the ambassador pools server connections per
(database, user) in transaction mode, tracks named prepared statements per client (renamed
per server, re-Parsed where missing), pins clients that leave session state on their server
instead of leaking it, and drains at transaction boundaries on SIGTERM.
"""

from podkit.ambassadors.postgres import core
from podkit.helper import Helper

# Before any module of the hot path is imported: the compiled one, or the source (core.py).
core.install()

helper = Helper(
    name="pg-ambassador",
    summary="localhost:5432 pooled to PostgreSQL in transaction mode (PgBouncer's job), "
    "prepared statements and session state handled",
    settings="podkit.ambassadors.postgres.settings:PgAmbassadorSettings",
    run="podkit.ambassadors.postgres.main:run",
    admin_port=9705,
    # The images compile the hot path (core.COMPILED) in their builder stage.
    image_build="podkit.ambassadors.postgres.build_core",
    image_build_requires=("Cython>=3.0", "setuptools>=77"),
)
