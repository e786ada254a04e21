"""The when: expression language: what it accepts, what it computes, and hostile input."""

import pytest

from orchestrator.conditions import ConditionError, Scope, check, evaluate, parse

METRICS = frozenset({"val_accuracy", "train_accuracy", "val_cross_entropy"})
SCOPE = Scope({"train": METRICS}, {"gate": 0.8, "force": False, "tag": "v1"})
VALUES = {"train": {"val_accuracy": 0.91, "train_accuracy": 0.95, "val_cross_entropy": 0.3}}


@pytest.mark.parametrize("text, expected", [
    ("train.metrics.val_accuracy >= 0.9", True),
    ("train.metrics.val_accuracy >= params.gate and not params.force", True),
    ("train.metrics.val_accuracy > 0.95 or params.force", False),
    ("0.5 < train.metrics.val_accuracy < 0.95", True),                    # chained like Python
    ("0.5 < train.metrics.val_accuracy < 0.9", False),
    ("train.metrics.train_accuracy - train.metrics.val_accuracy <= 0.05", True),
    ("-(train.metrics.val_cross_entropy) * 2 > -1", True),
    ("not not (train.metrics.val_accuracy == 0.91)", True),
    ("params.tag == 'v1' and params.force == false", True),
    ("1e-3 < .5", True),
    ("true", True),
])
def test_evaluates(text, expected):
    assert evaluate(text, SCOPE, VALUES) is expected


@pytest.mark.parametrize("text, message", [
    ("train.metrics.val_acuracy >= 0.9", "step 'train' has no metric 'val_acuracy' (did you mean 'val_accuracy'?) at column 1"),
    ("trian.metrics.val_accuracy > 1", "unknown name 'trian.metrics.val_accuracy' (did you mean 'train'?)"),
    ("params.gat < 1", "unknown parameter 'gat' (did you mean 'gate'?)"),
    ("train.val_accuracy > 1", "write train.metrics.NAME"),
    ("train.metrics.val_accuracy", "a condition must be true or false"),
    ("train.metrics.val_accuracy >= 0.9 and 1", "'and' needs true/false on both sides, not a number"),
    ("params.tag > 1", "cannot compare a text with a number"),
    ("params.force < true", "cannot compare a bool with a bool using '<'"),
    ("train.metrics.val_accuracy >= ", "the condition ends too early"),
    ("(train.metrics.val_accuracy >= 0.9", "missing ')'"),
    ("train.metrics.val_accuracy >= 0.9)", "unexpected ')'"),
    ("train.metrics.val_accuracy >= 0.9 train", "missing 'and' or 'or'"),
    ("__import__('os').system('x')", "unexpected character '.' at column 17"),   # no calls, no attributes
    ("a; rm -rf /", "unexpected character ';'"),
    ("x = 1", "unexpected character '='"),
    ("", "the condition is empty"),
])
def test_rejects_with_a_clear_message(text, message):
    with pytest.raises(ConditionError) as err:
        check(text, SCOPE)
    assert message in str(err.value)


def test_hostile_input_is_refused_early():
    with pytest.raises(ConditionError, match="nested deeper than 32"):
        parse("(" * 200 + "1" + ")" * 200)
    with pytest.raises(ConditionError, match="nested deeper than 32"):
        parse("not " * 100 + "true")
    with pytest.raises(ConditionError, match="nested deeper than 32"):
        parse("-" * 100 + "1 > 0")
    with pytest.raises(ConditionError, match="at most 500"):
        parse("(" * 100000 + "1" + ")" * 100000)
    with pytest.raises(ConditionError, match="number literal too long"):
        parse("9" * 40 + " > 1")
    with pytest.raises(ConditionError, match="too large"):
        parse("1e999 > 1")
    with pytest.raises(ConditionError, match="overflows"):
        evaluate("1e300 * 1e300 > 1", SCOPE, VALUES)
    with pytest.raises(ConditionError, match="division by zero"):
        evaluate("1 / (params.gate - 0.8) > 1", SCOPE, VALUES)
    with pytest.raises(ConditionError, match="a condition must be text"):
        parse(["not", "text"])


def test_missing_values_at_run_time_name_what_exists():
    open_scope = Scope({"train": None}, {})     # custom training code: names checked when it runs
    check("train.metrics.f1 > 0.5", open_scope)
    with pytest.raises(ConditionError, match=r"produced no number for metric 'f1' \(it has: train_accuracy, "
                                             r"val_accuracy, val_cross_entropy\)"):
        evaluate("train.metrics.f1 > 0.5", open_scope, VALUES)
    with pytest.raises(ConditionError, match="step 'train' has not run"):
        evaluate("train.metrics.f1 > 0.5", open_scope, {})
