"""Point in time: "which version served digits at 03:12, and who changed it?" Three changes
through a real Controller (its Serve a stand-in, as in test_controller_rules), then the table
in force asked for at instants before, between and after them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from agent.schemas.models import TrafficRequest
from tests.unit.test_controller_rules import FakeServe, controller


def test_the_table_in_force_at_each_instant_and_the_audit_entry_that_set_it(tmp_path, demo_store):
    ctl = controller(tmp_path, demo_store, FakeServe())
    instants = [datetime.now(UTC)]
    changes = [
        ({"v1": 90, "v2": 10}, "alice"),
        ({"v1": 50, "v2": 50}, "bob"),
        ({"v2": 100}, "carol"),
    ]
    for weights, who in changes:
        time.sleep(0.01)
        asyncio.run(ctl.set_traffic("digits", TrafficRequest(weights=weights), who))
        time.sleep(0.01)
        instants.append(datetime.now(UTC))

    assert ctl.routing_history("digits", instants[0], 20).in_force is None  # before any
    audits = {row["id"]: row["who"] for row in ctl.store.query("SELECT id, who FROM audit")}
    for (weights, who), at in zip(changes, instants[1:], strict=True):
        history = ctl.routing_history("digits", at, 20)
        now = history.in_force
        assert now is not None and now.table.weights == weights and now.who == who
        assert now.action == "traffic" and audits[now.audit_id] == who
        assert [c.route_version for c in history.changes] == sorted(
            (c.route_version for c in history.changes), reverse=True
        )
    last = ctl.routing_history("digits", instants[-1], 2)
    assert len(last.changes) == 2 and last.changes[1].table.weights == {"v1": 50, "v2": 50}
