"""Fixtures for every test directory of the workspace (packages/*/tests, tests/).

They live in ``slidestore.testing.fixtures`` so that any suite, in or out of this
repository, can import the same ones; importing them here registers them once.
"""

import pytest

from slidestore.testing.fixtures import (
    boxes_tiff_path,
    generated_svs,
    sample_slide_path,
    small_svs_path,
    unopenable_tiff_path,
    unreadable_svs_path,
)

__all__ = [
    "boxes_tiff_path",
    "generated_svs",
    "sample_slide_path",
    "small_svs_path",
    "unopenable_tiff_path",
    "unreadable_svs_path",
]

# The longest cluster fault tests' PostgreSQL runs (each 30-45 s of real processes) run in
# ``nox -s long``, not in the default suite, which keeps their SQLite runs: the default run
# stays near 15 minutes on 2 cores. The randomized run has its own, longer session
# (``nox -s faults``); the default run keeps a 20 s one on SQLite.
LONG = frozenset(
    {
        "tests/test_cluster_faults.py::test_randomized_faults[postgresql]",
        "tests/test_cluster_faults.py::test_kill9_of_the_coordinator_mid_repair_then_repair_completes[postgresql]",
        "tests/test_cluster_faults.py::test_a_joining_node_is_filled_by_throttled_rebalancing[postgresql]",
        "tests/test_cluster_rebuild.py::test_r_retention_and_owners_survive_a_rebuild[postgresql]",
        "tests/test_cluster_rebuild.py::test_a_blob_deleted_while_a_holder_was_down_stays_deleted_after_a_rebuild[postgresql]",
        "packages/slidestore-server/tests/test_coordinator_repair.py::test_a_new_leader_waits_for_holders_still_registering[postgresql]",
        "packages/slidestore-server/tests/test_coordinator_repair.py::test_repair_copies_trims_and_deletes_on_real_nodes[postgresql]",
        "tests/test_cluster_lifecycle.py::test_kill9_mid_archive_and_mid_restore_loses_nothing[postgresql]",
        "tests/test_cluster_lifecycle.py::test_archived_rows_come_back_from_the_archive_when_the_database_is_lost[postgresql]",
        "tests/test_cluster_lifecycle.py::test_a_real_slide_is_archived_as_jpeg_xl_and_restored_bit_for_bit[postgresql]",
        "tests/test_cluster_full_nodes.py::test_rebalancing_passes_over_a_node_that_answered_507[postgresql]",
        "apps/labportal/tests/test_tasks_worker.py::test_a_task_survives_a_killed_worker_and_completes_once[postgres]",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in LONG:
            item.add_marker(pytest.mark.long)
