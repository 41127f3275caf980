"""Settings of `podkit echo` (kept apart so `podkit echo --help` imports no server code)."""

from pydantic import Field

from podkit.config import ByteSize, Duration, HelperSettings, HostPort


class EchoSettings(HelperSettings):
    listen: HostPort = Field(
        "127.0.0.1:7007",
        description="address to accept connections on",
        json_schema_extra={"metavar": "HOST:PORT"},
    )
    delay: Duration = Field(0.0, description="pause before answering each line (simulated work)")
    max_line_bytes: ByteSize = Field(
        65536, ge=16, description="longest line accepted; a longer one closes the connection"
    )
