"""raystudy.analysis.images: the training images for the nearest-neighbour grid are the digits'
pixels scaled to [-1, 1], and an unavailable dataset is named, not raised.
"""

import numpy as np

from raystudy import analysis as A


def test_training_images_for_the_grid_are_the_digits():
    from sklearn.datasets import load_digits

    idx = [0, 17, 1796]
    img, why = A.train_images({"data": {"name": "digits"}}, idx)
    assert why == "" and img.shape == (3, 1, 8, 8)
    np.testing.assert_array_equal(img[:, 0], load_digits().images[idx] / 8.0 - 1.0)
    none, why = A.train_images({"data": {"name": "folder", "path": "/nonexistent"}}, idx)
    assert none is None and "unavailable" in why
