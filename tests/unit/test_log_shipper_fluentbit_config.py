"""Fluent Bit's classic config as log-shipper settings (sidecars/log_shipper/fluentbit_config.py).

The seed's ConfigMap is read unchanged; every key issue 14 lists maps onto a podkit
setting (or is accepted and listed as ignored); anything else is one ConfigError naming
the file, line, section and key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podkit.config import ConfigError, ForeignConfig, Notice, load_settings
from podkit.sidecars.log_shipper.fluentbit_config import parse, read
from podkit.sidecars.log_shipper.settings import LogShipperSettings

SEED = """\
[SERVICE]
    Flush        1
    Log_Level    info
    Daemon       off
    Parsers_File parsers.conf
[INPUT]
    Name              tail
    Path              /var/log/app/*.log
    Tag               app.*
    Refresh_Interval  5
    Read_from_Head    true
    DB                /var/log/app/flb_app.db
    Mem_Buf_Limit     5MB
    Skip_Long_Lines   On
[OUTPUT]
    Name   stdout
    Match  *
    Format json_lines
"""


def load(
    argv: list[str], env: dict[str, str] | None = None, notices: list[Notice] | None = None
) -> LogShipperSettings:
    return load_settings(
        LogShipperSettings,
        argv,
        env or {},
        prog="podkit log-shipper",
        admin_default=":9701",
        notices=notices,
    )


def write(tmp_path: Path, text: str, name: str = "fluent-bit.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(["--fluent-bit-config", str(write(tmp_path, text))])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_seed_configmap_unchanged(tmp_path):
    conf = write(tmp_path, SEED)
    notices: list[Notice] = []
    s = load(["--fluent-bit-config", str(conf)], notices=notices)
    assert s.path == ["/var/log/app/*.log"]
    assert s.read_from == "head"
    assert s.refresh_interval == 5
    assert s.state_dir == "/var/log/app"  # the DB's directory
    assert s.buffer_bytes == 5_000_000
    [(_, options)] = s.output_specs
    assert options.type == "stdout" and options.batch_timeout == 1
    [notice] = notices
    assert notice.event == "fluent_bit_config"
    assert notice.fields["ignored"] == [
        "fluent-bit.conf:3 [SERVICE] Log_Level",
        "fluent-bit.conf:4 [SERVICE] Daemon",
    ]
    assert any("Skip_Long_Lines" in d for d in notice.fields["differs"])


def test_the_seed_with_its_parsers_file_and_a_regex_parser(tmp_path):
    write(
        tmp_path,
        "[PARSER]\n    Name   app\n    Format regex\n"
        "    Regex  ^(?<time>[^ ]+ [^ ]+) (?<level>[A-Z]+) (?<message>.*)$\n"
        "    Time_Key time\n    Time_Format %Y-%m-%d %H:%M:%S\n",
        "parsers.conf",
    )
    conf = write(tmp_path, SEED.replace("    Skip_Long_Lines   On\n", "    Parser app\n"))
    s = load(["--fluent-bit-config", str(conf)])
    assert s.parser == "regex"
    assert s.parser_options["pattern"].startswith("^(?P<time>")
    fields = s.loaded_parser.parse("2024-05-01 12:00:00 ERROR something broke")
    assert fields == {"time": "2024-05-01 12:00:00", "level": "ERROR", "message": "something broke"}


def test_every_listed_key(tmp_path):
    (tmp_path / "secret").mkdir()
    conf = write(
        tmp_path,
        """\
[SERVICE]
    Flush        2
    Grace        7
    Log_Level    debug
    Daemon       Off
    HTTP_Server  On
    HTTP_Port    2020
[INPUT]
    Name              tail
    Path              /logs/a/*.log, /logs/b/*.log
    Exclude_Path      *.gz,*.zip
    Tag               app.*
    Refresh_Interval  3
    Read_from_Head    false
    DB                /state/flb.db
    DB.sync           normal
    Mem_Buf_Limit     8MB
    Buffer_Max_Size   64k
    Skip_Long_Lines   Off
    Rotate_Wait       9
    multiline.parser  python
    Parser            json
[OUTPUT]
    Name   stdout
    Match  app.*
    Format json_lines
[OUTPUT]
    Name   file
    Match  *
    Path   /out
    File   app.jsonl
[OUTPUT]
    Name        http
    Match       *
    Host        collector.example
    Port        8443
    URI         /ingest
    Format      json_lines
    tls         On
    tls.verify  Off
    HTTP_User   shipper
    HTTP_Passwd s3cret-pw
    Header      X-Team logs
    Compress    gzip
    Retry_Limit 3
[OUTPUT]
    Name        es
    Match       app.*
    Host        es.example
    Port        9201
    Index       app-logs
    HTTP_User   elastic
    HTTP_Passwd es-pw
    Suppress_Type_Name On
[OUTPUT]
    Name        loki
    Match       *
    Host        loki.example
    Labels      job=app, env=prod
    Tenant_ID   team-a
    line_format json
""",
    )
    notices: list[Notice] = []
    s = load(["--fluent-bit-config", str(conf)], notices=notices)
    assert s.path == ["/logs/a/*.log", "/logs/b/*.log"]
    assert s.exclude == ["*.gz", "*.zip"]
    assert (s.refresh_interval, s.rotate_wait, s.shutdown_timeout) == (3, 9, 7)
    assert s.read_from == "tail"
    assert s.state_dir == "/state"
    assert (s.buffer_bytes, s.max_line_bytes) == (8_000_000, 64_000)
    assert s.multiline == "python" and s.parser == "json"
    multiline = s.multiline_config()
    assert multiline is not None and multiline.mode == "python"
    specs = {options.type: options for _, options in s.output_specs}
    assert set(specs) == {"stdout", "file", "http", "elasticsearch", "loki"}
    assert all(o.batch_timeout == 2 for o in specs.values())
    assert specs["file"].path == "/out/app.jsonl"
    http = specs["http"]
    assert http.url == "https://collector.example:8443/ingest"
    assert http.tls_verify is False and http.gzip is True
    assert http.username == "shipper"
    assert http.password_file.get_secret_value() == "s3cret-pw"
    assert http.header == ["X-Team: logs"]
    assert http.retry_max_attempts == 4
    es = specs["elasticsearch"]
    assert (es.url, es.index, es.username) == ("http://es.example:9201", "app-logs", "elastic")
    loki = specs["loki"]
    assert loki.url == "http://loki.example:3100/loki/api/v1/push"
    assert loki.label == ["job=app", "env=prod"] and loki.tenant == "team-a"
    assert loki.line_format == "json"
    [notice] = notices
    assert "s3cret-pw" not in repr(notice) and "es-pw" not in repr(notice)
    assert "fluent-bit.conf:6 [SERVICE] HTTP_Server" in notice.fields["ignored"]
    assert "fluent-bit.conf:16 [INPUT] DB.sync" in notice.fields["ignored"]


def test_include_set_and_environment_variables(tmp_path, monkeypatch):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path, "[INPUT]\n    Name tail\n    Path ${LOG_DIR}/*.log\n", "conf.d/in.conf")
    write(tmp_path, "[OUTPUT]\n    Name ${OUT}\n    Match *\n    Format json_lines\n",
          "conf.d/out.conf")  # fmt: skip
    conf = write(tmp_path, "@SET OUT=stdout\n@INCLUDE conf.d/*.conf\n")
    monkeypatch.setenv("LOG_DIR", "/srv/logs")  # ${VAR}: @SET first, then the environment
    s = load(["--fluent-bit-config", str(conf)])
    assert s.path == ["/srv/logs/*.log"]
    assert [o.type for _, o in s.output_specs] == ["stdout"]
    sections = parse(str(conf), env={"LOG_DIR": "/srv/logs"})
    assert [x.kind for x in sections] == ["INPUT", "OUTPUT"]
    assert sections[0].get("path") == "/srv/logs/*.log"


def test_podkit_settings_win_over_the_fluent_bit_config(tmp_path):
    conf = write(tmp_path, SEED)
    s = load(["--fluent-bit-config", str(conf), "--read-from", "tail"],
             env={"PODKIT_STATE_DIR": "/var/lib/podkit"})  # fmt: skip
    assert s.read_from == "tail" and s.state_dir == "/var/lib/podkit"


def test_match_is_honoured_by_tag(tmp_path):
    two_outputs = SEED + "[OUTPUT]\n    Name file\n    Match other.*\n    Path /o\n    File x\n"
    s = load(["--fluent-bit-config", str(write(tmp_path, two_outputs))])
    assert [o.type for _, o in s.output_specs] == ["stdout"]  # other.* matches no input
    message = error_of(tmp_path, SEED.replace("Match  *", "Match  app.var.log.app.a.log"))
    assert "fluent-bit.conf:17 [OUTPUT] Match" in message and "some of the files" in message
    two_inputs = SEED + "[INPUT]\n    Name tail\n    Path /x/*.log\n    Tag x.*\n"
    message = error_of(tmp_path, two_inputs.replace("Match  *", "Match  app.*"))
    assert "[OUTPUT] Match: matches only some inputs" in message


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("    Skip_Long_Lines   On\n", "    Ignore_Older 1d\n"), ":14 [INPUT] Ignore_Older:"),
        (("    Name              tail\n", "    Name systemd\n"), ":7 [INPUT] Name:"),
        (("    Name   stdout\n", "    Name   kafka\n"), ":16 [OUTPUT] Name:"),
        (("    Format json_lines\n", "    Format json_lines\n    Bogus 1\n"), ":19 [OUTPUT] Bogus:"),
        (("    Read_from_Head    true\n", "    Read_from_Head maybe\n"), ":11 [INPUT] Read_from_Head:"),
        (("    Flush        1\n", "    Flush        soon\n"), ":2 [SERVICE] Flush:"),
        (("[OUTPUT]\n", "[FILTER]\n    Name kubernetes\n[OUTPUT]\n"), ":16 [FILTER] Name:"),
        (("    Skip_Long_Lines   On\n", "    multiline.parser docker, cri\n"),
         ":14 [INPUT] multiline.parser:"),
        (("    Skip_Long_Lines   On\n", "    Parser nope\n"), ":14 [INPUT] Parser:"),
    ],
)  # fmt: skip
def test_unsupported_keys_name_file_line_section_and_key(tmp_path, change, where):
    old, new = change
    message = error_of(tmp_path, SEED.replace(old, new))
    assert f"{tmp_path / 'fluent-bit.conf'}{where}" in message


def test_http_needs_a_format_podkit_can_send(tmp_path):
    conf = SEED.replace("Name   stdout", "Name   http").replace(
        "Format json_lines", "Format msgpack"
    )
    assert "[OUTPUT] Format: podkit's http output sends NDJSON" in error_of(tmp_path, conf)


def test_the_image_default_path_is_declared():
    info = LogShipperSettings.model_fields["fluent_bit_config"]
    [foreign] = [m for m in info.metadata if isinstance(m, ForeignConfig)]
    assert foreign.default_path == "/fluent-bit/etc/fluent-bit.conf"
    assert read.__module__.endswith("fluentbit_config")
    assert foreign.reader.endswith("fluentbit_config:read")


def test_a_bad_config_exits_2_with_one_line_and_no_secret(tmp_path):
    conf = SEED.replace("Name   stdout", "Name   http\n    HTTP_Passwd hunter2\n    Nope x")
    path = write(tmp_path, conf)
    proc = subprocess.run(
        [sys.executable, "-m", "podkit.cli", "log-shipper", "--fluent-bit-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "[OUTPUT] Nope" in lines[0]
    assert "hunter2" not in proc.stderr + proc.stdout
