"""Audit: `log` filters, `audit export` as JSON lines and CSV (safe to open in a spreadsheet)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from arka_git_hcm.cli import main
from arka_git_hcm.config import Settings
from arka_git_hcm.services.store import HcmStore

from .conftest import HUMAN, create_mission, git, journal, ok


def _history(store: HcmStore) -> None:
    create_mission(store, "m1")
    journal(store, "one")
    ok(store, "HCM_UPDATE_STATUS", {"mission_id": "m1", "status": {"summary": '=HYPERLINK("x")'}}, HUMAN)
    journal(store, "two")


def test_log_filters_by_caller_op_and_time(store: HcmStore, settings: Settings) -> None:
    _history(store)
    store.close()
    client = str(settings.hcm_path.parent)
    runner = CliRunner()
    out = runner.invoke(main, ["--client", client, "log", "--caller", "agent/arka-pmo-01", "--json"])
    commits = json.loads(out.output)["commits"]
    assert [c["op"] for c in commits] == ["HCM_APPEND_JOURNAL", "HCM_APPEND_JOURNAL"]
    out = runner.invoke(main, ["--client", client, "log", "--op", "HCM_UPDATE_STATUS", "--json"])
    assert [c["caller"] for c in json.loads(out.output)["commits"]] == ["human/alice"]
    out = runner.invoke(main, ["--client", client, "log", "--until", "2000-01-01", "--json"])
    assert json.loads(out.output)["commits"] == []
    paged = runner.invoke(main, ["--client", client, "log", "-n", "2"])
    assert "--cursor" in paged.output
    cursor = paged.output.rsplit("--cursor ", 1)[1].strip(" )\n")
    rest = runner.invoke(main, ["--client", client, "log", "-n", "100", "--cursor", cursor, "--json"])
    total = int(git(settings.hcm_path, "rev-list", "--count", "HEAD"))
    assert len(json.loads(rest.output)["commits"]) == total - 2


def test_audit_export_jsonl_and_csv(store: HcmStore, settings: Settings, tmp_path: Path) -> None:
    _history(store)
    store.close()
    client = str(settings.hcm_path.parent)
    runner = CliRunner()
    lines = runner.invoke(
        main, ["--client", client, "audit", "export", "--format", "jsonl"]
    ).output.splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == int(git(settings.hcm_path, "rev-list", "--count", "HEAD"))
    assert rows[0]["op"] == "HCM_APPEND_JOURNAL" and rows[0]["caller"] == "agent/arka-pmo-01"
    assert set(rows[0]) == {"time", "revision", "op", "caller", "request_id", "mission_id", "summary"}
    out = tmp_path / "audit.csv"
    result = runner.invoke(
        main, ["--client", client, "audit", "export", "--format", "csv", "--out", str(out), "--mission", "m1"]
    )
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {row["mission_id"] for row in table} == {"m1"} and len(table) == 4
    assert all(not row[key].startswith("=") for row in table for key in row)
