"""Whole photographs from Debian ``gcompris-qt-data``: a real-photo test set for comparing two models.

GCompris' games ship a few hundred photographs: fish, monuments, tools, power plants and household
things in its sorting game, wild and farm animals, the world's monuments. Each has its licence
and author in a README beside it (public domain, CC0 or CC-BY-SA, mostly from Wikimedia Commons).
They are not curated with ImageNet classes (many show things ImageNet has no class for, and a
photo of a reef holds several): :func:`unlabelled_photos` serves where no label is needed, such as
whether a distilled student says what its teacher says on photos no scene was composed from.
Nothing is downloaded or committed; ``make setup`` installs the package when run as root.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from .efficientnet import imagenet_classes, preprocess, unnormalize
from .images import TensorImages, missing_debian_file
from .qt_resource import members, read_member

__all__ = ["PACKAGE", "RESOURCES", "COLLECTIONS", "UnlabelledPhotos", "credits", "unlabelled_photos"]

PACKAGE = "gcompris-qt-data"
RESOURCES = Path("/usr/share/gcompris-qt/rcc")
_ACTIVITIES = "gcompris/src/activities/"
_SORTING = _ACTIVITIES + "categorization/resource/images/"
#: The package's folders of photographs, each a resource file and a folder inside it, checked by eye
#: on contact sheets (the games' other folders hold drawings, letters, maps or paintings).
COLLECTIONS = {
    "fishes": ("categorization.rcc", _SORTING + "fishes/"),  # fish in the sea and in aquariums
    "monuments": ("categorization.rcc", _SORTING + "monuments/"),
    "others": ("categorization.rcc", _SORTING + "others/"),  # household things, a chair, an igloo
    "renewable": ("categorization.rcc", _SORTING + "renewable/"),  # wind, solar and water power plants
    "tools": ("categorization.rcc", _SORTING + "tools/"),
    "animals": ("erase.rcc", _ACTIVITIES + "erase/resource/"),  # wild and farm animals, 1920 x 1080
    "world_animals": ("explore_world_animals.rcc", _ACTIVITIES + "explore_world_animals/resource/animals/"),
    "farm_animals": ("explore_farm_animals.rcc", _ACTIVITIES + "explore_farm_animals/resource/animals/"),
    "world_monuments": ("explore_monuments.rcc", _ACTIVITIES + "explore_monuments/resource/"),
}


def _named_in(readme: str, name: str) -> dict[str, str] | None:
    """The fields of the README block whose ``Files:`` list holds ``name`` (fields may come after the list)."""
    for block in readme.split("\n\n"):
        fields, files, key = {}, [], None
        for line in block.splitlines():
            head, colon, value = line.partition(":")
            if colon and head.strip() and " " not in head.strip():
                key = head.strip()
                fields[key] = value.strip()
                if key == "Files":
                    files += value.split()
            elif key == "Files":
                files += line.split()
        if name in files:
            return {key: value for key, value in fields.items() if key != "Files"}
    return None


def credits(resource: str | Path, member: str) -> dict[str, str]:
    """The README entry (Copyright, License, Source) that names ``member``: GCompris keeps a README in the
    file's folder or in one above it, naming the file by its path from there."""
    parts = member.split("/")
    inside = set(members(resource))
    for cut in range(len(parts) - 1, 0, -1):
        readme = "/".join(parts[:cut]) + "/README"
        if readme in inside:
            found = _named_in(read_member(resource, readme).decode("utf8"), "/".join(parts[cut:]))
            if found is not None:
                return found
    raise KeyError(f"no README in {resource} names the file {member!r}")


@dataclass
class UnlabelledPhotos(TensorImages):
    """Photographs preprocessed for EfficientNet-Lite0 (N, 3, 224, 224), without labels (``targets`` all -1).

    ``names`` are the files' names, ``collections`` the ``COLLECTIONS`` they come from; ``licences``
    and ``authors`` come from the READMEs in the package.
    """

    names: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels back in [0, 1] for plotting."""
        return unnormalize(self.images if images is None else images)


def _resource(file: str, root: Path) -> Path:
    path = Path(root) / file
    if not path.is_file():
        raise missing_debian_file(path, PACKAGE)
    return path


def unlabelled_photos(collections: tuple[str, ...] = tuple(COLLECTIONS), limit: int | None = None,
                      root: Path = RESOURCES) -> UnlabelledPhotos:
    """The photographs of ``collections`` whose licence a README states, collection by collection in file
    order, at most ``limit`` of them; shorter side resized to 224 and centre-cropped
    (:func:`zfkit.efficientnet.preprocess`)."""
    from PIL import Image

    unknown = sorted(set(collections) - set(COLLECTIONS))
    if unknown or not collections:
        raise ValueError(f"unknown collection(s) {unknown}; choose from {', '.join(COLLECTIONS)}")
    images, about = [], []
    for collection in collections:
        file, folder = COLLECTIONS[collection]
        resource = _resource(file, root)
        for member in (m for m in members(resource) if m.startswith(folder) and m.endswith(".webp")):
            if limit is not None and len(images) >= limit:
                break
            try:
                licence = credits(resource, member)
            except KeyError:  # upstream misspells one file's name: its licence is unstated, so it is left out
                continue
            with Image.open(io.BytesIO(read_member(resource, member))) as im:
                images.append(preprocess(im.convert("RGB")))
            about.append((member.rsplit("/", 1)[1], collection, licence))
    if not images:
        raise ValueError(f"no photographs in {collections} (limit {limit})")
    return UnlabelledPhotos(torch.stack(images), torch.full((len(images),), -1), imagenet_classes(),
                            names=tuple(a[0] for a in about), collections=tuple(a[1] for a in about),
                            licences=tuple(a[2].get("License", "") for a in about),
                            authors=tuple(a[2].get("Copyright", "") for a in about))
