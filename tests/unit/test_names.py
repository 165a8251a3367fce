import pytest

from serve.names import InvalidName, app_name, check_name, check_version, split_app_name


@pytest.mark.parametrize("good", ["digits", "v1", "v2.1", "a_b-c", "0x"])
def test_accepts_safe_names(good):
    assert check_name("model", good) == good


@pytest.mark.parametrize(
    "bad", ["", "V1", "../x", "a/b", ".hidden", "-x", "a..b", "a--b", "x" * 65, "é", "a b"]
)
def test_refuses_unsafe_names(bad):
    with pytest.raises(InvalidName):
        check_name("model", bad)


def test_router_is_a_reserved_version():
    with pytest.raises(InvalidName, match="reserved"):
        check_version("router")


def test_app_names_round_trip():
    assert app_name("digits", "v2") == "digits--v2"
    assert split_app_name("digits--v2") == ("digits", "v2")
    assert split_app_name("something-else") is None
