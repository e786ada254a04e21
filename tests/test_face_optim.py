"""Optimisers, lr schedules and weight-decay groups of the face job (jobs/face_recognition/
optim.py): lr values at given updates, checked against MXNet's own schedulers."""
import math

import mxnet as mx
import numpy as np
import pytest

from jobmodules import job_modules

evaluation, optim, train_args = job_modules("face_recognition", "evaluation", "optim", "train_args")


def args(*extra):
    return train_args.parse(["--data_url=d", "--train_url=o", *extra])[0]


def test_multi_step_in_updates_and_in_epochs():
    by_updates = optim.schedule(args("--lr=0.1", "--lr_steps=4,6"), 0.1, 5, 2)
    by_epochs = optim.schedule(args("--lr=0.1", "--lr_epochs=1"), 0.1, 4, 3)
    assert [round(by_updates(i), 6) for i in range(8)] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2
    assert [round(by_epochs(i), 6) for i in (0, 3, 4, 11)] == [0.1, 0.1, 0.01, 0.01]
    reference = mx.lr_scheduler.MultiFactorScheduler([4, 6], 0.1, base_lr=0.1)
    assert [by_updates(i) for i in range(8)] == pytest.approx([reference(i + 1) for i in range(8)])


@pytest.mark.parametrize("kind", ["cosine", "poly"])
def test_warmup_cosine_and_poly_match_mxnet(kind):
    a = args(f"--lr_schedule={kind}", "--warmup_steps=5", "--final_lr=0.001", "--lr_power=2")
    mine = optim.schedule(a, 0.2, 10, 3)            # 30 updates
    cls = mx.lr_scheduler.CosineScheduler if kind == "cosine" else mx.lr_scheduler.PolyScheduler
    extra = {} if kind == "cosine" else {"pwr": 2}
    reference = cls(max_update=30, base_lr=0.2, final_lr=0.001, warmup_steps=5, **extra)
    values = [mine(i) for i in range(35)]
    assert values == pytest.approx([reference(i + 1) for i in range(35)])
    assert values[0] == pytest.approx(0.2 / 5) and values[4] == pytest.approx(0.2)
    assert values[29] == pytest.approx(0.001) and values[34] == pytest.approx(0.001)
    t = 12 / 25  # update 17 of 30: 12 of the 25 decay updates done
    expected = (1 + math.cos(math.pi * t)) / 2 if kind == "cosine" else (1 - t) ** 2
    assert mine(16) == pytest.approx(0.001 + 0.199 * expected)


def test_warmup_epochs_and_pretraining_keeps_a_constant_lr():
    a = args("--warmup_epochs=1", "--lr_steps=8")
    assert [optim.schedule(a, 0.1, 4, 3)(i) for i in (0, 1, 3, 4, 8)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.1, 0.01])
    constant = optim.schedule(a, 0.05, 4, 3, main_phase=False)
    assert {constant(i) for i in range(12)} == {0.05}


@pytest.mark.parametrize("bad, message", [
    ("--optimizer=rmsprop", "--optimizer must be one of sgd, nag, adam, adamw"),
    ("--lr_schedule=exp", "--lr_schedule must be one of step, cosine, poly"),
    ("--warmup_steps=-1", "must be >= 0"),
    ("--lr=0", "--lr must be > 0"),
    ("--eval_only", "--eval_only needs --pretrained"),
])
def test_bad_values_are_named(bad, message):
    with pytest.raises(train_args.ArgError, match=message):
        args(bad)


def test_both_step_kinds_are_refused():
    with pytest.raises(train_args.ArgError, match="not both"):
        args("--lr_steps=10", "--lr_epochs=2")


def net_and_params():
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(3, in_units=2), mx.gluon.nn.BatchNorm(in_channels=3))
    net.initialize()
    return net, net.collect_params()


def test_no_weight_decay_on_batchnorm_and_bias():
    _, params = net_and_params()
    assert optim.exclude_from_decay(params) == 3   # dense bias, BN gamma and beta
    mults = {name.split("_", 1)[1]: p.wd_mult for name, p in params.items()}
    assert mults == {"weight": 1.0, "bias": 0.0, "gamma": 0.0, "beta": 0.0,
                     "running_mean": 1.0, "running_var": 1.0}


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_takes_a_step_with_the_schedule_lr(name):
    net, params = net_and_params()
    trainer = optim.trainer(params, args(f"--optimizer={name}"), 0.1, "device")
    before = net[0].weight.data().copy()
    trainer.set_learning_rate(0.05)
    with mx.autograd.record():
        loss = net(mx.nd.ones((4, 2))).sum()
    loss.backward()
    trainer.step(4)
    assert trainer.learning_rate == 0.05
    assert not (net[0].weight.data() == before).asnumpy().all()


def test_adamw_decay_is_decoupled_from_the_gradient():
    weight = mx.nd.array([1.0, -2.0])
    opt = mx.optimizer.create("adamw", learning_rate=0.1, wd=0.5)
    state = opt.create_state(0, weight)
    opt.update(0, weight, mx.nd.zeros(2), state)   # no gradient: pure decay w *= 1 - lr*wd
    assert weight.asnumpy() == pytest.approx([0.95, -1.9])
    adam, adamw = (mx.nd.array([1.0, -2.0]) for _ in range(2))
    for kind, w in (("adam", adam), ("adamw", adamw)):  # without decay both are Adam
        o = mx.optimizer.create(kind, learning_rate=0.1, wd=0.0)
        s = o.create_state(0, w)
        for _ in range(3):
            o.update(0, w, mx.nd.array([0.3, -0.1]), s)
    assert adamw.asnumpy() == pytest.approx(adam.asnumpy(), rel=1e-5)


class FakeMetrics:
    def __init__(self):
        self.bests, self.verifications = {}, []

    def add_verification(self, *args):
        self.verifications.append(args)

    def set_best(self, slot, best):
        self.bests[slot] = best


def phase_run(tmp_path, monkeypatch, across, scores):
    """Verifier over a pre-training and a final phase whose verifications score `scores`."""
    results = iter(scores)
    monkeypatch.setattr(evaluation, "verify", lambda *a: dict(
        accuracy=next(results), accuracy_std=0, val=0, val_std=0, far=0, xnorm=1, threshold=1))
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Flatten(), mx.gluon.nn.Dense(4, in_units=192))
    net.initialize()
    targets = [("lfw", np.zeros((4, 8, 8, 3), np.uint8), np.array([True, False]))]
    v = evaluation.Verifier(targets, net, mx.cpu(), 4, FakeMetrics(), str(tmp_path / "m"),
                            __import__("logging").getLogger("t"))
    for phase, epochs in (("pretrain", (0, 1)), ("train", (2, 3))):
        v.begin_phase(phase, "best" if phase == "train" or across else "pretrain-best")
        for epoch in epochs:
            v(epoch, epoch)
    return v


def test_best_is_chosen_within_the_final_phase_and_the_warning(tmp_path, monkeypatch):
    v = phase_run(tmp_path, monkeypatch, False, [0.6, 0.8, 0.7, 0.75])
    assert (v.bests["best"]["phase"], v.bests["best"]["epoch"]) == ("train", 3)
    assert v.bests["pretrain-best"]["accuracy"] == 0.8
    assert "never beat the pre-training" in v.phase_warning()
    assert (tmp_path / "m-pretrain-best-0000.params").is_file() and v.restore_best()
    across = phase_run(tmp_path, monkeypatch, True, [0.6, 0.8, 0.7, 0.75])
    assert (across.bests["best"]["phase"], across.bests["best"]["epoch"]) == ("pretrain", 1)
    assert across.phase_warning() is None
    better = phase_run(tmp_path, monkeypatch, False, [0.6, 0.8, 0.7, 0.85])
    assert better.phase_warning() is None and better.bests["best"]["epoch"] == 3
