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


def test_face_job_names_its_validation_set_and_phases():
    from io import StringIO

    from rich.console import Console

    from orchestrator.display import Display, _result
    from orchestrator.events import Event
    lines = ["Start training: num_epochs=3 epoch_size=2 batch_size=16 num_images=42",
             "Validation metric: lfw accuracy",
             "Phase[1/2] pretrain: loss softmax, epochs 0-1, sgd optimizer, step lr 0.1",
             "Epoch[0] Time cost=1.0", "Epoch[0] Validation-accuracy=0.70",
             "Phase[2/2] train: loss triplet (batch_hardest), epochs 2-2, adam optimizer, ...",
             "Epoch[2] Time cost=1.0", "Epoch[2] Validation-accuracy=0.80"]
    out = StringIO()
    display, progress = Display(Console(file=out, force_terminal=False, width=200)), TrainingProgress()
    for line in lines:
        progress = update(progress, line) or progress
        display(Event("progress", "train", "", {"progress": progress}))
    assert progress.val_label == "lfw acc" and progress.phase.startswith("train triplet 2/2, epochs 3-3")
    text = out.getvalue()
    assert "phase pretrain softmax 1/2, epochs 1-2" in text and "epoch 1/3 lfw acc 0.700" in text
    assert text.index("phase train triplet 2/2") < text.index("epoch 3/3 lfw acc 0.800")
    info = {"metrics": {"val_accuracy": 0.8}, "selection": "lfw accuracy",
            "phases": [{"name": "pretrain", "loss": "softmax", "best": {"accuracy": 0.7, "epoch": 0}},
                       {"name": "train", "loss": "triplet", "best": {"accuracy": 0.8, "epoch": 2}}]}
    assert _result("train", info) == ("lfw accuracy 0.800, pretrain (softmax) best 0.700 @ epoch 1, "
                                      "train (triplet) best 0.800 @ epoch 3")
