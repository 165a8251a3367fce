"""The model store: `<root>/<model>/<version>/{artifact, manifest.json, reference.parquet}`.

Pure file handling (no Ray): the agent and the Serve replicas both read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from serve.manifest import MANIFEST_FILE, REFERENCE_FILE, Manifest, check_artifact_name
from serve.names import check_name, check_version

DEFAULT_STORE = Path(".trackside/models")
_CHUNK = 1 << 20


class StoreError(Exception):
    """A store operation that cannot be done; the message says what to do."""


class IntegrityError(StoreError):
    """An artifact whose bytes do not match the sha256 its manifest recorded."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


STAGING_PREFIX = ".staging-"
STALE_STAGING_S = 3600  # a registration copies one file: an hour-old one was killed


def _remove_stale_staging(model_dir: Path) -> None:
    now = time.time()
    for leftover in model_dir.glob(f"{STAGING_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(leftover, ignore_errors=True)


@dataclass(frozen=True)
class LoadedArtifact:
    manifest: Manifest
    data: bytes
    folder: Path


class ModelStore:
    def __init__(self, root: Path | str = DEFAULT_STORE) -> None:
        self.root = Path(root).expanduser().resolve()

    def version_dir(self, model: str, version: str) -> Path:
        return self.root / check_name("model", model) / check_version(version)

    def exists(self, model: str, version: str) -> bool:
        return (self.version_dir(model, version) / MANIFEST_FILE).is_file()

    def register(
        self,
        manifest_fields: dict,
        artifact: Path,
        reference: Path | None,
    ) -> Manifest:
        """Copy the artifact (and reference sample) in and write the manifest.

        The version folder is assembled under a temporary name and renamed into place, so a
        reader never sees half a version, and an existing version is never overwritten.
        """
        model = check_name("model", manifest_fields["model"])
        version = check_version(manifest_fields["version"])
        artifact = Path(artifact)
        if not artifact.is_file():
            raise StoreError(f"artifact {artifact} is not a file")
        if reference is not None and not Path(reference).is_file():
            raise StoreError(f"reference sample {reference} is not a file")
        try:
            check_artifact_name(artifact.name)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        final = self.version_dir(model, version)
        if final.exists():
            raise StoreError(
                f"{model}/{version} is already registered in {self.root}: versions are"
                " immutable, register a new version name instead"
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(final.parent)
        staging = final.parent / f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            shutil.copyfile(artifact, staging / artifact.name)
            fields = dict(manifest_fields)
            fields.update(
                artifact=artifact.name,
                sha256=sha256_file(staging / artifact.name),
                size_bytes=(staging / artifact.name).stat().st_size,
                reference=None,
            )
            if reference is not None:
                shutil.copyfile(reference, staging / REFERENCE_FILE)
                fields["reference"] = REFERENCE_FILE
            try:
                manifest = Manifest.model_validate(fields)
            except ValidationError as exc:
                raise StoreError(f"manifest for {model}/{version} is invalid: {exc}") from exc
            (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
            try:
                # rename() onto an existing empty folder would succeed: mkdir claims the name.
                final.mkdir()
                os.replace(staging, final)
            except OSError as exc:
                raise StoreError(f"{model}/{version} appeared while registering: {exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def manifest(self, model: str, version: str) -> Manifest:
        path = self.version_dir(model, version) / MANIFEST_FILE
        if not path.is_file():
            raise StoreError(f"{model}/{version} is not registered in {self.root}")
        try:
            return Manifest.model_validate_json(path.read_text())
        except ValidationError as exc:
            raise StoreError(f"manifest {path} is invalid: {exc}") from exc

    def list(self, model: str | None = None) -> list[Manifest]:
        if not self.root.is_dir():
            return []
        models = (
            [check_name("model", model)]
            if model
            else sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        )
        found: list[Manifest] = []
        for name in models:
            folder = self.root / name
            if not folder.is_dir():
                continue
            for vdir in folder.iterdir():
                # Hidden: a registration under way, or one a killed process left behind.
                if vdir.name.startswith(".") or not vdir.is_dir():
                    continue
                if (vdir / MANIFEST_FILE).is_file():
                    found.append(self.manifest(name, vdir.name))
        return sorted(found, key=lambda m: (m.model, m.created_at, m.version))

    def reference_path(self, model: str, version: str) -> Path | None:
        manifest = self.manifest(model, version)
        if manifest.reference is None:
            return None
        folder = self.version_dir(model, version)
        path = (folder / manifest.reference).resolve()
        if path.parent != folder.resolve():  # a link out of the folder, say
            raise StoreError(f"{model}/{version}: reference {path} is outside {folder}")
        return path

    def load(self, model: str, version: str) -> LoadedArtifact:
        """Read the artifact and check its sha256 before anything parses it."""
        manifest = self.manifest(model, version)
        if manifest.framework != "onnx":
            raise StoreError(f"{model}/{version}: framework {manifest.framework} cannot be loaded")
        folder = self.version_dir(model, version)
        path = folder / manifest.artifact
        if path.name != manifest.artifact or not path.is_file():
            raise StoreError(f"{model}/{version}: artifact {manifest.artifact!r} is missing")
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.sha256:
            raise IntegrityError(
                f"{model}/{version}: artifact {path} has sha256 {actual} but the manifest"
                f" records {manifest.sha256}; refusing to load a changed artifact"
                " (re-register it as a new version if the change is intended)"
            )
        return LoadedArtifact(manifest=manifest, data=data, folder=folder)
