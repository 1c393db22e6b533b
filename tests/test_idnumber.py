"""GB 11643-1999 check digits, dates and the number formats second-generation readers return."""

import pytest

from appliance import idnumber


@pytest.mark.parametrize("number", [
    "11010519491231002X",  # the standard's own example
    "11010519491231002x",  # lower-case x from a keyboard
    "110105 19491231 002X",  # typed with spaces
    "810000199408230021",  # Hong Kong residence permit prefix, same check
    "CHN110101990101",  # 2017 foreigner permanent residence card: format only
])
def test_valid(number):
    assert idnumber.is_valid(number)
    assert idnumber.validate(number) == idnumber.normalise(number)


@pytest.mark.parametrize("number,reason", [
    ("110105194912310021", "check_digit"),
    ("11010519491331002X", "birth_date"),
    ("110105490101002", "old_15_digit"),
    ("1101051949123100", "length"),
    ("11010519491231002A", "characters"),
    ("１１０１０５１９４９１２３１００２Ｘ", "characters"),  # full-width digits are not silently accepted
])
def test_invalid_with_reason(number, reason):
    with pytest.raises(idnumber.InvalidIdNumber) as exc:
        idnumber.validate(number)
    assert exc.value.reason == reason


def test_make_completes_a_valid_number():
    assert idnumber.make("11010519491231002") == "11010519491231002X"
    for body in ("44030520050102001", "31010420040229123"):
        assert idnumber.is_valid(idnumber.make(body))
