"""Whole photographs from Debian ``gcompris-qt-data``: a real-photo test set for comparing two models.

GCompris' sorting game ships 140 photographs (139 with their licence stated) (fish in the sea, monuments, tools, wind and solar
plants, household things), each public domain or CC0 with its author named in the folder's README.
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
from .images import DataNotFoundError, TensorImages
from .qt_resource import members, read_member

__all__ = ["PACKAGE", "CATEGORIZATION", "FOLDERS", "UnlabelledPhotos", "credits", "unlabelled_photos"]

PACKAGE = "gcompris-qt-data"
CATEGORIZATION = Path("/usr/share/gcompris-qt/rcc/categorization.rcc")
_IMAGES = "gcompris/src/activities/categorization/resource/images/"
#: The folders that hold photographs (the game's others are drawn letters and digits).
FOLDERS = ("fishes", "monuments", "others", "renewable", "tools")


def credits(member: str, resource: Path = CATEGORIZATION) -> dict[str, str]:
    """The README entry (Copyright, License, Source) that names ``member``'s file, from the README beside it."""
    folder, name = member.rsplit("/", 1)
    readme = read_member(resource, f"{folder}/README").decode("utf8")
    for block in readme.split("\n\n"):
        if "Files:" in block and name in block.split("Files:", 1)[1].split():
            return {key.strip(): value.strip() for key, value in
                    (line.split(":", 1) for line in block.split("Files:", 1)[0].splitlines() if ":" in line)}
    raise KeyError(f"{folder}/README names no file {name!r}")


@dataclass
class UnlabelledPhotos(TensorImages):
    """Photographs preprocessed for EfficientNet-Lite0 (N, 3, 224, 224), without labels (``targets`` all -1).

    ``names`` are the files' names, ``folders`` the game's categories; ``licences`` and ``authors``
    come from the READMEs in the package.
    """

    names: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    def display(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels back in [0, 1] for plotting."""
        return unnormalize(self.images if images is None else images)


def unlabelled_photos(folders: tuple[str, ...] = FOLDERS, resource: Path = CATEGORIZATION) -> UnlabelledPhotos:
    """Every photograph in ``folders`` of GCompris' categorization resource whose licence a README states,
    in file order, shorter side resized to 224 and centre-cropped (:func:`zfkit.efficientnet.preprocess`)."""
    from PIL import Image

    unknown = sorted(set(folders) - set(FOLDERS))
    if unknown or not folders:
        raise ValueError(f"unknown folder(s) {unknown}; choose from {', '.join(FOLDERS)}")
    if not Path(resource).is_file():
        raise DataNotFoundError(f"{resource} is missing: it comes with the Debian package {PACKAGE}. Install it with "
                                f"`sudo apt-get install {PACKAGE}` (`make setup` does this when run as root)")
    chosen = [m for m in members(resource)
              if m.startswith(_IMAGES) and m.endswith(".webp") and m[len(_IMAGES):].split("/")[0] in folders]
    images, about, kept = [], [], []
    for member in chosen:
        try:
            about.append(credits(member, resource))
        except KeyError:  # no README names it (upstream misspells one file): its licence is unstated, leave it out
            continue
        with Image.open(io.BytesIO(read_member(resource, member))) as im:
            images.append(preprocess(im.convert("RGB")))
        kept.append(member)
    chosen = kept
    return UnlabelledPhotos(torch.stack(images), torch.full((len(chosen),), -1), imagenet_classes(),
                            names=tuple(m.rsplit("/", 1)[1] for m in chosen),
                            folders=tuple(m[len(_IMAGES):].split("/")[0] for m in chosen),
                            licences=tuple(a.get("License", "") for a in about),
                            authors=tuple(a.get("Copyright", "") for a in about))
