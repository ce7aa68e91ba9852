from __future__ import annotations

import httpx

from tests import graphs
from tests.server.conftest import wait_for_job


async def test_workflow_job_completes(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/jobs", json={"workflow": graphs.invert()})
    assert response.status_code == 201, response.text
    job = response.json()
    done = await wait_for_job(client, job["job_id"])
    assert done["status"] == "completed", done
    image = await client.get(done["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
