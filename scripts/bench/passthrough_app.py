"""The floor for any router: one deployment that hands the body to a version app through a
DeploymentHandle and returns its answer. No routing, no logging (benchmark only)."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from serve.ray_hardening import bind_replica_grpc_to_node_ip


@serve.deployment
class PassThrough:
    def __init__(self, target_app: str) -> None:
        bind_replica_grpc_to_node_ip()
        self.target_app = target_app
        self.handle = None

    async def __call__(self, request: Request) -> Response:
        if self.handle is None:  # a blocking controller call: never on the event loop
            self.handle = await asyncio.to_thread(serve.get_app_handle, self.target_app)
        answer = await self.handle.answer.remote(await request.body())
        return Response(answer["body"], answer["status"], media_type="application/json")


def build(args: dict[str, Any]) -> serve.Application:
    return PassThrough.bind(target_app=args["target_app"])
