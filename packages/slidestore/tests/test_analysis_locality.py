"""Locality helpers: a worker's node from its data directory, which workers sit on which
node, and a blob read from the node's own blob store. (The whole path across real
processes and storage nodes: ``nox -s analysis_cluster``.)"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from slidestore import open_slide
from slidestore.analysis import locality
from slidestore.analysis.sources import LocalSource, RemoteSpec, open_source
from slidestore.blobs.ids import fanout
from slidestore.testing import sample_slide_path

NODE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def node_dir(tmp_path: Path) -> tuple[Path, str]:
    """A storage node's data directory as the node leaves it: node_id and blobs/ab/cd/…"""
    (tmp_path / "node_id").write_text(NODE + "\n")
    source = sample_slide_path()
    blob_id = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "blobs" / fanout(blob_id)
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    return tmp_path, blob_id


def test_worker_command_carries_the_node_resource_and_data_dir(node_dir: tuple[Path, str]) -> None:
    directory, _ = node_dir
    argv, env = locality.worker_argv("tcp://127.0.0.1:8786", directory, nworkers=2)
    assert argv[1:4] == ["-m", "distributed.cli.dask_worker", "tcp://127.0.0.1:8786"]
    assert argv[argv.index("--resources") + 1] == f"node-{NODE}=1"
    assert argv[argv.index("--nthreads") + 1] == "1" and argv[argv.index("--nworkers") + 1] == "2"
    assert env[locality.DATA_DIR_ENV] == str(directory.resolve())


def test_node_id_must_exist_and_be_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="start the storage node once"):
        locality.node_id_of(tmp_path)
    (tmp_path / "node_id").write_text("../../etc/passwd")
    with pytest.raises(ValueError, match="not a node id"):
        locality.node_id_of(tmp_path)


def test_workers_for_nodes_picks_by_resource() -> None:
    workers = {
        "tcp://a:1": {"resources": {f"node-{NODE}": 1}},
        "tcp://b:1": {"resources": {}},
        "tcp://c:1": {"resources": {"node-" + "f" * 32: 1}},
        "tcp://d:1": {},
    }
    assert locality.workers_for_nodes(workers, [NODE]) == ["tcp://a:1"]
    assert locality.workers_for_nodes(workers, [NODE, "f" * 32]) == ["tcp://a:1", "tcp://c:1"]
    assert locality.workers_for_nodes(workers, ["e" * 32]) == []


def test_a_blob_on_this_node_is_read_from_the_blob_file(
    node_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, blob_id = node_dir
    monkeypatch.delenv(locality.DATA_DIR_ENV, raising=False)
    assert locality.local_blob_path(blob_id) is None  # not a storage node's worker
    monkeypatch.setenv(locality.DATA_DIR_ENV, str(directory))
    assert locality.local_blob_path(blob_id) == directory / "blobs" / fanout(blob_id)
    assert locality.local_blob_path("f" * 64) is None  # not on this node
    assert locality.local_blob_path("../node_id") is None  # never a path to walk
    spec = RemoteSpec(
        blob_id=blob_id,
        urls=("http://127.0.0.1:9",),
        node_ids=(NODE,),
        coordinators=(),
        token=None,
        info=None,  # type: ignore[arg-type]  (not needed: the file is here)
    )
    source = open_source(spec)
    assert isinstance(source, LocalSource) and source.local
    expected = open_slide(sample_slide_path()).read_region((256, 512), 0, (300, 200))
    assert np.array_equal(source.read(0, 256, 512, 300, 200), expected)
