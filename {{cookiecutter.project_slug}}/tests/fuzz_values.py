"""Hypothesis strategies shared by the fuzz tests: JSON a hostile client might send."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

# Values with no valid JSON form: `json.dumps` writes them (`Infinity`, `"\\ud800"`),
# and the server must refuse them rather than fan them out.
hostile_scalars = st.sampled_from([float("inf"), float("-inf"), float("nan")]) | st.text(
    alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=2
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | hostile_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Resume ids built to trip a parser: non-ASCII digits, more digits than `int()` reads.
hostile_ids = st.builds(
    "{}-{}".format,
    st.text(alphabet="0123456789\u00b2\u0663", max_size=5) | st.just("1" * 5000),
    st.text(alphabet="0123456789\u00b2\u0663", max_size=5) | st.just("9" * 5000),
)


def strict_json(text: str) -> Any:
    """`text` parsed as the protocol reads JSON: no non-finite numbers, no lone surrogates."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    def finite(number: str) -> float:
        if not math.isfinite(float(number)):
            raise ValueError(number)
        return float(number)

    value = json.loads(text, parse_constant=refuse, parse_float=finite)
    json.dumps(value, ensure_ascii=False).encode()  # UnicodeEncodeError on a lone surrogate
    return value
