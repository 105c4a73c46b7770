"""Loading folders in batches of one image size, in bounded memory."""

import numpy as np

from desra_jax.data.matching import batches_by_size
from tests.conftest import photo_crop

SIZES = [(64, 64), (48, 80), (64, 64), (96, 96), (48, 80), (64, 64), (32, 40), (96, 96)]


def _batches(batch_size: int, max_held_pixels: int) -> tuple[list[list[tuple]], list[int]]:
    """The batches of crops of the sizes in SIZES, and the pixels loaded but not yet handed out at each batch."""
    loaded, held = [], []

    def load(index):
        loaded.append(index)
        return (photo_crop("astronaut", SIZES[index], 3 * index, 5 * index)[0],)

    batches = []
    for batch in batches_by_size(range(len(SIZES)), batch_size, load, [], "test", max_held_pixels):
        handed = {item[0] for done in batches + [batch] for item in done}
        held.append(sum(np.prod(SIZES[i]) for i in loaded if i not in handed) + sum(np.prod(SIZES[item[0]])
                                                                                     for item in batch))
        batches.append(batch)
    return batches, held


def test_batches_hold_one_size_and_every_image_once():
    batches, _ = _batches(3, 2**30)
    assert sorted(item[0] for batch in batches for item in batch) == list(range(len(SIZES)))
    assert [[item[0] for item in batch] for batch in batches] == [[0, 2, 5], [1, 4], [3, 7], [6]]
    for batch in batches:
        assert len({item[1].shape for item in batch}) == 1
        np.testing.assert_array_equal(batch[0][1], photo_crop("astronaut", SIZES[batch[0][0]], 3 * batch[0][0],
                                                              5 * batch[0][0])[0])


def test_images_of_many_sizes_are_handed_out_before_they_pass_the_pixel_bound():
    bound = 3 * 64 * 64
    batches, held = _batches(3, bound)
    assert sorted(item[0] for batch in batches for item in batch) == list(range(len(SIZES)))
    assert max(held) <= bound + 96 * 96  # the bound, and the image just loaded
    assert len(batches) > 4  # the bound split batches that the size alone would keep together
    for batch in batches:
        assert len({item[1].shape for item in batch}) == 1
