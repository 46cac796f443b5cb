"""Real ``lanesync run`` lanes, real ``lanesync cloud serve`` clouds, fault proxies; loopback only.

Every process is started as ``python -m lanesync ...`` with ``--listen 127.0.0.1:0 --api
127.0.0.1:0`` (lanes also ``--no-discovery``: no mDNS, only the ``--peer`` addresses given
here, all 127.0.0.1). Addresses come from ``DIR/runtime.json`` (its pid must be the process's
own), tokens from ``DIR/api.token``. A ``Procs`` starts them through one
``lanesync.tools.procs.ProcessGroup`` and ``close()`` ends them all, SIGTERM then SIGKILL,
whatever happened in the test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from support import ApiGroup, ApiProcess, Cli, run_cli

from lanesync.tools.procs import child_env

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 45.0  # a start takes ~1-3 s; several at once on a loaded 2-core box more
HTTP_TIMEOUT_S = 20.0


ENV = child_env(columns=100)


def cli(*args: str | Path, cwd: Path) -> Cli:
    return run_cli(args, env=ENV, cwd=cwd)


def cli_ok(*args: str | Path, cwd: Path) -> Cli:
    result = cli(*args, cwd=cwd)
    assert result.returncode == 0, result.describe()
    assert result.stderr == "", result.describe()
    return result


def cli_json(*args: str | Path, cwd: Path) -> Any:
    return cli_ok(*args, "--json", cwd=cwd).json()


class Proc(ApiProcess):
    """A lane or a cloud (``ApiProcess``); writes must be acknowledged (201)."""

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        response = self.client.post(path, json=body)
        assert response.status_code == 201, f"POST {path}: {response.status_code} {response.text}"
        result: dict[str, Any] = response.json()
        return result


class Lane(Proc):
    def sell(self, lines: Sequence[tuple[str, int] | tuple[str, int, int]]) -> dict[str, Any]:
        """Lines are (sku, qty) at the catalog price, or (sku, qty, unit_cents)."""
        body = {
            "lines": [
                {"sku": line[0], "qty": line[1]}
                | ({"unit_price": line[2]} if len(line) == 3 else {})
                for line in lines
            ]
        }
        return self.post("/v1/sales", body)

    def receive(self, sku: str, qty: int) -> str:
        return str(self.post("/v1/stock/receive", {"sku": sku, "qty": qty})["record_id"])

    def set_price(self, sku: str, cents: int) -> str:
        return str(self.post("/v1/prices", {"sku": sku, "unit_price": cents})["record_id"])

    def void(self, sale_id: str) -> str:
        return str(self.post(f"/v1/sales/{sale_id}/void")["record_id"])

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/status")
        return result

    def stock(self) -> dict[str, int]:
        return {i["sku"]: i["on_hand"] for i in self.get("/v1/stock")["items"]}

    def digest(self) -> str:
        return str(self.get("/v1/digest")["digest"])

    def verify(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/verify")
        return result

    @property
    def terminal_id(self) -> str:
        return str(self.runtime["terminal_id"])

    def leads(self) -> bool:
        """This lane believes it is the leader and its cloud link is up."""
        status = self.status()
        return status["leader"] == self.terminal_id and bool((status["cloud"] or {})["connected"])

    def peers(self) -> set[str]:
        return {str(p["terminal_id"]) for p in self.status()["connections"]}


class Cloud(Proc):
    def sales(self, store_id: str, day: str | None = None) -> dict[str, Any]:
        query = "" if day is None else f"?day={day}"
        result: dict[str, Any] = self.get(f"/v1/stores/{store_id}/sales{query}")
        return result

    def stock(self, store_id: str) -> dict[str, int]:
        return {i["sku"]: i["on_hand"] for i in self.get(f"/v1/stores/{store_id}/stock")["items"]}

    def digest(self, store_id: str) -> str:
        return str(self.get(f"/v1/stores/{store_id}/digest")["digest"])

    def stores(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/v1/stores")["stores"]
        return result


class Procs(ApiGroup):
    """Every process a test started; ``close()`` ends them all."""

    live: ClassVar[list[ApiGroup]] = []  # for the failure report hook in conftest

    def __init__(self, root: Path) -> None:
        super().__init__(
            root,
            env=ENV,
            cwd=root,
            start_timeout_s=START_TIMEOUT_S,
            http_timeout_s=HTTP_TIMEOUT_S,
        )
        self.all: list[Proc] = []

    def _spawn(
        self,
        cls: type[Proc],
        name: str,
        path: Path,
        args: list[str],
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        proc = self.group.spawn(name, path, ["-m", "lanesync", *args], cls=cls, env=env)
        self.all.append(proc)
        return proc

    def spawn_lane(
        self,
        path: Path,
        *,
        peers: Iterable[str] = (),
        cloud: str | None = None,
        priority: int | None = None,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Lane:
        args = [
            "run", str(path),
            "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0", "--no-discovery",
        ]  # fmt: skip
        for peer in peers:
            args += ["--peer", peer]
        if cloud is not None:
            args += ["--cloud", cloud]
        if priority is not None:
            args += ["--priority", str(priority)]
        proc = self._spawn(Lane, path.name, path, [*args, *extra], env)
        assert isinstance(proc, Lane)
        return proc

    def spawn_cloud(
        self, path: Path, db: str | None = None, extra: Sequence[str | Path] = ()
    ) -> Cloud:
        args = ["cloud", "serve", str(path), "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
        if db is not None:
            args += ["--db", db]
        proc = self._spawn(Cloud, path.name, path, [*args, *map(str, extra)])
        assert isinstance(proc, Cloud)
        return proc

    def cloud(self, path: Path, db: str | None = None, extra: Sequence[str | Path] = ()) -> Cloud:
        return self.ready(self.spawn_cloud(path, db, extra))

    def lanes(self, specs: Sequence[dict[str, Any]]) -> list[Lane]:
        """Start several lanes at once (``spawn_lane`` keyword arguments plus ``path``)."""
        spawned = [self.spawn_lane(**spec) for spec in specs]
        return [self.ready(lane) for lane in spawned]
