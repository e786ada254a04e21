"""Training progress parsed from MXNet log lines."""

from orchestrator.progress import TrainingProgress, update


def feed(lines):
    progress = TrainingProgress()
    for line in lines:
        progress = update(progress, line) or progress
    return progress


def test_start_batches_epochs_and_metrics():
    p = feed([
        "INFO:root:Start training: num_epochs=8 epoch_size=12 batch_size=32 num_examples=360",
        "INFO:root:Epoch[0] Batch [0-5]\tSpeed: 101.50 samples/sec\taccuracy=0.250000",
        "INFO:root:Epoch[0] Batch [5-10]\tSpeed: 120.00 samples/sec\taccuracy=0.500000",
    ])
    assert (p.num_epochs, p.epoch_size, p.epochs_done, p.batch, p.speed) == (8, 12, 0, 10, 120.0)
    assert p.metrics["Train-accuracy"] == 0.5
    p2 = feed(["Epoch[0] Train-accuracy=0.61", "Epoch[0] Time cost=3.2", "Epoch[0] Validation-accuracy=0.75",
               "Epoch[0] Validation-cross-entropy=0.9"])
    assert (p2.epochs_done, p2.validated, p2.batch) == (1, 1, 0)
    assert p2.metrics["Validation-accuracy"] == 0.75 and p2.metrics["Validation-cross-entropy"] == 0.9


def test_unrelated_lines_change_nothing():
    assert update(TrainingProgress(), "loading data from /tmp") is None
