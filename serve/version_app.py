"""The Serve application of one model version: an ONNX Runtime replica with batching.

Deployed through Serve's REST API with `import_path = serve.version_app:build`; the builder in
serve_config.py supplies the args and every deployment option.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serve.model_store import ModelStore
from serve.names import HOST_ENV, SPOOL_ENV
from serve.onnx_model import OnnxModel, predictions_json
from serve.ray_hardening import bind_replica_grpc_to_node_ip
from serve.replica_facts import ReplicaFacts, facts_dir, write_facts
from serve.validation import InputError, parse_instances

log = logging.getLogger("ray.serve")


def error_body(status: int, reason: str, model: str, version: str) -> dict[str, Any]:
    return {"status": status, "error": reason, "model": model, "version": version}


class ModelVersion:
    def __init__(
        self,
        store: str,
        model: str,
        version: str,
        max_rows: int,
        max_body_bytes: int,
        spool_dir: str | None = None,
        asked_gpus: float = 0.0,
    ) -> None:
        bind_replica_grpc_to_node_ip()
        loaded = ModelStore(store).load(model, version)  # refuses a changed artifact
        gpu_ids = ray.get_gpu_ids()
        self.onnx = OnnxModel(loaded.data, loaded.manifest, gpu_assigned=bool(gpu_ids))
        self.manifest = loaded.manifest
        self.model = model
        self.version = version
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes
        self.replica = serve.get_replica_context().replica_tag
        self.gpu_ids = [str(g) for g in gpu_ids]
        log.info(
            "loaded %s/%s sha256=%s provider=%s gpus=%s CUDA_VISIBLE_DEVICES=%s",
            model,
            version,
            loaded.manifest.sha256[:12],
            self.onnx.provider,
            gpu_ids,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        spool_dir = os.environ.get(SPOOL_ENV) or spool_dir
        if spool_dir:
            self._tell_the_agent(Path(spool_dir), asked_gpus)

    def _tell_the_agent(self, spool_dir: Path, asked_gpus: float) -> None:
        """What this replica runs on, for its host's agent (serve/replica_facts.py)."""
        facts = ReplicaFacts(
            model=self.model,
            version=self.version,
            replica=self.replica,
            host=os.environ.get(HOST_ENV) or socket.gethostname(),
            pid=os.getpid(),
            process_started=psutil.Process().create_time(),
            asked_gpus=asked_gpus,
            gpu_ids=self.gpu_ids,
            provider=self.onnx.provider,
            available_providers=ort.get_available_providers(),
            onnxruntime=ort.__version__,
        )
        try:
            write_facts(facts_dir(spool_dir), facts)
        except OSError:  # serving matters more than the report
            log.exception("could not write the replica's facts under %s", spool_dir)
        if facts.cpu_fallback():
            log.error("%s/%s %s: %s", self.model, self.version, self.replica, facts.cpu_fallback())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batcher: Any = self._predict_batch  # @serve.batch adds setters its types do not show
        batcher.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        batcher.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.005)))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, arrays: list[np.ndarray]) -> list[list[dict] | Exception]:
        # One session run for every request in the batch, then split back per request.
        sizes = [len(a) for a in arrays]
        rows = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        try:
            # ONNX Runtime releases the GIL: the replica's event loop keeps accepting requests.
            result = await asyncio.to_thread(self.onnx.predict, rows)
        except Exception as exc:
            if len(arrays) == 1:
                return [exc]
            # One request's rows failed the run for all its batch-mates: each alone, so
            # only the request that fails gets the error.
            return [await self._predict_alone(a) for a in arrays]
        out: list[list[dict] | Exception] = []
        start = 0
        for n in sizes:
            probs = (
                result.probabilities[start : start + n]
                if result.probabilities is not None
                else None
            )
            out.append(predictions_json(result.labels[start : start + n], probs))
            start += n
        return out

    async def _predict_alone(self, rows: np.ndarray) -> list[dict] | Exception:
        try:
            result = await asyncio.to_thread(self.onnx.predict, rows)
        except Exception as exc:
            return exc
        return predictions_json(result.labels, result.probabilities)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "sha256": self.manifest.sha256,
            "provider": self.onnx.provider,
            "replica": self.replica,
            "gpu_ids": self.gpu_ids,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    async def infer(self, payload: Any) -> dict[str, Any]:
        """Predict for a parsed JSON payload. Bad input is an answer (status 4xx), not an
        exception, so a caller through a handle can tell the client's fault from ours."""
        started = time.perf_counter()
        try:
            rows = parse_instances(payload, self.manifest.input, self.max_rows)
        except InputError as exc:
            return error_body(exc.status, exc.reason, self.model, self.version)
        predictions = await self._predict_batch(rows)
        if isinstance(predictions, Exception):
            raise predictions
        return {
            "status": 200,
            "model": self.model,
            "version": self.version,
            "sha256": self.manifest.sha256,
            "replica": self.replica,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
            "predictions": predictions,
        }

    async def answer(self, body: bytes) -> dict[str, Any]:
        """The router's entry: raw request body in, status and JSON body out (encoded once,
        here, so the router can return and log the same bytes without re-encoding)."""
        started = time.perf_counter()
        if len(body) > self.max_body_bytes:
            result = self._too_large(len(body))
        elif not body.strip():
            result = error_body(
                400, 'empty body: send {"instances": [[...]]}', self.model, self.version
            )
        else:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                reason = f"body is not valid JSON: {exc}"
                result = error_body(400, reason, self.model, self.version)
            else:
                result = await self.infer(payload)
        return {
            "status": result["status"],
            "body": json.dumps(result, separators=(",", ":")).encode(),
            "sha256": self.manifest.sha256,
            "replica": self.replica,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
        }

    async def __call__(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.describe())
        if request.method != "POST":
            return JSONResponse(
                error_body(405, "use POST with a JSON body", self.model, self.version), 405
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return JSONResponse(self._too_large(int(declared)), 413)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > self.max_body_bytes:
                return JSONResponse(self._too_large(len(body)), 413)
        result = await self.answer(bytes(body))
        return Response(result["body"], result["status"], media_type="application/json")

    def _too_large(self, size: int) -> dict[str, Any]:
        reason = f"body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"
        return error_body(413, reason, self.model, self.version)


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder named by the Serve config's import_path."""
    return serve.deployment()(ModelVersion).bind(
        store=args["store"],
        model=args["model"],
        version=args["version"],
        max_rows=int(args.get("max_rows", 1024)),
        max_body_bytes=int(args.get("max_body_bytes", 1 << 20)),
        spool_dir=args.get("spool_dir"),
        asked_gpus=float(args.get("asked_gpus", 0.0)),
    )
