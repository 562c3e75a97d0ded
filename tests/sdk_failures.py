"""What a failed XenAPI call answered, for tests that expect one."""
import pytest
import XenAPI


def failure(call, *args) -> list:
    """Call `call(*args)`, which must fail, and return the error's details
    ([code, params...]); a call that succeeds fails the test."""
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return info.value.details
