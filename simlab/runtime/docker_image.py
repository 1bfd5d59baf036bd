"""The simlab node image: one image for every simlab node, built offline through the Docker SDK.

No image registry can be reached, so nothing here pulls. Two steps:

* `make_base_image` makes the base: a Debian rootfs with python3 from
  `debootstrap --variant=minbase`, tarred and imported with `docker import`
  (tag `simlab-base:bookworm`). Needs root and debootstrap; done once per engine.
* `ensure_image` builds `simlab-node:<hash>` (and `simlab-node:latest`) FROM that base. The
  build context holds wheels only: simlab's runtime dependencies (built once into a cache
  directory keyed by the dependency list and the Python version) and simlab's own wheel (built
  every time, it is small). The build runs with no network. The dependencies are one layer and
  simlab another, so a code change rebuilds only the last layer. The tag is a hash of everything
  in the context and the base image id: when it exists already the image is returned as is.

Every image is labelled `org.simlab.image` (`base` or `node`), which `list_images` uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE = "simlab-base:bookworm"
DEFAULT_SUITE = "bookworm"
NODE_REPOSITORY = "simlab-node"
LABEL_KIND = "org.simlab.image"
LABEL_VERSION = "org.simlab.version"
LABEL_BASE = "org.simlab.base"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
CONTAINER_VENV = "/opt/simlab"

Progress = Callable[[str], None]

DOCKERFILE = f"""\
# The simlab node image. BASE: an image with python3 (and its venv module), e.g. the one
# `simlab image base` makes. Nothing is fetched: every package comes in as a wheel.
# (Few metadata steps, and none after the last layer: each is a container, a full copy with
# the vfs storage driver.)
ARG BASE={DEFAULT_BASE}
FROM ${{BASE}}
LABEL {LABEL_KIND}=node {LABEL_BASE}="@BASE@" {LABEL_VERSION}="@VERSION@"
ENV PATH={CONTAINER_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_NO_CACHE_DIR=1
WORKDIR /lab
CMD ["python", "-m", "simlab.nodes.pacs", "--help"]
# Layer 1: the dependencies (changes only when pyproject's dependency list does).
COPY wheels/deps/ /tmp/wheels/deps/
RUN python3 -m venv {CONTAINER_VENV} \\
 && {CONTAINER_VENV}/bin/pip install --no-index --find-links /tmp/wheels/deps \\
        -r /tmp/wheels/deps/requirements.txt \\
 && rm -rf /tmp/wheels/deps
# Layer 2: simlab itself (changes with every code change).
COPY wheels/simlab/ /tmp/wheels/simlab/
RUN {CONTAINER_VENV}/bin/pip install --no-index --no-deps /tmp/wheels/simlab/*.whl \\
 && rm -rf /tmp/wheels/simlab
"""


class ImageError(RuntimeError):
    """The image could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    cached: bool
    seconds: float
    base: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageInfo:
    tags: list[str]
    image_id: str
    kind: str
    version: str
    size: int
    created: str


# ------------------------------------------------------------------------------- paths, locks
def cache_dir() -> Path:
    """Where wheels and the build lock live: $SIMLAB_CACHE, else $XDG_CACHE_HOME/simlab,
    else ~/.cache/simlab."""
    if os.environ.get("SIMLAB_CACHE"):
        return Path(os.environ["SIMLAB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "simlab"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One builder at a time per machine (parallel test workers, two shells)."""
    path = cache_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _image_exists(client: Any, name: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name)
    except ImageNotFound:
        return None


def _simlab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("simlab")
    except PackageNotFoundError:
        return "unknown"


def _split_tag(tag: str) -> tuple[str, str]:
    repo, sep, version = tag.rpartition(":")
    if not sep or "/" in version:
        return tag, "latest"
    return repo, version


# ------------------------------------------------------------------------------- base image
def make_base_image(
    client: Any,
    tag: str = DEFAULT_BASE,
    suite: str = DEFAULT_SUITE,
    rootfs: str | Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> str:
    """Import a Debian rootfs with python3 as image `tag`; returns the tag.

    With `rootfs`, that existing directory is imported; else debootstrap makes one in a
    temporary directory (root and debootstrap needed, a few minutes) that is removed after.
    When `tag` exists already, nothing is done unless `force`.
    """
    with _lock("base"):
        if not force and _image_exists(client, tag) is not None:
            _say(progress, f"{tag} exists already (use --force to make it again)")
            return tag
        if rootfs is not None:
            root = Path(rootfs)
            if not (root / "usr" / "bin" / "python3").exists():
                raise ImageError(
                    f"{root} does not look like a rootfs with python3 (no usr/bin/python3)"
                )
            _import_rootfs(client, root, tag, suite, progress)
            return tag
        if os.geteuid() != 0:
            raise ImageError(
                "making the base image runs debootstrap, which needs root: run "
                "`simlab image base` as root, or pass --rootfs DIR with a Debian rootfs "
                "that has python3"
            )
        if shutil.which("debootstrap") is None:
            raise ImageError(
                "debootstrap is not installed (Debian: apt-get install debootstrap), or pass "
                "--rootfs DIR with a Debian rootfs that has python3"
            )
        work = Path(tempfile.mkdtemp(prefix="simlab-rootfs-"))
        try:
            root = work / "rootfs"
            _debootstrap(root, suite, progress)
            _import_rootfs(client, root, tag, suite, progress)
        finally:
            _remove_tree(work)
        return tag


def _debootstrap(root: Path, suite: str, progress: Progress | None) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        suite,
        str(root),
    ]
    _say(progress, "running " + " ".join(cmd) + " (a few minutes)")
    tail: list[str] = []
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-19:], line]
        _say(progress, line)
    if proc.wait() != 0:
        raise ImageError(
            f"debootstrap failed (exit {proc.returncode}); its last lines:\n" + "\n".join(tail)
        )


def _import_rootfs(
    client: Any, root: Path, tag: str, suite: str, progress: Progress | None
) -> None:
    simlab_version = _simlab_version()
    repo, version = _split_tag(tag)
    with tempfile.TemporaryDirectory(prefix="simlab-rootfs-tar-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        _say(progress, f"packing {root} into a tar")
        cmd = [
            "tar",
            "--numeric-owner",
            "--preserve-permissions",
            "--xattrs",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./dev/*",
            "--exclude=./var/cache/apt/archives/*.deb",
            "--exclude=./var/lib/apt/lists/*",
            "-cf",
            str(tar_path),
            "-C",
            str(root),
            ".",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ImageError(f"could not tar {root}: {done.stderr.strip()}")
        _say(progress, f"importing it as {tag}")
        changes = [
            f"LABEL {LABEL_KIND}=base {LABEL_VERSION}={simlab_version} org.simlab.suite={suite}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
        ]
        client.api.import_image(src=str(tar_path), repository=repo, tag=version, changes=changes)
    if _image_exists(client, tag) is None:
        raise ImageError(f"docker import reported no error but {tag} does not exist")


def _remove_tree(path: Path) -> None:
    """Remove a debootstrap target, never following a mount left behind into the host."""

    def mounts_under() -> list[str]:
        try:
            lines = Path("/proc/mounts").read_text().splitlines()
        except OSError:
            return []
        inside = str(path) + "/"
        return [
            p for p in (ln.split()[1] for ln in lines) if p == str(path) or p.startswith(inside)
        ]

    for point in sorted(mounts_under(), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    still = mounts_under()
    if still:
        raise ImageError(f"{path} still has mounts ({', '.join(still)}); remove it by hand")
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------- wheels
def project_root() -> Path:
    """simlab's source tree (pyproject.toml next to the simlab package)."""
    import simlab

    root = Path(simlab.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise ImageError(
            f"the simlab node image is built from simlab's source tree, and {root} has no "
            "pyproject.toml: install simlab from its source (pip install -e .)"
        )
    return root


def _pyproject(root: Path) -> dict[str, Any]:
    return tomllib.loads((root / "pyproject.toml").read_text())


def _python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"


def _pip(args: list[str], what: str, progress: Progress | None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise ImageError(f"{what} failed (pip exit {done.returncode}):\n{tail}")


def dependency_wheels(root: Path | None = None, progress: Progress | None = None) -> Path:
    """A directory with wheels of simlab's runtime dependencies (not the test extras) and
    requirements.txt; built once per dependency list and Python version, then reused.
    Beside it, `<dir>-build` holds the build backend's wheels, so simlab's own wheel builds
    without an index."""
    root = root or project_root()
    meta = _pyproject(root)
    deps = list(meta["project"].get("dependencies", []))
    build_requires = list(meta.get("build-system", {}).get("requires", []))
    key = hashlib.sha256(
        json.dumps([deps, build_requires, _python_tag()], sort_keys=True).encode()
    ).hexdigest()[:16]
    target = cache_dir() / "wheels" / key
    build_target = cache_dir() / "wheels" / f"{key}-build"
    if (target / ".complete").exists() and (build_target / ".complete").exists():
        return target
    _say(progress, f"building dependency wheels once into {target}")
    for where, reqs in ((target, deps), (build_target, build_requires)):
        if (where / ".complete").exists():
            continue
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{where.name}-", dir=where.parent))
        try:
            if reqs:
                _pip(["wheel", "-q", "--wheel-dir", str(tmp), *reqs], "pip wheel", progress)
            (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
            (tmp / ".complete").write_text(_python_tag() + "\n")
            shutil.rmtree(where, ignore_errors=True)
            tmp.rename(where)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def simlab_wheel(out_dir: Path, root: Path | None = None, progress: Progress | None = None) -> Path:
    """Build simlab's own wheel (no dependencies, no index) into out_dir."""
    root = root or project_root()
    deps = dependency_wheels(root, progress)
    build = deps.parent / f"{deps.name}-build"
    _say(progress, "building the simlab wheel")
    out_dir.mkdir(parents=True, exist_ok=True)
    _pip(
        [
            "wheel",
            "-q",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(build),
            "--wheel-dir",
            str(out_dir),
            str(root),
        ],
        "building simlab's wheel",
        progress,
    )
    wheels = sorted(out_dir.glob("simlab-*.whl"))
    if len(wheels) != 1:
        raise ImageError(f"expected one simlab wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def _wheel_digest(wheel: Path) -> str:
    """A digest of what a wheel holds (names and bytes), not of the zip's own metadata."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            h.update(name.encode() + b"\0")
            h.update(hashlib.sha256(zf.read(name)).digest())
    return h.hexdigest()


def _deps_digest(deps: Path) -> str:
    """Digest of the dependency wheel directory, cached in a file beside the wheels."""
    stamp = deps / ".digest"
    if stamp.exists():
        return stamp.read_text().strip()
    h = hashlib.sha256()
    for path in sorted(deps.iterdir()):
        if path.name.startswith("."):
            continue
        h.update(path.name.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    digest = h.hexdigest()
    stamp.write_text(digest + "\n")
    return digest


# ------------------------------------------------------------------------------- node image
def ensure_image(
    client: Any,
    base: str | None = None,
    tag: str | None = None,
    progress: Progress | None = None,
) -> str:
    """The simlab node image's tag (`<repository>:<hash>`), built when it does not exist.

    base: the image to build FROM (default simlab-base:bookworm). tag: the repository
    (default simlab-node); the image is tagged `<repository>:<hash>` and `<repository>:latest`.
    """
    return build_image(client, base=base, tag=tag, progress=progress).tag


def build_image(
    client: Any,
    base: str | None = None,
    tag: str | None = None,
    progress: Progress | None = None,
    root: Path | None = None,
) -> BuildResult:
    """Like ensure_image, with whether the image was cached and how long it took.
    root: the simlab source tree to build from (default: the one this simlab runs from)."""
    simlab_version = _simlab_version()
    started = time.monotonic()
    base = base or DEFAULT_BASE
    repository = tag or NODE_REPOSITORY
    base_image = _image_exists(client, base)
    if base_image is None:
        hint = (
            "make it with `simlab image base` (a Debian rootfs from debootstrap, imported "
            "with docker import)"
            if base == DEFAULT_BASE
            else "load or build it first, or make the default one with `simlab image base` "
            "and leave out --base"
        )
        raise ImageError(f"base image {base} not found on the Docker engine: {hint}")
    root = root or project_root()
    with _lock("image"), tempfile.TemporaryDirectory(prefix="simlab-image-") as tmp:
        context = Path(tmp)
        deps = dependency_wheels(root, progress)
        deps_ctx = context / "wheels" / "deps"
        deps_ctx.mkdir(parents=True)
        for path in deps.iterdir():
            if not path.name.startswith("."):
                _link_or_copy(path, deps_ctx / path.name)
        wheel = simlab_wheel(context / "wheels" / "simlab", root, progress)
        dockerfile = DOCKERFILE.replace("@BASE@", base).replace("@VERSION@", simlab_version)
        (context / "Dockerfile").write_text(dockerfile)
        h = hashlib.sha256()
        for part in (dockerfile, base_image.id, _deps_digest(deps), _wheel_digest(wheel)):
            h.update(part.encode() + b"\0")
        digest = h.hexdigest()
        full_tag = f"{repository}:{digest[:12]}"
        existing = _image_exists(client, full_tag)
        if existing is not None:
            existing.tag(repository, "latest")
            return BuildResult(full_tag, existing.id, True, time.monotonic() - started, base)
        _say(progress, f"building {full_tag} from {base}")
        image_id = _docker_build(client, context, full_tag, {"BASE": base}, progress)
        client.images.get(image_id).tag(repository, "latest")
        return BuildResult(full_tag, image_id, False, time.monotonic() - started, base)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _docker_build(
    client: Any,
    context: Path,
    full_tag: str,
    buildargs: dict[str, str],
    progress: Progress | None,
) -> str:
    from docker.errors import APIError

    tail: list[str] = []
    image_id = ""
    try:
        stream = client.api.build(
            path=str(context),
            tag=full_tag,
            buildargs=buildargs,
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = str(chunk.get("error", "")).strip()
                hint = ""
                seen = "\n".join(tail)
                if "No matching distribution" in seen or "not a supported wheel" in seen:
                    hint = (
                        f"\nThe dependency wheels were built for this Python "
                        f"({_python_tag()}); the base image's python3 must be the same "
                        "version (Debian bookworm: 3.11)."
                    )
                raise ImageError(
                    f"building {full_tag} failed: {detail}\n" + "\n".join(tail[-20:]) + hint
                )
            text = str(chunk.get("stream", "")).rstrip()
            if text:
                tail = [*tail[-39:], text]
                _say(progress, text)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except APIError as exc:
        raise ImageError(f"building {full_tag} failed: {exc.explanation or exc}") from None
    if not image_id:
        found = _image_exists(client, full_tag)
        if found is None:
            raise ImageError(f"building {full_tag} ended without an image:\n" + "\n".join(tail))
        image_id = found.id
    return image_id


# ------------------------------------------------------------------------------- listing
def list_images(client: Any) -> list[ImageInfo]:
    """simlab's images on the engine (base and node), newest first."""
    seen: dict[str, ImageInfo] = {}
    candidates = list(client.images.list(filters={"label": LABEL_KIND}))
    candidates += [
        img
        for img in client.images.list()
        if any(t.startswith(("simlab-base:", f"{NODE_REPOSITORY}:")) for t in img.tags)
    ]
    for img in candidates:
        if img.id in seen:
            continue
        attrs = img.attrs
        labels = img.labels or {}
        kind = labels.get(LABEL_KIND) or (
            "base" if any(t.startswith("simlab-base:") for t in img.tags) else "node"
        )
        seen[img.id] = ImageInfo(
            tags=sorted(img.tags),
            image_id=img.short_id,
            kind=kind,
            version=labels.get(LABEL_VERSION, "-"),
            size=int(attrs.get("Size", 0)),
            created=str(attrs.get("Created", ""))[:19].replace("T", " "),
        )
    return sorted(seen.values(), key=lambda i: i.created, reverse=True)


def prune_images(client: Any, repository: str = NODE_REPOSITORY) -> list[str]:
    """Remove node images other than `<repository>:latest` (earlier code versions) and
    untagged simlab images. An image a container still uses, or that has a tag outside
    `<repository>`, stays. Returns the removed images' short ids."""
    from docker.errors import APIError, ImageNotFound

    keep = _image_exists(client, f"{repository}:latest")
    removed = []
    for img in client.images.list(filters={"label": LABEL_KIND}):
        if keep is not None and img.id == keep.id:
            continue
        if img.tags and (
            img.labels.get(LABEL_KIND) != "node"
            or not all(t.startswith(f"{repository}:") for t in img.tags)
        ):
            continue
        try:
            for name in img.tags or [img.id]:
                client.images.remove(name)
        except (APIError, ImageNotFound):
            continue
        removed.append(img.short_id.removeprefix("sha256:"))
    return removed
