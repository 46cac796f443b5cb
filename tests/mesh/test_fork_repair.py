"""Fork repair, replacement and renewal through a running lane: the CLI goes through the daemon
of the ``--via`` lane (its HTTP API), and the lane's status names the chain it continues.

The fork is made offline, before the daemon starts: lane1's directory is copied, both copies
sell a lane1:3, and the manager lane ``m`` imports both.
"""

from __future__ import annotations

import shutil

import pytest

from lanesync.core.identity import Role

from .cluster import Cluster, wait_until

pytestmark = pytest.mark.slow

FORK = "two different records with one sequence number"


def test_resolve_fork_and_replace_through_a_running_lane(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = Cluster(tmp_path_factory.mktemp("forks"))
    try:
        store = cluster.store()
        m_dir = cluster.enroll(store, "m", Role.MANAGER)
        lane1 = cluster.enroll(store, "lane1")
        cli = cluster.cli
        assert cli("price", m_dir, "milk", "100").returncode == 0
        assert cli("receive", m_dir, "milk", "20").returncode == 0
        assert cli("receive", lane1, "milk", "1").returncode == 0  # lane1:1
        restored = cluster.root / "lane1-restored"
        shutil.copytree(lane1, restored)
        assert cli("sell", lane1, "milk:2:100").returncode == 0  # lane1:2
        assert cli("sell", lane1, "milk:3:100").returncode == 0  # lane1:3
        assert cli("sell", restored, "milk:5:100").returncode == 0  # another lane1:2
        for source in (lane1, restored):
            bundle = cluster.root / f"{source.name}.bundle"
            assert cli("export", source, bundle).returncode == 0
            assert cli("import", m_dir, bundle).returncode == 0

        m = cluster.start(m_dir)
        assert m.verify()["broken_chains"] == [{"terminal": "lane1", "from_seq": 2, "reason": FORK}]
        fork = m.get("/v1/forks/lane1")
        assert fork["fork_seq"] == 2
        assert sorted(b["head_seq"] for b in fork["branches"]) == [2, 3]
        unknown = m.client.get("/v1/forks/m")
        assert unknown.status_code == 400, unknown.text
        assert set(unknown.json()) == {"error"}

        resolved = cluster.cli_json("store", "resolve-fork", "store", "lane1", "--via", m_dir)
        assert (resolved["fork_seq"], resolved["closed_at"]) == (2, 3)
        report = m.verify()
        assert report["ok"] is True
        assert [f["terminal"] for f in report["resolved_forks"]] == ["lane1"]
        assert m.on_hand("milk") == 20 + 1 - 2 - 3 - 5

        enrolled = cluster.cli_json(
            "enroll", "store", "lane1b", "--terminal-id", "lane1b", "--replaces", "lane1",
            "--via", m_dir,
        )  # fmt: skip
        assert (enrolled["replaces"], enrolled["after_seq"]) == ("lane1", 3)
        assert m.verify()["successions"][0]["terminal"] == "lane1b"
        b = cluster.start(cluster.root / "lane1b", [m.listen])
        assert b.status()["succeeds"] == {
            "kind": "replacement",
            "predecessor": "lane1",
            "after_seq": 3,
        }
        assert m.status()["succeeds"] is None
        assert b.sell("milk", 1) == "lane1b:1"
        wait_until(lambda: m.on_hand("milk") == 10, 15, "m counted lane1b's sale")

        # a running lane of another store is no --via
        other_store = cluster.store("other-store", "s2")
        other = cluster.start(cluster.enroll(other_store, "o"))
        refused = cluster.cli(
            "enroll", "store", "lane1c", "--terminal-id", "lane1c", "--replaces", "lane1b",
            "--via", other.path,
        )  # fmt: skip
        assert refused.returncode == 1, refused.describe()
        assert "another store" in refused.stderr

        renewed = cluster.cli_json("store", "renew", "store", cluster.root / "lane1b")
        assert renewed["key_fingerprint"] == enrolled["key_fingerprint"]
        assert renewed["not_after_ms"] > enrolled["not_after_ms"]
        assert b.sell("milk", 1) == "lane1b:2"
        wait_until(lambda: m.on_hand("milk") == 9, 15, "m counted lane1b's second sale")
    finally:
        cluster.close()
