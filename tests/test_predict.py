"""Prediction with ensembles: the mean of the members' probabilities, not of their
logits.

References used: each member's sigmoid outputs computed directly with torch (float32, so
prediction runs with precision="fp32" here; the fast path is checked in
test_precision.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarslide.engine.checkpoints import save_checkpoint
from sarslide.models import Segmenter, SiameseClassifier
from sarslide.predict import predict_chip_proba, predict_proba

torch.set_num_threads(1)


def test_predict_proba_averages_probabilities_not_logits(tmp_path, toy_data):
    x = toy_data[2]
    models = []
    for seed, bias in ((0, 3.0), (1, -1.0)):
        torch.manual_seed(seed)
        m = Segmenter().eval()
        with torch.no_grad():
            m.head[-1].bias.fill_(bias)
        models.append(m)
    with torch.no_grad():
        logits = [m(torch.from_numpy(x))[:, 0] for m in models]
    expected = torch.stack([torch.sigmoid(lg) for lg in logits]).mean(0).numpy()
    got = predict_proba(models, x, batch_size=3, precision="fp32")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        got, torch.sigmoid(torch.stack(logits).mean(0)).numpy(), atol=1e-3
    )
    paths = [save_checkpoint(m, tmp_path / f"m{i}.pt") for i, m in enumerate(models)]
    np.testing.assert_allclose(
        predict_proba(paths, x, precision="fp32"), got, rtol=1e-5, atol=1e-6
    )

    classifiers = [SiameseClassifier().eval() for _ in range(2)]
    with torch.no_grad():
        chip_expected = (
            torch.stack([torch.sigmoid(c(torch.from_numpy(x))) for c in classifiers])
            .mean(0)
            .numpy()
        )
    chip = predict_chip_proba(classifiers, x, precision="fp32")
    assert chip.shape == (len(x),) and chip.dtype == np.float32
    np.testing.assert_allclose(chip, chip_expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="task='stage2' trains a Segmenter"):
        predict_proba(classifiers, x)
