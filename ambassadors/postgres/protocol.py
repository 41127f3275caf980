"""PostgreSQL v3 wire protocol: framing by message header, startup packets, message builders.

Only what pooling needs is parsed. A regular message is one type byte and a 4-byte
big-endian length that counts itself but not the type byte; the startup packets (startup,
SSLRequest, GSSENCRequest, CancelRequest) have no type byte. `Framer` splits a byte stream
into whole messages and refuses lengths that lie (below 4) or exceed a limit before any
byte of the body is buffered, so a 1 GB length field costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

PROTOCOL_V3 = 196608  # 3.0
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
# The longest startup packet PostgreSQL itself accepts (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_PACKET = 10000

# Message types: the type byte of each regular message pooling looks at (as ints: a
# message's first byte, `data[pos]`, is an int).
# Frontend (client to server)
QUERY: Final = 0x51  # Q
PARSE: Final = 0x50  # P
BIND: Final = 0x42  # B
DESCRIBE: Final = 0x44  # D
EXECUTE: Final = 0x45  # E
SYNC_MSG: Final = 0x53  # S
FLUSH_MSG: Final = 0x48  # H
CLOSE: Final = 0x43  # C
TERMINATE_MSG: Final = 0x58  # X
FUNCTION_CALL: Final = 0x46  # F
COPY_DATA: Final = 0x64  # d (both ways)
COPY_DONE: Final = 0x63  # c (both ways)
COPY_FAIL: Final = 0x66  # f
PASSWORD: Final = 0x70  # p (and SASL responses)
# Backend (server to client)
AUTHENTICATION: Final = 0x52  # R
BACKEND_KEY_DATA: Final = 0x4B  # K
READY_FOR_QUERY: Final = 0x5A  # Z
PARSE_COMPLETE_MSG: Final = 0x31  # 1
BIND_COMPLETE_MSG: Final = 0x32  # 2
CLOSE_COMPLETE_MSG: Final = 0x33  # 3
ERROR_RESPONSE: Final = 0x45  # E
NOTICE_RESPONSE: Final = 0x4E  # N
PARAMETER_STATUS: Final = 0x53  # S
PARAMETER_DESCRIPTION: Final = 0x74  # t
ROW_DESCRIPTION: Final = 0x54  # T
NO_DATA: Final = 0x6E  # n
COPY_IN_RESPONSE: Final = 0x47  # G
NOTIFICATION_RESPONSE: Final = 0x41  # A
DATA_ROW: Final = 0x44  # D
COMMAND_COMPLETE: Final = 0x43  # C
# the `kind` byte of Describe and Close: a prepared statement (else a portal)
TARGET_STATEMENT: Final = 0x53  # S
TARGET_PORTAL: Final = 0x50  # P

# Authentication request codes (the int32 after 'R').
AUTH_OK_CODE: Final = 0
AUTH_KERBEROS_V5: Final = 2
AUTH_CLEARTEXT: Final = 3
AUTH_MD5: Final = 5
AUTH_GSS: Final = 7
AUTH_GSS_CONTINUE: Final = 8
AUTH_SSPI: Final = 9
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_I16 = struct.Struct("!h")
_HEADER = struct.Struct("!cI")
unpack_u32 = _U32.unpack_from
unpack_i32 = _I32.unpack_from


class ProtocolError(Exception):
    """The peer broke the framing; `sqlstate` is what an ErrorResponse says about it."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# --- startup packets ------------------------------------------------------------------------


@dataclass
class Startup:
    """A parsed startup-phase packet. `kind` is startup, ssl, gssenc or cancel."""

    kind: str
    version: int = PROTOCOL_V3
    params: dict[str, str] = field(default_factory=dict)
    process_id: int = 0
    secret_key: int = 0
    # startup only: protocol options (_pq_.*) the client asked for, for NegotiateProtocolVersion
    unsupported: list[str] = field(default_factory=list)


def startup_length(buffer: bytes | bytearray) -> int | None:
    """Length of the startup packet at the start of buffer (None: not enough bytes yet)."""
    if len(buffer) < 4:
        return None
    length: int = unpack_u32(buffer, 0)[0]
    if length < 8 or length > MAX_STARTUP_PACKET:
        raise ProtocolError(f"invalid length of startup packet: {length}")
    return length


def parse_startup(packet: bytes | bytearray) -> Startup:
    """Parse one whole startup packet (length included)."""
    if len(packet) < 8:
        raise ProtocolError("invalid length of startup packet")
    code = unpack_u32(packet, 4)[0]
    if code == SSL_REQUEST and len(packet) == 8:
        return Startup("ssl", code)
    if code == GSSENC_REQUEST and len(packet) == 8:
        return Startup("gssenc", code)
    if code == CANCEL_REQUEST:
        if len(packet) != 16:
            raise ProtocolError("invalid length of cancel request")
        pid, key = struct.unpack_from("!ii", packet, 8)
        return Startup("cancel", code, process_id=pid, secret_key=key)
    major = code >> 16
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{code & 0xFFFF}: server supports 3.0 to 3.0",
            "0A000",
        )
    body = bytes(packet[8:])
    if not body.endswith(b"\x00"):
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    parts = body[:-1].split(b"\x00")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    params: dict[str, str] = {}
    unsupported: list[str] = []
    for i in range(0, len(parts), 2):
        try:
            key, value = parts[i].decode(), parts[i + 1].decode()
        except UnicodeDecodeError:
            raise ProtocolError("invalid startup packet: parameters are not UTF-8") from None
        if not key:
            raise ProtocolError("invalid startup packet layout: empty parameter name")
        if key.startswith("_pq_."):
            unsupported.append(key)
            continue
        params[key] = value
    if "user" not in params or not params["user"]:
        raise ProtocolError("no PostgreSQL user name specified in startup packet", "28000")
    return Startup("startup", code, params=params, unsupported=unsupported)


def startup_message(params: dict[str, str]) -> bytes:
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in params.items())
    body += b"\x00"
    return _U32.pack(len(body) + 8) + _U32.pack(PROTOCOL_V3) + body


def cancel_request(process_id: int, secret_key: int) -> bytes:
    return struct.pack("!IIii", 16, CANCEL_REQUEST, process_id, secret_key)


# --- framing of regular messages ------------------------------------------------------------


class Framer:
    """Splits a stream into (type, whole message) pairs; keeps the incomplete tail.

    `max_length` bounds what may be buffered: a longer header is refused at once.
    """

    __slots__ = ("buffer", "max_length")

    def __init__(self, max_length: int) -> None:
        self.buffer = bytearray()
        self.max_length = max_length

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Whole messages now available, each as (type byte, bytes of the whole message).

        Each byte is copied once into its message (and once more if it waits in the
        buffer): a 32 KB Bind spread over 256 KiB reads cost five copies of every read,
        0.6 ms a read, when the buffer was joined with each read."""
        buf = self.buffer
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(data)
        if buf:
            # the message begun in an earlier read: complete it with only its own bytes
            if len(buf) < 5:
                pos = min(5 - len(buf), end)
                buf += data[:pos]
                if len(buf) < 5:
                    return out
            need = 1 + self._length(unpack_u32(buf, 1)[0]) - len(buf)
            if end - pos < need:
                buf += memoryview(data)[pos:]
                return out
            buf += memoryview(data)[pos : pos + need]
            out.append((buf[0], bytes(buf)))
            buf.clear()
            pos += need
        elif end >= 5:
            # the usual case: the chunk is exactly one message (no copy, no loop)
            length = unpack_u32(data, 1)[0]
            if length + 1 == end and 4 <= length <= self.max_length:
                return [(data[0], data)]
        while end - pos >= 5:
            stop = pos + 1 + self._length(unpack_u32(data, pos + 1)[0])
            if stop > end:
                break
            out.append((data[pos], data[pos:stop]))
            pos = stop
        if pos < end:
            buf += memoryview(data)[pos:] if pos else data
        return out

    def _length(self, length: int) -> int:
        """A header's length, refused before any byte of its body is buffered."""
        if length < 4:
            raise ProtocolError(f"invalid message length {length}")
        if length > self.max_length:
            raise ProtocolError(
                f"message of {length} bytes is longer than the limit of {self.max_length} bytes",
                "54000",
            )
        return length

    @property
    def pending(self) -> int:
        return len(self.buffer)


def iter_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Whole messages of a buffer that is known to hold only whole messages."""
    pos = 0
    while pos < len(data):
        length = unpack_u32(data, pos + 1)[0]
        yield data[pos], data[pos : pos + 1 + length]
        pos += 1 + length


def message(kind: bytes, body: bytes = b"") -> bytes:
    """The one writer of a regular message: type byte, length, body."""
    return kind + _U32.pack(len(body) + 4) + body


def type_byte(kind: int) -> bytes:
    return bytes((kind,))


def auth_request(code: int, data: bytes = b"") -> bytes:
    """An Authentication message (AuthenticationOk, SASL, SASLContinue, MD5Password...)."""
    return message(b"R", _I32.pack(code) + data)


def password_message(body: bytes) -> bytes:
    """A PasswordMessage (also SASLInitialResponse and SASLResponse)."""
    return message(b"p", body)


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def read_i32(data: bytes, pos: int = 0) -> int:
    value: int = _I32.unpack_from(data, pos)[0]
    return value


def cstr(data: bytes, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at pos, and the position after its NUL."""
    end = data.index(b"\x00", pos)
    return data[pos:end], end + 1


# --- message builders -----------------------------------------------------------------------

READY_IDLE = b"Z\x00\x00\x00\x05I"
PARSE_COMPLETE = b"1\x00\x00\x00\x04"
BIND_COMPLETE = b"2\x00\x00\x00\x04"
CLOSE_COMPLETE = b"3\x00\x00\x00\x04"
SYNC = b"S\x00\x00\x00\x04"
FLUSH = b"H\x00\x00\x00\x04"
TERMINATE = b"X\x00\x00\x00\x04"


def error_response(
    message_text: str,
    sqlstate: str = "08P01",
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
    kind: bytes = b"E",
    routine: str | None = None,
) -> bytes:
    fields = [
        b"S" + severity.encode() + b"\x00",
        b"V" + severity.encode() + b"\x00",
        b"C" + sqlstate.encode() + b"\x00",
        b"M" + message_text.encode() + b"\x00",
    ]
    if detail:
        fields.append(b"D" + detail.encode() + b"\x00")
    if hint:
        fields.append(b"H" + hint.encode() + b"\x00")
    if routine:  # the server function that raised it: drivers tell some errors apart by it
        fields.append(b"R" + routine.encode() + b"\x00")
    return message(kind, b"".join(fields) + b"\x00")


def parse_error_fields(msg: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse or NoticeResponse message (whole message given)."""
    out: dict[str, str] = {}
    pos = 5
    while pos < len(msg) and msg[pos] != 0:
        code = chr(msg[pos])
        end = msg.find(b"\x00", pos + 1)
        if end < 0:
            break
        out[code] = msg[pos + 1 : end].decode(errors="replace")
        pos = end + 1
    return out


def row_type(msg: bytes) -> bytes:
    """What a RowDescription (or NoData) says about a statement's result type: each
    column's name, type, size, modifier and format, without the table and column it came
    from (a table dropped and created again has new ones, the same result type)."""
    if msg[:1] != b"T":
        return msg[:1]
    count = _I16.unpack_from(msg, 5)[0]
    pos = 7
    parts = [msg[5:7]]
    for _ in range(count):
        end = msg.index(b"\x00", pos) + 1
        parts.append(msg[pos:end])  # name
        parts.append(msg[end + 6 : end + 18])  # type oid, size, modifier, format
        pos = end + 18
    return b"".join(parts)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", name.encode() + b"\x00" + value.encode() + b"\x00")


def parameter_statuses(params: dict[str, str]) -> bytes:
    return b"".join(parameter_status(k, v) for k, v in params.items())


def parse_parameter_status(msg: bytes) -> tuple[str, str]:
    name, pos = cstr(msg, 5)
    value, _ = cstr(msg, pos)
    return name.decode(errors="replace"), value.decode(errors="replace")


def notification_response(pid: int, channel: str, payload: str) -> bytes:
    """NotificationResponse ('A'): the notifying backend's pid, channel and payload."""
    body = _U32.pack(pid & 0xFFFFFFFF) + channel.encode() + b"\x00" + payload.encode() + b"\x00"
    return message(b"A", body)


def parse_notification(msg: bytes) -> tuple[int, str, str]:
    """(pid, channel, payload) of a whole NotificationResponse."""
    pid = unpack_u32(msg, 5)[0]
    channel, pos = cstr(msg, 9)
    payload, _ = cstr(msg, pos)
    return pid, channel.decode(errors="replace"), payload.decode(errors="replace")


def notification_channel(msg: bytes) -> bytes:
    """The channel of a whole NotificationResponse, as bytes (no decoding on the hot path)."""
    return msg[9 : msg.index(b"\x00", 9)]


def with_notification_pid(msg: bytes, pid: int) -> bytes:
    """The NotificationResponse `msg` naming backend `pid` instead."""
    return msg[:5] + _U32.pack(pid) + msg[9:]


def backend_key_data(process_id: int, secret_key: int) -> bytes:
    return message(b"K", struct.pack("!ii", process_id, secret_key))


def query(sql: str | bytes) -> bytes:
    text = sql.encode() if isinstance(sql, str) else sql
    return message(b"Q", text + b"\x00")


def parse_message(name: bytes, rest: bytes) -> bytes:
    """A Parse message: statement name, then `rest` (query text, parameter types) unchanged."""
    return message(b"P", name + b"\x00" + rest)


def infers_param_types(rest: bytes) -> bool:
    """Whether PostgreSQL chooses some parameter type of the Parse body `rest` (query
    text, parameter type OIDs) itself: an OID 0, or a `$n` beyond the types given. (A
    `$n` inside a literal only makes the answer cautious.)"""
    end = rest.find(b"\x00")
    if end < 0 or len(rest) < end + 3:
        return True
    count = _U16.unpack_from(rest, end + 1)[0]
    types = rest[end + 3 : end + 3 + 4 * count]
    if len(types) < 4 * count or any(
        types[i : i + 4] == b"\x00\x00\x00\x00" for i in range(0, len(types), 4)
    ):
        return True
    text = rest[:end]
    pos = text.find(b"$")
    while pos >= 0:
        digits = pos + 1
        while digits < len(text) and 48 <= text[digits] <= 57:
            digits += 1
        if digits > pos + 1 and int(text[pos + 1 : digits]) > count:
            return True
        pos = text.find(b"$", digits)
    return False


def close_statement(name: bytes) -> bytes:
    return message(b"C", b"S" + name + b"\x00")


def negotiate_protocol_version(newest_minor: int, unsupported: list[str]) -> bytes:
    body = _U32.pack(newest_minor) + _U32.pack(len(unsupported))
    body += b"".join(name.encode() + b"\x00" for name in unsupported)
    return message(b"v", body)


def row_description(columns: list[str]) -> bytes:
    body = struct.pack("!h", len(columns))
    for name in columns:
        # name, table oid, column number, type oid (text = 25), size, modifier, format
        body += name.encode() + b"\x00" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
    return message(b"T", body)


def data_row(values: list[str | None]) -> bytes:
    body = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            body += _I32.pack(-1)
        else:
            raw = value.encode()
            body += _I32.pack(len(raw)) + raw
    return message(b"D", body)


def parse_data_row(msg: bytes) -> list[str | None]:
    """The columns of a DataRow message (text format), None for NULL."""
    count = _I16.unpack_from(msg, 5)[0]
    pos = 7
    values: list[str | None] = []
    for _ in range(count):
        size = _I32.unpack_from(msg, pos)[0]
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(msg[pos : pos + size].decode(errors="replace"))
            pos += size
    return values


def command_complete(tag: str) -> bytes:
    return message(b"C", tag.encode() + b"\x00")
