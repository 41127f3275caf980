"""`podkit log-adapter`: a legacy app's text log, as one JSON object per line."""

from podkit.helper import Helper

helper = Helper(
    name="log-adapter",
    summary="turns a legacy text log into one JSON object per line, with pluggable parsers",
    settings="podkit.adapters.log_json.settings:LogAdapterSettings",
    run="podkit.adapters.log_json.main:run",
    admin_port=9702,
    oneshot="podkit.adapters.log_json.check:oneshot",
)
