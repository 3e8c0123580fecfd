"""The `indexer …` commands of the documentation's shell blocks, run as a user would.

Every fenced block tagged ``sh``, ``bash``, ``shell`` or ``console`` in README.md and in any
``docs/**/*.md`` is read; each line whose command is ``indexer`` (after an optional ``$ ``
prompt; ``;`` separates commands; ``# …`` comments are dropped) is run, in document order,
against a small sample root in an isolated INDEXER_HOME, and must exit 0. An optional flag
written ``[--json]`` runs once without and once with it.

Doc-source markers (HTML comments, so they are visible in the source and not on the page), on
the lines just before a block:

    <!-- not-run: REASON -->                 the whole block is not run
    <!-- not-run `PREFIX`: REASON -->        its commands starting with PREFIX are not run
    <!-- exit N `PREFIX`: REASON -->         those commands must exit with N (a documented error)

Placeholders are mapped to the sample by :data:`SUBSTITUTIONS`; a ``~`` left after that fails
the test (add the path to the table and to the sample).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]

COMMAND_TIMEOUT_S = 120
SHELL_TAGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"<!--\s*(not-run|exit\s+(\d+))\s*(?:`([^`]+)`)?\s*:\s*(.*?)\s*-->")

# Placeholder in the docs -> what it is in the test's sandbox (longest first when applied).
SUBSTITUTIONS = {
    "~/notes": "{root}",                                            # the sample root below
    "~/backups/indexer-20261128T101500.db": "{backups}/indexer-20261128T101500.db",  # made in set-up
    "~/backups": "{backups}",
    "…": "archive",                                                 # "any query / options"
}

SAMPLE = {  # the sample root: a few notes the examples' queries and paths find
    "today.md": "# Today\n\nPack the release files into an archive with tar, then copy them to the remote box.\n",
    "adr/0001-cache-eviction.md": "---\ntype: design\n---\n# Cache eviction\n\nWe evict the least recently "
                                  "used entries first; the cache is bounded by bytes, not by entries.\n",
    "tools/tar.md": "# tar\n\n> Archiving utility.\n\n- Create an archive from files:\n\n`tar -cf target.tar file1 "
                    "\"file name\"`\n\n- Extract an archive: `tar -xf source.tar`\n",
    "tools/ssh.md": "# ssh\n\n> Secure shell: log in to a remote box and run commands there.\n\n- Connect to a "
                    "remote server: `ssh username@remote_host`\n",
    "rfcs/0001-borrow-checker.md": "# Non-lexical lifetimes\n\nThe borrow checker accepts more programs when a "
                                  "borrow ends at its last use.\n",
}


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    command: tuple[str, ...]
    expected_exit: int = 0
    skip_reason: str = ""


def doc_pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]


def expand_optional(tokens: list[str]) -> list[list[str]]:
    """``[--json]`` (an optional flag, usage notation) -> without it, and with it."""
    for i, token in enumerate(tokens):
        if token.startswith("[") and token.endswith("]") and token[1:2] == "-":
            rest = expand_optional(tokens[i + 1:])
            head = tokens[:i]
            return [head + r for r in rest] + [head + token[1:-1].split() + r for r in rest]
    return [tokens]


def substitute(token: str, places: dict[str, str]) -> str:
    for placeholder in sorted(SUBSTITUTIONS, key=len, reverse=True):
        if placeholder in token:
            token = token.replace(placeholder, SUBSTITUTIONS[placeholder].format(**places))
    return token


def extract(page: Path) -> list[tuple[int, list[str], list[tuple[str, str, int | None, str]]]]:
    """(line number, command tokens, markers of its block) for every `indexer` command."""
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    markers: list[tuple[str, str, int | None, str]] = []
    i = 0
    while i < len(lines):
        for m in MARKER.finditer(lines[i]):
            markers.append(("exit" if m.group(2) else "not-run", m.group(3) or "",
                            int(m.group(2)) if m.group(2) else None, m.group(4)))
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip() and not MARKER.search(lines[i]):
                markers = []  # markers belong to the block right after them
            i += 1
            continue
        indent, ticks, tag = fence.groups()
        block_markers, markers = markers, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            if tag in SHELL_TAGS:
                text = lines[i].strip()
                start = i + 1
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                text = text[2:] if text.startswith("$ ") else text
                tokens = shlex.split(text, comments=True) if text else []
                command: list[str] = []
                for token in tokens + [";"]:
                    if token != ";":
                        command.append(token)
                        continue
                    if command and command[0] == "indexer":
                        found.append((start, command, block_markers))
                    command = []
            i += 1
        i += 1
    return found


def examples() -> list[Example]:
    out = []
    for page in doc_pages():
        doc = str(page.relative_to(REPO_ROOT))
        for line, tokens, markers in extract(page):
            for variant in expand_optional(tokens):
                text = " ".join(variant)
                exit_code, skip = 0, ""
                for kind, prefix, code, reason in markers:
                    if prefix and not text.startswith(prefix):
                        continue
                    if kind == "not-run":
                        skip = reason or "marked not-run"
                    else:
                        exit_code = code
                out.append(Example(doc, line, tuple(variant), exit_code, skip))
    return out


def test_marker_and_extraction_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "<!-- not-run `indexer daemon`: runs in the foreground -->",
        "```sh",
        "indexer daemon --root ~/notes     # foreground",
        "$ indexer status [--json] ; indexer search 'a b'   # two commands",
        "make test",
        "```",
        "text",
        "```toml",
        "indexer = 1",
        "```",
        "<!-- exit 2 `indexer search`: an empty query is a usage error -->",
        "```console",
        "$ indexer search \\",
        "    ''",
        "```",
    ]), encoding="utf-8")
    found = extract(page)
    assert [(line, tokens) for line, tokens, _ in found] == [
        (3, ["indexer", "daemon", "--root", "~/notes"]), (4, ["indexer", "status", "[--json]"]),
        (4, ["indexer", "search", "a b"]), (13, ["indexer", "search", ""])]
    assert found[0][2] == [("not-run", "indexer daemon", None, "runs in the foreground")]
    assert found[3][2] == [("exit", "indexer search", 2, "an empty query is a usage error")]
    assert expand_optional(["indexer", "status", "[--json]"]) == [["indexer", "status"], ["indexer", "status", "--json"]]
    assert substitute("~/notes/today.md", {"root": "/r", "backups": "/b"}) == "/r/today.md"


def test_every_marker_names_a_command_and_a_reason() -> None:
    for page in doc_pages():
        all_found = extract(page)
        for line, _tokens, markers in all_found:
            for kind, _prefix, _code, reason in markers:
                assert reason, f"{page.name}:{line}: a {kind} marker needs a reason"
        prefixes = {(kind, prefix) for _, _, markers in all_found for kind, prefix, _, _ in markers if prefix}
        texts = [" ".join(tokens) for _, tokens, _ in all_found]
        for kind, prefix in prefixes:
            assert any(t.startswith(prefix) for t in texts), f"{page.name}: {kind} marker `{prefix}` matches no command"


def test_the_examples_are_found() -> None:
    """README.md and docs/ together (sections may move between them) hold the commands."""
    found = examples()
    assert len([e for e in found if not e.skip_reason]) >= 15, [e.command for e in found]
    assert {"migrate", "reindex", "search", "status", "backup", "restore"} <= {e.command[1] for e in found}


MODELS = [pytest.param("hash:64", id="hash-model"),
          pytest.param(None, id="default-model", marks=[pytest.mark.model, pytest.mark.slow])]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("page", [str(p.relative_to(REPO_ROOT)) for p in doc_pages()])
def test_the_documented_commands_run(tmp_path: Path, page: str, model: str | None) -> None:
    to_run = [e for e in examples() if e.doc == page]
    root, backups, home = tmp_path / "notes", tmp_path / "backups", tmp_path / "home"
    for name, text in SAMPLE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    home.mkdir()  # ~/backups is not made: `indexer backup ~/backups/` makes it
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_RUNTIME_DIR": str(home / "run"),
           "INDEXER_HOME": str(tmp_path / "indexer-home"), "INDEXER_ROOTS": str(root),
           "PATH": str(venv_bin) + os.pathsep + os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1"}
    for var in ("INDEXER_DB", "INDEXER_CONFIG", "INDEXER_MODEL", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(var, None)
    if page == "README.md":  # the README's tour configures nothing: its `reindex --root` is remembered
        env.pop("INDEXER_ROOTS")
    if model:
        env["INDEXER_MODEL"] = model
    indexer = venv_bin / "indexer"
    places = {"root": str(root), "backups": str(backups)}

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(indexer), *args], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)

    named_backup = backups / "indexer-20261128T101500.db"
    failures, ran = [], 0
    for example in to_run:
        args = [substitute(t, places) for t in example.command[1:]]
        if example.skip_reason:
            continue
        if str(named_backup) in args and not named_backup.exists():  # set-up: the backup a restore names
            made = run(["backup", str(named_backup)])
            assert made.returncode == 0, made.stderr
        assert not any(a.startswith("~") for a in args), \
            f"{page}:{example.line}: unmapped placeholder in {args}; add it to SUBSTITUTIONS"
        try:
            proc = run(args)
        except subprocess.TimeoutExpired:
            failures.append(f"{page}:{example.line}: `{shlex.join(example.command)}` did not exit within "
                            f"{COMMAND_TIMEOUT_S} s (runs in the foreground? mark it not-run, with the reason)")
            continue
        ran += 1
        if proc.returncode != example.expected_exit:
            failures.append(f"{page}:{example.line}: `{shlex.join(example.command)}` exited {proc.returncode} "
                            f"(documented: {example.expected_exit})\n{proc.stdout[-800:]}{proc.stderr[-1500:]}")
    print(f"{page}: ran {ran} commands ({len(to_run) - ran} marked not-run)")
    assert not failures, "\n\n".join(failures)


def readme_printed_config(readme: str) -> tuple[str, dict]:
    """The README's `$ indexer mcp --print-config` and the JSON it shows below it."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$ indexer mcp") and "--print-config" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[start][2:], json.loads("\n".join(lines[start + 1:end]))


async def test_the_readme_s_mcp_configuration_works_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user after the README's quick start: a shell with its `export PATH=...` line and
    nothing else of ours, the tour's `reindex --root`, then the configuration that the README's
    `indexer mcp --print-config` prints, started as an agent host starts it (the SDK's stdio
    client, which passes the child only HOME, PATH and a few more), and a tool called."""
    from mcp import Client, StdioServerParameters

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    exports = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("export PATH=")]
    assert len(exports) == 1, "the README's quick start has one `export PATH=` line"
    command, shown = readme_printed_config(readme)
    venv_bin = Path(sys.executable).parent
    if venv_bin != REPO_ROOT / ".venv" / "bin":
        pytest.skip(f"the README's PATH line names the checkout's .venv; these tests run from {venv_bin}")
    home, notes = tmp_path / "home", tmp_path / "home" / "notes"
    for name, text in SAMPLE.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text, encoding="utf-8")
    (home / ".config" / "indexer").mkdir(parents=True)
    (home / ".config" / "indexer" / "config.toml").write_text('model = "hash:64"\n')  # no real model, no roots
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != venv_bin)
    shell_env = {"HOME": str(home), "PATH": path or "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def shell(line: str, setup: str = exports[0]) -> subprocess.CompletedProcess[str]:
        script = f"cd {shlex.quote(str(REPO_ROOT))} && {setup} && {line}"
        return subprocess.run(["bash", "-c", script], env=shell_env, capture_output=True, text=True, timeout=120)

    assert shell("indexer --version", setup="true").returncode == 127  # what a user had without the line
    indexed = shell(f"indexer reindex --root {shlex.quote(str(notes))}")
    assert indexed.returncode == 0, indexed.stderr
    printed = shell(command)
    assert printed.returncode == 0, printed.stderr
    config = json.loads(printed.stdout)
    entry, shown_entry = config["mcpServers"]["indexer"], shown["mcpServers"]["indexer"]
    assert set(config) == set(shown) and set(config["mcpServers"]) == set(shown["mcpServers"])
    assert set(entry) == set(shown_entry) and entry["args"] == shown_entry["args"]  # the README's shape, no env
    assert Path(entry["command"]).is_absolute()
    monkeypatch.setenv("HOME", str(home))  # what the host passes on: the user's HOME and PATH
    monkeypatch.setenv("PATH", shell_env["PATH"])
    server = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"))
    async with Client(server) as client:
        found = await client.call_tool("search", {"query": "archive tar", "mode": "keyword"})
        assert not found.is_error, found.content[0].text
        assert found.structured_content["results"][0]["path"] in (str(notes / "tools/tar.md"), str(notes / "today.md"))
        read = await client.call_tool("read_document", {"path": str(notes / "today.md")})  # the remembered root
        assert not read.is_error and read.structured_content["title"] == "Today", read.content[0].text
