"""Printing results: JSON for scripts, aligned text for people."""

from __future__ import annotations

import json
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit_jsonl(rows: list[Any]) -> None:
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=False, default=str))
