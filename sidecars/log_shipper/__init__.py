"""`podkit log-shipper`: the log shipping sidecar (follows files, ships every line)."""

from podkit.helper import Helper

helper = Helper(
    name="log-shipper",
    summary="follows log files on a shared volume and ships every line to its outputs",
    settings="sidecars.log_shipper.settings:LogShipperSettings",
    run="sidecars.log_shipper.shipper:run",
    admin_port=9701,
    demo="sidecars.log_shipper.demo:demo",
)
