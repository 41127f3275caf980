"""`podkit log-shipper`: the log shipping sidecar (follows files, ships every line)."""

from podkit.helper import Helper

helper = Helper(
    name="log-shipper",
    summary="follows log files on a shared volume and ships every line to its outputs",
    settings="podkit.sidecars.log_shipper.settings:LogShipperSettings",
    run="podkit.sidecars.log_shipper.main:run",
    admin_port=9701,
)
