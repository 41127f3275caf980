"""`podkit echo`: the smallest complete helper, a line-echo TCP server.

It exists to prove the runtime end to end (settings, readiness, metrics, drain, PID 1)
and as the template a new helper starts from. This module only declares the helper, and
stays free of heavy imports: `podkit --help` loads it to list the helpers.
"""

from podkit.helper import Helper

helper = Helper(
    name="echo",
    summary="line-echo TCP server that proves the runtime (template for new helpers)",
    settings="podkit.echo.settings:EchoSettings",
    run="podkit.echo.main:run",
    admin_port=9700,
)
