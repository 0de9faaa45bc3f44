"""Heatmap targets, decoding and flip-back; the crop geometry they rely on."""
import numpy as np
import torch

from pipeline_lib.tasks.pose.heatmaps import decode, flip_back, gaussian_targets
from pipeline_lib.tasks.pose.transforms import apply_affine, box_to_crop, crop_affine, invert_affine

PAIRS = [[1, 2], [3, 4]]


def test_planted_peaks_decode_within_a_quarter_pixel():
    rng = np.random.default_rng(0)
    joints = torch.from_numpy(rng.uniform(1.0, 23.0, (64, 5, 2)))  # sub-pixel positions on (32, 24) maps
    maps, weight = gaussian_targets(joints, torch.full((64, 5), 2.0), (32, 24), sigma=2.0)
    assert maps.shape == (64, 5, 32, 24) and torch.all(weight == 1)
    coords, maxvals = decode(maps.numpy())
    assert np.abs(coords - joints.numpy()).max() <= 0.25 + 1e-9
    assert np.all(maxvals > 0.88)  # the peak is within half a pixel of a pixel centre: exp(-0.5**2 / 8) at worst


def test_unlabelled_and_far_off_keypoints_have_no_target_or_weight():
    # the last pixel centre is at x = 23.5: 29.0 is within 3 sigma of it, 30.0 is not
    joints = torch.tensor([[[5.0, 5.0], [5.0, 5.0], [-10.0, 5.0], [29.0, 5.0], [30.0, 5.0]]])
    maps, weight = gaussian_targets(joints, torch.tensor([[2.0, 0.0, 1.0, 2.0, 2.0]]), (32, 24), sigma=2.0)
    assert weight.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]
    assert maps[0, 1].abs().max() == 0 and maps[0, 2].abs().max() == 0


def test_flip_back_of_the_mirrored_crops_targets_is_the_original_target():
    """Render the targets of a crop and of its mirror (keypoints flipped x -> W - x, pairs swapped):
    flipping the mirror's maps back gives the original maps exactly, with no pixel shift."""
    rng = np.random.default_rng(1)
    joints = torch.from_numpy(rng.uniform(2.0, 22.0, (3, 5, 2)))
    visible = torch.full((3, 5), 2.0)
    mirrored = joints.clone()
    mirrored[..., 0] = 24 - joints[..., 0]
    mirrored = mirrored[:, [0, 2, 1, 4, 3]]
    original, _ = gaussian_targets(joints, visible, (32, 24))
    flipped, _ = gaussian_targets(mirrored, visible, (32, 24))
    assert torch.allclose(flip_back(flipped, PAIRS), original, atol=1e-6)
    # and the model-side view: a flip-equivariant "model" gives the same maps for the mirror test
    assert torch.allclose(flip_back(original.flip(3)[:, [0, 2, 1, 4, 3]], PAIRS), original)


def test_crop_affine_maps_box_into_the_crop_and_inverts_exactly():
    center, size = box_to_crop([10, 20, 30, 90], aspect=96 / 128)
    assert np.allclose(center, [25, 65]) and np.allclose(size, [90 * 0.75 * 1.25, 90 * 1.25])
    A = crop_affine(center, size, (128, 96))
    assert np.allclose(apply_affine(A, center[None]), [[48, 64]])
    assert np.allclose(apply_affine(A, np.array([[25.0, 20.0], [25.0, 110.0]])), [[48, 64 - 51.2], [48, 64 + 51.2]])
    for rotation, flip in ((30.0, False), (-45.0, True)):
        A = crop_affine(center, size, (128, 96), rotation, flip)
        pts = np.array([[12.0, 30.0], [40.0, 100.0]])
        assert np.allclose(apply_affine(invert_affine(A), apply_affine(A, pts)), pts)
    flipped = crop_affine(center, size, (128, 96), flip=True)
    plain = crop_affine(center, size, (128, 96))
    assert np.allclose(apply_affine(flipped, pts)[:, 0], 96 - apply_affine(plain, pts)[:, 0])
