"""Where the decoded-image cache lives: the user cache by default, never the data folder; one
entry per source folder; `data.cache_dir` to choose."""

import os
import stat
from pathlib import Path

from tests.test_data import make_tree
from wrn.data import CIFARData
from wrn.data.sources import default_cache_dir


def listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def tree_data(root: Path, **overrides) -> CIFARData:
    settings = dict(root=str(root), batch_size=8, val_size=6, num_workers=0, download=False, progress=False)
    return CIFARData(**{**settings, **overrides})


def make_read_only(root: Path) -> None:
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def test_default_cache_is_the_user_cache_and_the_data_root_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = make_tree(tmp_path / "root")
    before = listing(root)
    make_read_only(root)
    try:
        first = tree_data(root)
        first.setup("fit")
        again = tree_data(root)
        again.setup("fit")
    finally:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)  # so tmp_path can be cleaned up
    assert listing(root) == before  # nothing written into the data folder (even as root, who may)
    cache = tmp_path / "xdg" / "wrn" / "decoded"
    assert len(list(cache.glob("root-train-*.images.npy"))) == 1
    assert len(list(cache.glob("*.json"))) == 1  # the second setup read the entry, wrote none
    assert again.train_set.images.equal(first.train_set.images)


def test_without_xdg_cache_home_the_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / ".cache" / "wrn" / "decoded"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG rule: relative values are ignored
    assert default_cache_dir() == tmp_path / ".cache" / "wrn" / "decoded"


def test_two_roots_with_the_same_names_never_share_an_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    roots = [make_tree(tmp_path / side / "cifar", seed=seed) for side, seed in (("a", 0), ("b", 1))]
    loaded = []
    for root in roots:
        data = tree_data(root)
        data.setup("fit")
        loaded.append(data.train_set.images)
    entries = sorted((tmp_path / "xdg" / "wrn" / "decoded").glob("*.json"))
    assert len(entries) == 2 and all(e.name.startswith("cifar-train-") for e in entries)
    assert not loaded[0].equal(loaded[1])  # each root got its own images back


def test_cache_dir_chooses_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = make_tree(tmp_path / "root")
    tree_data(root, cache_dir=str(tmp_path / "mine")).setup("fit")
    assert len(list((tmp_path / "mine").glob("*.npy"))) == 2
    assert not os.path.exists(tmp_path / "xdg")
