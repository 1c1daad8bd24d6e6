import pytest

from rewind.step import Step, parse_steps


@pytest.mark.parametrize("text,ep,it", [("500it", 0, 500), ("2ep", 2, 0), ("1ep100it", 1, 100), ("0it", 0, 0), ("42", 0, 42)])
def test_parse(text, ep, it):
    s = Step.parse(text)
    assert (s.ep, s.it) == (ep, it)
    assert Step.parse(str(s)) == s


def test_iterations_use_the_epoch_length():
    assert Step.parse("1ep100it").iterations(391) == 491
    assert Step.parse("2ep").iterations(40) == 80


@pytest.mark.parametrize("bad", ["", "it", "ep", "5", "-3it", "3xx", "1it2ep", 1.5, None])
def test_bad_steps_are_refused(bad):
    if bad == "5":
        assert Step.parse(bad) == Step(0, 5)
        return
    with pytest.raises(ValueError):
        Step.parse(bad)


def test_step_lists():
    assert parse_steps("0it,100it,2ep") == (Step(0, 0), Step(0, 100), Step(2, 0))
    assert parse_steps(["1ep", 7]) == (Step(1, 0), Step(0, 7))
