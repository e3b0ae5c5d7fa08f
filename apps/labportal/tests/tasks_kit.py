"""What the task tests share: a real Dask scheduler, the sample slide stored in the real
cluster, a portal that runs tasks, materials linked by proof of possession, tiny ONNX
models built with the ``onnx`` package."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnx
import pytest
import pytest_asyncio
from onnx import TensorProto, helper, numpy_helper

import slidestore
from labportal.domain.materials.possession import Challenge, answer_from_file
from slidestore import tokens
from slidestore.tokens import Operation

from .conftest import REAL_CLUSTER_SECRET, portal_settings
from .helpers import Portal, User

PATCH = 32
CLASSES = ["tumour", "stroma"]
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """A real scheduler with one worker process (what LABPORTAL_DASK_SCHEDULER names)."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def sample_blob(real_cluster: str, sample_slide_path: Path) -> str:
    """The sample slide, stored in the real cluster by a lab's SDK user."""
    token = tokens.mint(
        REAL_CLUSTER_SECRET, ops={Operation.WRITE, Operation.READ}, ttl=600, subject="lab-sdk"
    )
    with slidestore.connect(real_cluster, token) as cluster:
        return cluster.upload(sample_slide_path, progress=False, wait="all")


def task_settings(database_url: str, cluster_url: str, scheduler: str, **more: Any) -> Any:
    values: dict[str, Any] = {
        "cluster_url": cluster_url,
        "cluster_secret": REAL_CLUSTER_SECRET,
        "task_runner": True,
        "dask_scheduler": scheduler,
        "task_poll_seconds": 0.2,
        "task_lease_seconds": 6,
        **more,
    }
    return portal_settings(database_url, **values)


@pytest_asyncio.fixture
async def tportal(
    database_url: str, real_cluster: str, dask_scheduler: str, tmp_path: Path
) -> AsyncIterator[Portal]:
    """A portal that runs tasks on the real scheduler and reads the real cluster."""
    settings = task_settings(
        database_url, real_cluster, dask_scheduler, models_dir=str(tmp_path / "models")
    )
    async with Portal.running(settings) as running:
        yield running


@dataclass
class Lab:
    owner: User
    team: str
    case: str
    material: str


async def link_material(user: User, case: str, path: Path, blob: str) -> str:
    """Attach a slide the cluster already holds: the proof of possession, no upload."""
    body = {
        "name": path.name,
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    created = await user.post(f"/api/cases/{case}/materials", json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["exists"] is True, answer
    challenge = msgspec.convert(answer["challenge"], Challenge)
    material = answer["material"]["id"]
    done = await user.post(
        f"/api/materials/{material}/complete",
        json={"blob_id": blob, "proof": answer_from_file(challenge, path)},
    )
    assert done.status_code == 200, done.text
    return str(material)


async def lab(portal: Portal, path: Path, blob: str, name: str = "owner") -> Lab:
    owner = await portal.user(name)
    team = await portal.team(owner)
    case = await owner.post(f"/api/teams/{team}/cases", json={"title": "Case"})
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    return Lab(owner, team, case_id, await link_material(owner, case_id, path, blob))


async def wait_for(user: User, task_id: str, timeout: float = 120) -> dict[str, Any]:
    """The task once it is succeeded, failed or cancelled."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await user.get(f"/api/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, f"task still {body['status']}: {body}"
        await asyncio.sleep(0.2)


def build_onnx(
    path: Path, *, classes: int = 2, patch: int = PATCH, hide_classes: bool = False
) -> Path:
    """input (N, 3, P, P) -> channel means -> (N, classes) logits. ``hide_classes``:
    the output is reshaped to a shape computed at run time, so that a loaded graph does
    not tell how many classes it returns."""
    weights = np.resize(np.array([[2.0, -1.0], [-1.5, 1.0], [0.5, 0.25]], np.float32), (3, classes))
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["means"], keepdims=0),
        helper.make_node("MatMul", ["means", "W"], ["logits"]),
    ]
    initializers = [axes, numpy_helper.from_array(weights, "W")]
    output = "logits"
    if hide_classes:  # reshape to (-1, channels of the input): 3, known only when run
        initializers += [
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([2], np.int64), "two"),
            numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        ]
        nodes += [
            helper.make_node("Shape", ["input"], ["shape"]),
            helper.make_node("Slice", ["shape", "one", "two"], ["channels"]),
            helper.make_node("Concat", ["minus_one", "channels"], ["target"], axis=0),
            helper.make_node("Reshape", ["logits", "target"], ["hidden"]),
        ]
        output = "hidden"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, patch, patch])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", "C"])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def manifest(name: str = "tiny", version: str = "1", **changes: Any) -> str:
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": "a tiny test classifier",
        "patch_size": PATCH,
        "target_mpp": 2.0,
        "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "class_names": CLASSES,
        **changes,
    }
    return json.dumps(fields)


async def register(user: User, team: str, model: Path, manifest_json: str) -> Any:
    with model.open("rb") as file:
        return await user.client.post(
            f"/api/teams/{team}/models",
            files={"file": (model.name, file.read(), "application/octet-stream")},
            data={"manifest": manifest_json},
        )
