"""Checkpoint files: a round trip keeps the model and its provenance; files that do not
fit fail clearly.

References used: the saved model's own outputs, the statistics and epoch that were
saved, torch's version, and hand-made foreign, corrupt and tampered files.
"""

from __future__ import annotations

import pytest
import torch

from sarslide.engine.checkpoints import (
    CheckpointError,
    checkpoint_info,
    load_checkpoint,
    load_checkpoints,
    load_weights,
    save_checkpoint,
)
from sarslide.models import Segmenter, SiameseClassifier

torch.set_num_threads(1)

STATS = {"mean": {"vv": -0.73, "vh": -1.32}, "std": {"vv": 0.21, "vh": 0.19}}


def test_checkpoint_round_trip_records_provenance(tmp_path, toy_data):
    torch.manual_seed(0)
    model = Segmenter(SiameseClassifier()).eval()
    path = save_checkpoint(model, tmp_path / "seg.pt", stats=STATS, extra={"epoch": 3})
    loaded = load_checkpoint(path, expected="stage2")
    assert (
        isinstance(loaded, Segmenter) and loaded.uses_embeddings and not loaded.training
    )
    x = torch.from_numpy(toy_data[2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    info = checkpoint_info(path)
    assert info["stats"] == STATS and info["epoch"] == 3
    assert info["model_config"] == {
        "stage1": {"config": "reference", "in_channels": 2, "embedding_channels": 32},
        "config": "reference",
        "width": 128,
    }
    assert info["versions"]["torch"] == str(torch.__version__)
    assert [p.name for p in tmp_path.iterdir()] == [
        "seg.pt"
    ]  # no temp file left behind


def test_loading_assigns_every_saved_tensor_and_keeps_the_frozen_stage1_frozen(
    tmp_path,
):
    # The model is rebuilt without random initialisation (meta device, then the saved
    # tensors assigned): every weight and buffer is the saved one, none is left empty,
    # and the stage-1 copy inside a segmenter stays frozen while its head stays
    # trainable.
    torch.manual_seed(1)
    model = Segmenter(SiameseClassifier())
    path = save_checkpoint(model, tmp_path / "seg.pt")
    loaded = load_checkpoint(path, expected="stage2")
    for (name, saved), (_, got) in zip(
        model.state_dict().items(), loaded.state_dict().items()
    ):
        assert torch.equal(saved, got) and not got.is_meta, name
    assert not any(p.requires_grad for p in loaded.stage1.parameters())
    assert all(p.requires_grad for p in loaded.head.parameters())


def test_checkpoint_errors(tmp_path):
    s1 = save_checkpoint(SiameseClassifier("reference"), tmp_path / "s1.pt")
    s2 = save_checkpoint(Segmenter(), tmp_path / "s2.pt")
    with pytest.raises(CheckpointError, match="holds a stage1 model .* stage2 model"):
        load_checkpoint(s1, expected="stage2")
    with pytest.raises(CheckpointError, match="config='reference'.*config='paper'"):
        load_weights(SiameseClassifier("paper"), s1)
    with pytest.raises(CheckpointError, match="stage1=None"):
        load_weights(Segmenter(SiameseClassifier()), s2)
    assert isinstance(load_weights(Segmenter(), s2), Segmenter)

    record = torch.load(s2, weights_only=True)
    record["model_config"] = {
        "stage1": {"config": "reference", "in_channels": 2, "embedding_channels": 32}
    }
    torch.save(record, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not fit Segmenter"):
        load_checkpoint(tmp_path / "tampered.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a sarslide checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a sarslide checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="no checkpoint paths"):
        load_checkpoints([])
