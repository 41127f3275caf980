"""`podkit log-shipper --fluent-bit-config`: a real shipper process run from a Fluent Bit
classic config (the seed's, with its paths pointed at a temp dir), every line counted."""

from __future__ import annotations

import signal

from podkit_dev.servers import wait_for
from tests.integration.log_shipper.e2e import nginx_line, read_jsonl, tally_file

CONF = """\
[SERVICE]
    Flush        1
    Log_Level    info
    Daemon       off
    Parsers_File parsers.conf
[INPUT]
    Name              tail
    Path              {logs}/*.log
    Tag               app.*
    Refresh_Interval  1
    Read_from_Head    true
    DB                {state}/flb_app.db
    Mem_Buf_Limit     5MB
    Skip_Long_Lines   On
    Parser            access
[OUTPUT]
    Name   file
    Match  app.*
    Path   {out}
    File   out.jsonl
[OUTPUT]
    Name   stdout
    Match  kube.*
"""

PARSERS = """\
[PARSER]
    Name   access
    Format regex
    Regex  ^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] "(?<method>\\S+)(?: +(?<path>[^\\"]*?)(?: +\\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*).*$
"""


def test_shipper_runs_from_a_fluent_bit_config(run_helper, tmp_path):
    logs, state, out = tmp_path / "logs", tmp_path / "state", tmp_path / "out"
    for d in (logs, state, out):
        d.mkdir()
    (tmp_path / "parsers.conf").write_text(PARSERS)
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(CONF.format(logs=logs, state=state, out=out))
    (logs / "app.log").write_bytes(b"".join(nginx_line(i) + b"\n" for i in range(3000)))
    shipper = run_helper("log-shipper", "--fluent-bit-config", str(conf))
    wait_for(lambda: len(tally_file(out / "out.jsonl")) == 3000, timeout=30, what="3000 lines")
    assert shipper.stop(signal.SIGTERM) == 0
    tally = tally_file(out / "out.jsonl")
    assert tally.missing(range(3000)) == [] and tally.duplicates == 0
    record = read_jsonl(out / "out.jsonl")[0]
    assert record["fields"]["method"] == "GET" and record["fields"]["code"] == "200"
    assert (state / "follow-checkpoints.json").exists()  # DB's directory is the state dir
    [notice] = [e for e in shipper.log_events() if e.get("event") == "fluent_bit_config"]
    assert "fluent-bit.conf:3 [SERVICE] Log_Level" in notice["ignored"]
    assert any("Match" in d and "no input" in d for d in notice["differs"])  # kube.* output
