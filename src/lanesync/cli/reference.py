"""The generated references: docs/reference/cli.md from the click command tree and
docs/reference/http.md from the lane API's own OpenAPI document.

Regenerate both with ``python -m lanesync.cli.reference docs/reference`` (from the repository
root); tests/cli/test_reference.py fails when the committed files differ from what this writes.
Both renderers are pure functions of their input, so the output does not depend on the machine
or the terminal width.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

CLI_FILE = "cli.md"
HTTP_FILE = "http.md"
REGENERATE = "python -m lanesync.cli.reference docs/reference"
_WIDTH = 100  # the width click formats usage lines at, fixed so the output is reproducible
_METHODS = ("get", "post", "put", "patch", "delete")


def _header(title: str, source: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Generated from {source} by `lanesync.cli.reference`; do not edit by hand. Regenerate",
        f"with `{REGENERATE}` (from the repository root); tests/cli/test_reference.py fails when",
        "this file is out of date.",
        "",
    ]


def _walk(
    command: click.Command, parent: click.Context | None, name: str
) -> Iterator[tuple[click.Context, click.Command]]:
    settings: dict[str, Any] = {**command.context_settings, "max_content_width": _WIDTH}
    ctx = click.Context(command, parent=parent, info_name=name, **settings)
    ctx.terminal_width = _WIDTH
    yield ctx, command
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                yield from _walk(child, ctx, sub)


def render_cli(root: click.Command, name: str = "lanesync") -> str:
    """Every command of ``root``: its usage line, its help and its options."""
    lines = _header("Command-line reference", "the click command tree (`lanesync.cli.main.cli`)")
    for ctx, command in _walk(root, None, name):
        path = ctx.command_path
        lines += [f"## `{path}`", "", "```text", command.get_usage(ctx).strip(), "```", ""]
        text = (command.help or "").strip()
        if text:
            lines += [click.unstyle(text).split("\f")[0].rstrip(), ""]
        records = [
            p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)
        ]
        rows = [r for r in records if r is not None]
        if rows:
            lines += ["| Option | Help |", "| --- | --- |"]
            for opts, help_text in rows:
                cell = " ".join(help_text.split()).replace("|", "\\|")
                lines.append(f"| `{opts}` | {cell} |")
            lines.append("")
        if isinstance(command, click.Group):
            subs = [s for s in command.list_commands(ctx) if not _hidden(command, ctx, s)]
            lines += ["Commands: " + ", ".join(f"`{path} {s}`" for s in subs) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def _hidden(group: click.Group, ctx: click.Context, name: str) -> bool:
    command = group.get_command(ctx, name)
    return command is None or command.hidden


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_schema_name(schema['items'])}"
    return str(schema.get("type", "any"))


def _request_body(operation: dict[str, Any]) -> str:
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return "-"
    return "; ".join(
        f"`{_schema_name(media.get('schema', {}))}` ({kind})" for kind, media in content.items()
    )


def _responses(operation: dict[str, Any]) -> str:
    parts = []
    for status, response in sorted(operation.get("responses", {}).items()):
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        shape = f" `{_schema_name(schema)}`" if schema and "$ref" in schema else ""
        parts.append(f"{status}{shape}: {response.get('description', '')}")
    return "<br>".join(parts).replace("|", "\\|")


def render_http(spec: dict[str, Any]) -> str:
    """One table row per route and method of an OpenAPI document, then its request schemas."""
    info = spec.get("info", {})
    lines = _header(
        f"HTTP reference: {info.get('title', 'API')}",
        "the app's OpenAPI document (`lanesync.shell.api.create_app(state).openapi()`)",
    )
    description = str(info.get("description", "")).strip()
    if description:
        lines += [description, ""]
    lines += [
        "| Method | Route | Summary | Token | Request body | Responses |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    used: set[str] = set()
    for route, item in spec.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            token = "yes" if operation.get("security") else "no"
            body = _request_body(operation)
            used.update(
                _schema_name(m.get("schema", {}))
                for m in operation.get("requestBody", {}).get("content", {}).values()
            )
            lines.append(
                f"| {method.upper()} | `{route}` | {operation.get('summary', '')} | {token} "
                f"| {body} | {_responses(operation)} |"
            )
    lines.append("")
    schemas = spec.get("components", {}).get("schemas", {})
    for name in sorted(_with_nested(used, schemas)):
        lines += [f"### `{name}`", "", "| Field | Type | Required | Description |"]
        lines.append("| --- | --- | --- | --- |")
        schema = schemas[name]
        required = set(schema.get("required", ()))
        for field, prop in schema.get("properties", {}).items():
            kind = _type_of(prop)
            note = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
            lines.append(
                f"| `{field}` | {kind} | {'yes' if field in required else 'no'} | {note} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _type_of(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    name = _schema_name(prop)
    return f"`{name}`"


def _with_nested(names: set[str], schemas: dict[str, Any]) -> set[str]:
    """The named schemas plus every schema they refer to, so each request body is complete."""
    found: set[str] = set()
    todo = [n for n in names if n in schemas]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo += [n for n in _refs(schemas[name]) if n in schemas]
    return found


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def lane_openapi() -> dict[str, Any]:
    """The lane API's OpenAPI document, from an app built on a throwaway terminal directory
    (the app needs a real state to exist; nothing is served)."""
    from lanesync.core.election import Election
    from lanesync.core.identity import Role
    from lanesync.core.node import Node
    from lanesync.shell.api import DaemonState, create_app
    from lanesync.shell.committer import GroupCommitter
    from lanesync.shell.directories import StoreDirectory
    from lanesync.shell.mesh import Mesh
    from lanesync.shell.terminal import Terminal, wall_clock_ms

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = StoreDirectory.init(root / "store", "reference")
        store.enroll(root / "lane1", "lane1", Role.MANAGER, wall_clock_ms(), 30)
        terminal = Terminal.open(root / "lane1", lock_wait_s=0)
        try:
            node = Node(terminal.replica, election=Election("lane1"))
            mesh = Mesh(node, terminal)
            committer = GroupCommitter(terminal, publish=mesh.write)
            state = DaemonState(terminal, committer, mesh, "reference", election=node.election)
            return create_app(state).openapi()
        finally:
            terminal.close()


def render_all() -> dict[str, str]:
    """File name -> contents of every generated reference."""
    from lanesync.cli.main import cli

    return {CLI_FILE: render_cli(cli), HTTP_FILE: render_http(lane_openapi())}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        target = directory / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {REGENERATE.replace('docs/reference', 'DIRECTORY')}", file=sys.stderr)
        return 2
    for path in write(Path(argv[0])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
