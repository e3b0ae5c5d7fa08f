"""The pages' model panels (issue 15): the material page's run form and task list, the case
page's run-on-every-slide form and per-slide status, the viewer's result layers; what each
role sees (members and up run and delete, viewers read), and outsiders get the pages' 404."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from .fakecluster import FakeCluster
from .helpers import Portal
from .test_materials import _uploaded

pytestmark = pytest.mark.asyncio


async def test_task_panels_per_role(cportal: Portal, fake: FakeCluster) -> None:
    owner, member, viewer, outsider = [
        await cportal.user(n) for n in ("owner", "member", "viewer", "outsider")
    ]
    team = await cportal.team(owner)
    for user, role in ((member, "member"), (viewer, "viewer")):
        await cportal.join(owner, team, user, role)
    case = (await owner.post(f"/api/teams/{team}/cases", json={"title": "Liver"})).json()["id"]
    blob = hashlib.sha256(os.urandom(16)).hexdigest()
    material = await _uploaded(owner, case, fake, blob)

    for user, writes in ((owner, True), (member, True), (viewer, False)):
        page = (await user.get(f"/materials/{material}")).text
        panel = re.search(r'<section id="tasks-panel"[^>]*>', page)
        assert panel, page
        assert f'data-material="{material}"' in panel.group(0)
        assert f'data-team="{team}"' in panel.group(0)
        assert "data-case" not in panel.group(0)  # one material, not the case
        assert f'data-can-write="{"yes" if writes else ""}"' in panel.group(0)
        assert ('id="run-model"' in page) is writes
        assert ('id="model-params"' in page) is writes
        assert 'id="task-list"' in page and 'id="task-provenance"' in page
        assert '<script src="/static/tasks.js" defer></script>' in page

        page = (await user.get(f"/cases/{case}")).text
        panel = re.search(r'<section id="tasks-panel"[^>]*>', page)
        assert panel, page
        assert f'data-case="{case}"' in panel.group(0) and "data-material=" not in panel.group(0)
        assert ("Run on every slide of the case" in page) is writes
        assert ('id="run-model"' in page) is writes
        status = page[page.index('id="case-task-status"') :]
        assert f'<tr data-material="{material}">' in status  # one row per slide of the case
        assert 'id="task-list"' not in page

        page = (await user.get(f"/materials/{material}/view")).text
        assert (
            f'<section id="task-layers-panel" class="task-layers-panel" data-material="{material}">'
            in page
        )
        assert '<script src="/static/task_layers.js" defer></script>' in page
        # The viewer's script comes after the layers' (they wait for its hook).
        assert page.index("/static/task_layers.js") < page.index("/static/viewer.js")

    for url in (f"/materials/{material}", f"/materials/{material}/view", f"/cases/{case}"):
        assert (await outsider.get(url)).status_code == 404


async def test_task_scripts_are_served(portal: Portal) -> None:
    client = portal.client()
    for name, kind in (
        ("tasks.js", "javascript"),
        ("task_layers.js", "javascript"),
        ("tasks.css", "text/css"),
    ):
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], (name, r.headers)
    layers = (await client.get("/static/task_layers.js")).text
    # Features are fetched by bbox, as the annotations are.
    assert "/features?" in layers and "bbox" in layers
    hook = (await client.get("/static/viewer.js")).text
    assert "window.slideViewer = viewer" in hook
