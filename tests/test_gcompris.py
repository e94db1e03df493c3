"""The GCompris photo set against upstream's own READMEs in Debian gcompris-qt-data."""

import pytest
import torch

from zfkit import data
from zfkit.gcompris import COLLECTIONS, RESOURCES, credits, unlabelled_photos

pytestmark = pytest.mark.skipif(not (RESOURCES / "categorization.rcc").is_file(),
                                reason="Debian gcompris-qt-data is not installed (make setup)")
SORTING = RESOURCES / "categorization.rcc"
TOOLS = "gcompris/src/activities/categorization/resource/images/tools/"


def test_credits_come_from_the_readme_that_names_the_file():
    hammer = credits(SORTING, TOOLS + "hammer2.webp")
    assert sorted(hammer) == ["Copyright", "License", "Source"] and hammer["Source"].endswith("image=25081&picture=hammer")
    assert (hammer["Copyright"], hammer["License"]) == ("Junior Libby", "CC0-1.0")
    with pytest.raises(KeyError, match="names the file .*screwDriver.webp"):  # upstream's README misspells it
        credits(SORTING, TOOLS + "screwDriver.webp")
    monuments = RESOURCES / "explore_monuments.rcc"  # one README above the country folders, naming france/…
    eiffel = credits(monuments, "gcompris/src/activities/explore_monuments/resource/france/eiffelTower.webp")
    assert eiffel["License"] and eiffel["Copyright"]
    animals = RESOURCES / "erase.rcc"  # the licence may come after the file list
    assert credits(animals, "gcompris/src/activities/erase/resource/heron.webp")["License"] == "CC-BY-SA-4.0"


def test_the_photos_are_every_credited_photograph_of_the_collections():
    every = data.unlabelled_photos()
    assert len(every) == 244 and every.images.shape == (244, 3, 224, 224)  # 246 files, two without a stated licence
    assert set(every.collections) == set(COLLECTIONS)
    assert "screwDriver.webp" not in every.names and "aulaPalatina.webp" not in every.names
    assert all(every.licences) and all(every.authors) and (every.targets == -1).all()
    pixels = every.display()
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.1
    others = data.unlabelled_photos(("others",))
    assert others.collections == ("others",) * len(others) and len(others) == 17
    assert torch.equal(others.images, every.images[[i for i, c in enumerate(every.collections) if c == "others"]])
    assert torch.equal(data.unlabelled_photos(limit=5).images, every.images[:5])


def test_bad_collections_and_a_missing_package_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown collection"):
        data.unlabelled_photos(("alphabets",))
    with pytest.raises(data.DataNotFoundError, match="apt-get install gcompris-qt-data"):
        data.unlabelled_photos(root=tmp_path)
