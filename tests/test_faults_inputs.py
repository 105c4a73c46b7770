"""Bad inputs through the readers: the corpus of tests/bad_inputs.py through ``read_image``, symbolic links
through ``list_images``, and a checkpoint that would run a shell command through ``read_state_dict``."""

import os

import numpy as np
import pytest

from desra_jax.data.image_io import list_images, read_image
from tests.bad_inputs import CASES, GOOD, JPEG_TOLERANCE, PAIR_CASES, SIZE, case_file, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root)


@pytest.mark.parametrize("alpha", ["error", "drop"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_is_read_or_named_as_the_table_says(corpus, name, alpha):
    case = CASES[name]
    path = corpus[1][name][0]
    error = case.read_error if alpha == "error" else case.read_error_drop_alpha
    if error is not None:
        with pytest.raises(ValueError) as raised:
            read_image(path, alpha=alpha)
        assert str(raised.value).startswith(f"{path}: {error}")
        return
    image = read_image(path, alpha=alpha)
    expected = case_file(name)[1]
    assert image.dtype == np.float32 and image.shape == (*case.shape, 3) == expected.shape
    tolerance = JPEG_TOLERANCE if case.file.endswith(".jpg") else 1e-7
    np.testing.assert_allclose(image, expected, rtol=0, atol=tolerance)
    if "gray" not in name:  # the channels differ, so a BGR/RGB swap would be noticed
        assert np.abs(expected - expected[..., ::-1]).max() > 0.01
    if case.file.endswith(".jpg"):  # a photograph, not a flat patch that any decoder gets within the tolerance
        assert np.ptp(expected) > 10 * JPEG_TOLERANCE


def test_the_corpus_pairs_each_case_with_a_good_partner(corpus):
    root, written = corpus
    assert sorted(written) == sorted([*GOOD, *CASES, *PAIR_CASES])
    assert sorted(list_images(root / "a")) == sorted(
        [*GOOD, *(c.file for c in CASES.values()), "sizes_differ.png", "only_on_a.png"])
    for name, (a, b) in written.items():
        if b is not None and name != "sizes_differ":
            assert read_image(b).shape == ((*CASES[name].shape, 3) if name in CASES and CASES[name].shape
                                           else (SIZE, SIZE, 3))
    assert read_image(written["sizes_differ"][1]).shape == (SIZE, SIZE + 8, 3)
    np.testing.assert_array_equal(read_image(written["good_1.png"][0]), read_image(written["good_1.png"][1]))


@pytest.fixture
def linked(tmp_path):
    """data/ with an image, a symlinked folder of images outside it, and a symlinked image file."""
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    for name in ("x.png", "deep/y.png"):
        (outside / name).write_bytes(b"")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"")
    (data / "linked").symlink_to(outside, target_is_directory=True)
    (data / "b.png").symlink_to(outside / "x.png")
    return data


def test_symlinked_folders_are_followed_and_listed_by_the_links_name(linked):
    assert list_images(linked) == ["a.png", "b.png", "linked/deep/y.png", "linked/x.png"]
    assert list_images(linked, recursive=False) == ["a.png", "b.png"]


def test_a_link_to_a_containing_folder_is_named_as_a_loop(linked):
    (linked / "linked" / "deep" / "back").symlink_to(linked, target_is_directory=True)
    with pytest.raises(ValueError, match=r"linked/deep/back: a symbolic link to .*/data, a folder that contains "
                                         r"it \(a loop\)"):
        list_images(linked)


def test_broken_links_are_named(linked):
    (linked / "gone.png").symlink_to(linked / "nowhere.png")
    assert "gone.png" in list_images(linked)
    with pytest.raises(ValueError, match=r"gone\.png: a broken symbolic link \(to .*nowhere\.png\)"):
        read_image(linked / "gone.png")
    (linked / "photos").symlink_to(linked.parent / "unmounted", target_is_directory=True)
    with pytest.raises(ValueError, match=r"data/photos: a broken symbolic link \(to .*unmounted\)"):
        list_images(linked)


class _RunsAShellCommand:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_a_checkpoint_that_would_run_code_is_refused_naming_what_it_holds(tmp_path, capfd):
    torch = pytest.importorskip("torch")
    from desra_jax.convert import ConversionError
    from desra_jax.convert.torch_state import read_state_dict

    path = tmp_path / "net_g.pth"
    torch.save({"params_ema": {"conv.weight": torch.zeros(2, 3, 3, 3)}, "hook": _RunsAShellCommand()}, path)

    with pytest.raises(ConversionError) as raised:
        read_state_dict(path)

    message = str(raised.value)
    system = f"{os.system.__module__}.system"  # posix.system on Linux: what the pickle names
    assert message.startswith(f"{path}: refused to load: it contains Python objects other than tensors")
    assert system in message and "weights_only" not in message
    assert "pwned" not in capfd.readouterr().out  # the command never ran
