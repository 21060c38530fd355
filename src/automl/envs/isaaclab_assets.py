"""Isaac Lab's assets, offline: a local asset root built from what installed packages ship, and a
check that every asset a task's config names is there before the task is built.

Isaac Lab reads its asset root once, when `isaaclab.utils.assets` is imported, from
`ISAACSIM_ASSET_ROOT` (else NVIDIA's asset servers, which a machine without internet retries for
about 48 s before failing). automl sets that variable before importing Isaac Lab: to the user's own
mirror when they set it, else to a folder it builds from the `newton` wheel (the cartpole and the
ant, flattened USD copies of Isaac Lab's) and a ground plane shipped with automl.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl import paths
from automl.errors import ConfigError

ASSET_ROOT_ENV = "ISAACSIM_ASSET_ROOT"
"""Isaac Lab's (and Isaac Sim's) variable for the asset root."""
_GROUND_PLANE = Path(__file__).with_name("assets") / "ground_plane.usda"


@dataclass(frozen=True)
class BundledAsset:
    """One file of the offline asset root: where Isaac Lab looks, and where automl takes it from."""

    path: str
    """Path under the asset root, as Isaac Lab's configs name it."""
    source: str
    """`newton:<file>` (newton/examples/assets/<file>) or `automl:ground_plane.usda`."""
    default_prim: str | None = None
    """Rename the layer's default prim to this (the newton cartpole's names `cartPole`, a prim that
    its file does not define; Isaac Lab references the default prim)."""


BUNDLED = (
    BundledAsset("Isaac/IsaacLab/Robots/Classic/Cartpole/cartpole.usd",
                 "newton:cartpole_single_pendulum.usda", default_prim="cartpole"),
    BundledAsset("Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd", "newton:ant.usda"),
    BundledAsset("Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda",
                 "automl:ground_plane.usda"),
)
"""What the offline asset root holds: enough for Isaac-Cartpole(-Direct) and Isaac-Ant-Direct."""


def _source_text(source: str) -> str:
    kind, name = source.split(":", 1)
    if kind == "automl":
        return _GROUND_PLANE.read_text()
    import importlib.util

    spec = importlib.util.find_spec("newton")
    assert spec is not None and spec.origin is not None, "the newton package is a dependency of isaaclab"
    return (Path(spec.origin).parent / "examples" / "assets" / name).read_text()


def _with_default_prim(text: str, prim: str | None) -> str:
    if prim is None:
        return text
    head, sep, rest = text.partition("defaultPrim = ")
    if not sep:
        raise ValueError("the layer has no defaultPrim to rename")
    _, _, after = rest.partition("\n")
    return f'{head}defaultPrim = "{prim}"\n{after}'


def build_offline_root(root: Path) -> Path:
    """Write the bundled assets under `root` (atomic per file; existing files are left as they are)."""
    for asset in BUNDLED:
        target = root / asset.path
        if target.exists():
            continue
        paths.atomic_write_text(target, _with_default_prim(_source_text(asset.source), asset.default_prim))
    return root


def use_asset_root() -> str:
    """Point Isaac Lab at an asset root before it is imported: the user's `ISAACSIM_ASSET_ROOT` when
    set, else automl's offline folder (built on first use). Returns the root."""
    root = os.environ.get(ASSET_ROOT_ENV)
    if not root:
        root = str(build_offline_root(paths.isaaclab_asset_folder()))
        os.environ[ASSET_ROOT_ENV] = root
    return root


def _usd_paths(cfg: Any, seen: set[int] | None = None) -> Iterator[tuple[str, str]]:
    """(config path, usd_path) of every spawner in a task config that loads a file."""
    seen = set() if seen is None else seen
    if id(cfg) in seen or cfg is None or isinstance(cfg, (str, int, float, bool, bytes)):
        return
    seen.add(id(cfg))
    items: Any
    if isinstance(cfg, dict):
        items = cfg.items()
    elif isinstance(cfg, (list, tuple)):
        items = enumerate(cfg)
    elif hasattr(cfg, "__dataclass_fields__"):
        items = ((name, getattr(cfg, name, None)) for name in cfg.__dataclass_fields__)
    else:
        return
    for key, value in items:
        if key == "usd_path" and isinstance(value, str):
            yield str(key), value
        else:
            for sub_key, path in _usd_paths(value, seen):
                yield f"{key}.{sub_key}", path


def check_assets(cfg: Any, *, task: str, root: str) -> None:
    """Exit 2 at once (not after Isaac Lab's download retries) for a local asset that is missing,
    and for a remote one (a URL, such as Isaac-Fourbar-Pole-Swingup's) while the asset root is
    automl's own offline folder: automl chose local files only, so the download would fail after
    ~40 s. Where the user set the asset root, remote paths are left to Isaac Lab to fetch."""
    offline = "://" not in root and Path(root).resolve() == paths.isaaclab_asset_folder().resolve()
    for key, usd in _usd_paths(cfg):
        if "://" in usd and not usd.startswith("file://"):
            if not offline:
                continue
            raise ConfigError(
                file=f"Isaac Lab task {task}", key=f"env_cfg.{key}", value=usd,
                rule=f"that asset is remote, and automl's asset root {root!r} holds local files "
                     f"only ({ASSET_ROOT_ENV} is not set)",
                fix=f"on a machine that reaches that server, set {ASSET_ROOT_ENV} (to your asset "
                    "root or mirror) and Isaac Lab fetches it; else pick a task whose assets are "
                    "local (docs/guide/tasks.md, \"Isaac Lab tasks\")")
        if not Path(usd.removeprefix("file://")).is_file():
            raise ConfigError(
                file=f"Isaac Lab task {task}", key=f"env_cfg.{key}", value=usd,
                rule=f"that asset is not a file under the asset root {root!r} (this machine loads "
                     "Isaac Lab assets from local files only)",
                fix=f"copy the asset there from an Isaac Sim asset mirror, or set {ASSET_ROOT_ENV} "
                    "to a folder that holds it (docs/guide/tasks.md, \"Isaac Lab tasks\")")
