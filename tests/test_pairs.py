"""Training pairs: reproducible step-addressed batches, LR = bicubic(HR) after augmentation, multi-host slices."""


import cv2
import numpy as np
import pytest

from desra_jax.data.bundled import PHOTOGRAPH_NAMES
from desra_jax.data.degradations import bicubic_downsample
from desra_jax.data.sr_pairs import PatchSampler, augment, bundled_split, load_folder, random_crop_pair
from tests.conftest import photo_crop

HR_PATCH, SCALE = 16, 4


def _dihedral_variants(image: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and reflections of an (H, W, C) square, rotation k and then an optional mirror."""
    rotations = [np.rot90(image, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


def _training_images() -> list[tuple[str, np.ndarray]]:
    """Two small real photographs of different sizes, so the image choice and the position both matter."""
    return [
        ("astronaut", photo_crop("astronaut", (40, 48), 100, 150)[0]),
        ("coffee", photo_crop("coffee", (36, 30), 50, 200)[0]),
    ]


def _locate(patch: np.ndarray, images) -> tuple[str, int]:
    """(image name, dihedral variant index) of the window that ``patch`` was cut from; fails if none."""
    for name, image in images:
        windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)[..., 0, :, :, :]
        for k, variant in enumerate(_dihedral_variants(patch)):
            if np.any(np.all(windows == variant, axis=(-3, -2, -1))):
                return name, k
    raise AssertionError("patch is not a rotated or mirrored window of any training image")


def _sampler(**overrides) -> PatchSampler:
    arguments = dict(images=_training_images(), hr_patch=HR_PATCH, scale=SCALE, batch_size=8, seed=3)
    return PatchSampler(**(arguments | overrides))


def test_same_seed_same_batches_and_steps_are_addressable():
    sampler = _sampler()
    first_three = [sampler.batch(step) for step in range(3)]
    for step, batch in enumerate(first_three):
        again = _sampler().batch(step)
        np.testing.assert_array_equal(batch["hr"], again["hr"])
        np.testing.assert_array_equal(batch["lr"], again["lr"])
    resumed = _sampler().batch(2)
    np.testing.assert_array_equal(resumed["hr"], first_three[2]["hr"])
    assert not np.array_equal(first_three[0]["hr"], first_three[1]["hr"])
    assert not np.array_equal(_sampler(seed=4).batch(0)["hr"], first_three[0]["hr"])


def test_batches_are_float32_pairs_with_lr_the_bicubic_of_hr():
    images = _training_images()
    seen_images, seen_variants = set(), set()
    for step in range(6):
        batch = _sampler().batch(step)
        assert batch["hr"].shape == (8, HR_PATCH, HR_PATCH, 3) and batch["hr"].dtype == np.float32
        assert batch["lr"].shape == (8, HR_PATCH // SCALE, HR_PATCH // SCALE, 3) and batch["lr"].dtype == np.float32
        for hr, lr in zip(batch["hr"], batch["lr"]):
            np.testing.assert_array_equal(lr, bicubic_downsample(hr, SCALE))
            name, variant = _locate(hr, images)
            seen_images.add(name)
            seen_variants.add(variant)
    assert seen_images == {"astronaut", "coffee"}
    assert seen_variants == set(range(8))


def test_augment_reaches_all_eight_variants_evenly_and_moves_images_together():
    square = np.arange(4, dtype=np.float32).reshape(2, 2, 1)  # no symmetry: 8 distinct variants
    variants = [v.tobytes() for v in _dihedral_variants(square)]
    assert len(set(variants)) == 8
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(variants, 0)
    for _ in range(800):
        moved, moved_twice = augment([square, 2 * square], rng)
        np.testing.assert_array_equal(moved_twice, 2 * moved)
        counts[moved.tobytes()] += 1
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 expected each


def test_hosts_together_produce_the_single_host_batch():
    whole = _sampler().batch(5)
    slices = [_sampler(process_index=p, process_count=4).batch(5) for p in range(4)]
    assert slices[0]["hr"].shape[0] == 2
    for key in ("lr", "hr"):
        np.testing.assert_array_equal(np.concatenate([s[key] for s in slices]), whole[key])


def test_random_crop_pair_keeps_lr_and_hr_aligned():
    hr = photo_crop("rocket", (48, 64), 150, 300)[0]
    lr = bicubic_downsample(hr, SCALE)
    rng = np.random.default_rng(1)
    for _ in range(5):
        hr_crop, lr_crop = random_crop_pair(hr, lr, HR_PATCH, SCALE, rng)
        assert hr_crop.shape == (HR_PATCH, HR_PATCH, 3) and lr_crop.shape == (4, 4, 3)
        windows = np.lib.stride_tricks.sliding_window_view(lr, lr_crop.shape)[..., 0, :, :, :]
        (top,), (left,) = np.nonzero(np.all(windows == lr_crop, axis=(-3, -2, -1)))
        hr_top, hr_left = top * SCALE, left * SCALE
        np.testing.assert_array_equal(hr_crop, hr[hr_top : hr_top + HR_PATCH, hr_left : hr_left + HR_PATCH])
    with pytest.raises(ValueError, match="not 4 times"):
        random_crop_pair(hr, lr[:-1], HR_PATCH, SCALE, rng)


def test_bad_training_images_are_named():
    tiny = ("photos/tiny.png", np.zeros((12, 40, 3), np.float32))
    with pytest.raises(ValueError, match=r"photos/tiny.png: image of 12x40 is smaller than the HR patch 16x16"):
        _sampler(images=_training_images() + [tiny])
    with pytest.raises(ValueError, match=r"image 0: expected an \(H, W, 3\) RGB image"):
        _sampler(images=[np.zeros((32, 32), np.float32)])
    with pytest.raises(ValueError, match="not a positive multiple of process_count 3"):
        _sampler(process_count=3)


def test_load_folder_reads_every_image_and_names_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_folder(tmp_path)
    (tmp_path / "sub").mkdir()
    written = {"b.png": photo_crop("chelsea", (20, 24), 100, 100)[0], "sub/a.png": photo_crop("coffee", (18, 22))[0]}
    for relative, image in written.items():
        cv2.imwrite(str(tmp_path / relative), cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    loaded = load_folder(tmp_path)
    assert [name for name, _ in loaded] == [str(tmp_path / "b.png"), str(tmp_path / "sub/a.png")]
    for (_, image), expected in zip(loaded, written.values()):
        np.testing.assert_allclose(image, expected, atol=1e-6)


def test_bundled_split_validates_on_natural_scenes_and_trains_on_the_rest():
    train, val = bundled_split()
    assert [name for name, _ in val] == ["chelsea", "coffee"]
    assert sorted(name for name, _ in train + val) == sorted(PHOTOGRAPH_NAMES)
    for _, image in train + val:
        assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.float32


def test_explicit_lr_partners_are_cropped_aligned_and_augmented_together():
    """With lr_images (e.g. real LR inputs and their pseudo ground truth) the LR patch is the partner's window
    under the HR patch, in the same orientation - not a bicubic of the HR patch."""
    images = [(name, image[:32, :28]) for name, image in _training_images()]  # sizes divisible by the scale
    # A partner that is not bicubic(HR): another photograph, so a misaligned or re-made LR patch shows.
    partners = [photo_crop("chelsea", (8, 7), 20 + 9 * i, 30)[0] for i in range(len(images))]
    sampler = _sampler(images=images, lr_images=partners)
    batch = sampler.batch(5)
    assert batch["lr"].shape == (8, HR_PATCH // SCALE, HR_PATCH // SCALE, 3)
    np.testing.assert_array_equal(batch["lr"], sampler.batch(5)["lr"])
    for lr_patch, hr_patch in zip(batch["lr"], batch["hr"]):
        name, variant = _locate(hr_patch, images)
        partner = partners[[n for n, _ in images].index(name)]
        hr_image = dict(images)[name]
        canonical_hr = _dihedral_variants(hr_patch)[variant]
        canonical_lr = _dihedral_variants(lr_patch)[variant]
        windows = np.lib.stride_tricks.sliding_window_view(hr_image, canonical_hr.shape)[..., 0, :, :, :]
        (top,), (left,) = np.nonzero(np.all(windows == canonical_hr, axis=(-3, -2, -1)))
        assert top % SCALE == 0 and left % SCALE == 0
        size = HR_PATCH // SCALE
        np.testing.assert_array_equal(canonical_lr, partner[top // SCALE :][:size, left // SCALE :][:, :size])
    with pytest.raises(ValueError, match="coffee: LR partner of shape"):
        _sampler(images=images, lr_images=[partners[0], partners[0][:4]])
