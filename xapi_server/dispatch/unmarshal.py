"""Turn decoded wire values into the internal values the datamodel declares.

A value of the wrong type is FIELD_TYPE_ERROR naming the parameter (or field); an
unknown enum string is INVALID_VALUE with the name and the value.
"""
from ..datamodel.types import BadEnum, TypeMismatch
from ..errors import ApiError


def unmarshal(name: str, ptype, value):
    try:
        return ptype.unmarshal(value)
    except TypeMismatch:
        raise ApiError("FIELD_TYPE_ERROR", name) from None
    except BadEnum as exc:
        raise ApiError("INVALID_VALUE", name, exc.value) from None


def unmarshal_field(field, value):
    return unmarshal(field.name, field.type, value)
