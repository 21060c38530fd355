"""Exported presets: where a study's `<study>_best.yaml` is written, and how `+experiment=NAME`
finds it.

A study writes its preset into its own folder (`<study>/experiment/<study>_best.yaml`), never into
`conf/`, so no run changes the source tree; $AUTOML_PRESETS_ROOT sends every preset to
`<root>/experiment/` instead. Composition looks in $AUTOML_PRESETS_ROOT, then in the study
folders, newest first, then in `conf/experiment/` (presets a user keeps there), and adds the one
folder that holds the preset to Hydra's search path. A name is matched after the same clean-up the
export applies, so `+experiment=my-study_best` finds the preset of study `my-study`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from automl import paths

GROUP = "experiment"
SUFFIX = "_best"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")
"""What a preset's name holds as `_`: anything a file name or a Hydra override could trip on."""


def preset_name(study_name: str) -> str:
    """`<study>_best`, with every character a file name or a Hydra override could trip on as `_`."""
    safe = _UNSAFE.sub("_", study_name).strip("_") or "study"
    return f"{safe}{SUFFIX}"


def normalized(option: str) -> str:
    """The preset name `option` means: `my-study_best` -> `my_study_best`, as the export names it."""
    if option.endswith(SUFFIX):
        return preset_name(option.removesuffix(SUFFIX))
    return _UNSAFE.sub("_", option).strip("_") or option


def export_path(study_root: Path, study_name: str) -> Path:
    """Where a study writes its preset: its own folder, or $AUTOML_PRESETS_ROOT where set."""
    root = paths.presets_root() or study_root
    return root / GROUP / f"{preset_name(study_name)}.yaml"


def _folders() -> list[Path]:
    """Every folder whose `experiment/` may hold presets, in the order composition prefers them:
    $AUTOML_PRESETS_ROOT, the study folders (newest first), then `conf/` (so a preset exported
    into `conf/experiment/` by an older version never shadows its study's newer export)."""
    moved = paths.presets_root()
    folders = [moved] if moved is not None else []
    studies = paths.automl_root()
    if studies.is_dir():
        found = [d for d in studies.iterdir() if (d / GROUP).is_dir()]
        folders += sorted(found, key=lambda d: (d / GROUP).stat().st_mtime, reverse=True)
    return [*folders, paths.conf_dir()]


def options() -> list[str]:
    """Every preset name `+experiment=` accepts."""
    return sorted({p.stem for folder in _folders() for p in (folder / GROUP).glob("*.yaml")})


def find(option: str) -> Path | None:
    """The preset file `+experiment=<option>` composes, or None."""
    for name in dict.fromkeys((option, normalized(option))):
        for folder in _folders():
            if (folder / GROUP / f"{name}.yaml").is_file():
                return folder / GROUP / f"{name}.yaml"
    return None


def _is_experiment(override: str) -> bool:
    key, sep, _ = override.partition("=")
    return bool(sep) and key.lstrip("+~").removeprefix("override ") == GROUP


def resolve(overrides: Sequence[str]) -> list[str]:
    """`overrides` with an `experiment=` option renamed to the preset's file name (each option of
    a `--multirun` sweep `a_best,b_best`), followed by the Hydra search path of the folders that
    hold them where those are not `conf/` (right after it, so it stays among the overrides
    wherever Hydra's own flags stand on the command line)."""
    out: list[str] = []
    for override in overrides:
        key, _, value = override.partition("=")
        found = [find(option) for option in value.split(",")] if _is_experiment(override) else []
        if not found or None in found:
            out.append(override)  # Hydra names what it cannot find
            continue
        files = [f for f in found if f is not None]
        out.append(f"{key}={','.join(f.stem for f in files)}")
        roots = dict.fromkeys(f.parent.parent.resolve() for f in files)
        extra = [f"'file://{root}'" for root in roots if root != paths.conf_dir().resolve()]
        if extra:  # quoted: a folder's name may hold any character
            out.append(f"hydra.searchpath=[{','.join(extra)}]")
    return out
