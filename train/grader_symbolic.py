"""The grader's symbolic step: whether two normalised elements are mathematically equal (latex2sympy +
math-verify). train/rewards_math.py is the grader's face; train/grader_pool.py runs this step.

sympy has no time limit of its own, so the pool runs this file as a script in worker processes
(``python -P grader_symbolic.py --worker``, i.e. a fresh interpreter without the project on sys.path):
it imports nothing of the project, only the standard library and the math libraries.
"""

from __future__ import annotations

import cmath
import functools
import json
import logging
import os
import sys
from typing import Any


@functools.lru_cache(maxsize=4096)  # a gold is compared with every sample of its group
def _to_sympy(latex: str) -> Any:
    import sympy
    from latex2sympy2_extended import latex2sympy
    from math_verify.grader import should_treat_as_complex

    expr = latex2sympy(
        latex, is_real=not should_treat_as_complex(latex), convert_degrees=False, normalization_config=None
    )
    # Decimals become exact rationals so that math-verify's 6-digit float rounding cannot call
    # 3.464102 equal to 2\sqrt{3}: decimal answers are compared exactly, as the reference does.
    floats = expr.atoms(sympy.Float) if hasattr(expr, "atoms") else set()
    return expr.xreplace({f: sympy.Rational(str(f)) for f in floats}) if floats else expr


def _differ_at_a_point(g: Any, a: Any) -> bool:
    """True if the two expressions take clearly different values at one arbitrary point, which proves
    them unequal far more cheaply than simplify(); False means "don't know"."""
    import sympy

    symbols = sorted(g.free_symbols | a.free_symbols, key=str)
    # Positive non-integers away from 0 and 1, so sqrt/log branches and removable singularities are rare.
    point = {s: sympy.Rational(31 + 7 * i, 17 + 3 * i) for i, s in enumerate(symbols)}
    try:
        gv, av = complex(g.evalf(30, subs=point)), complex(a.evalf(30, subs=point))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return False
    if not all(map(cmath.isfinite, (gv, av))):
        return False
    return abs(gv - av) > 1e-9 * max(1.0, abs(gv), abs(av))


def symbolic_equal(gold: str, answer: str) -> bool:
    """Whether two normalised elements are mathematically equal (latex2sympy + math-verify).

    No time limit here: call it through ``grade_batch`` (worker processes) unless the input is trusted.

    >>> symbolic_equal(r"\\frac{x+1}{2}", r"x/2+1/2")
    True
    """
    import sympy
    from math_verify import verify

    try:
        g, a = _to_sympy(gold), _to_sympy(answer)
        if isinstance(g, sympy.Expr) and isinstance(a, sympy.Expr):
            # Sound shortcuts, each several times cheaper than verify()'s simplify().
            if sympy.expand(g - a) == 0:
                return True
            if _differ_at_a_point(g, a):
                return False
        return bool(verify(g, a, timeout_seconds=None, strict=True))
    except Exception:  # untrusted strings: any parser or sympy failure means "not shown equal"
        return False


def _worker_main() -> None:
    """Worker loop: one JSON request a line on stdin ([[gold, answer], ...]), one JSON bool a line out."""
    protocol = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    logging.disable(logging.WARNING)  # math-verify warns on every call made without its SIGALRM timeout
    symbolic_equal("\\frac{1}{2}", "0.5")  # warm up the parser and sympy before saying ready
    symbolic_equal("(x+1)^2", "x^2+2x+1")
    try:
        protocol.write(b'"ready"\n')
        protocol.flush()
        for line in sys.stdin.buffer:
            pairs = json.loads(line)
            ok = all(symbolic_equal(g, a) for g, a in pairs)
            protocol.write(b"true\n" if ok else b"false\n")
            protocol.flush()
    except BrokenPipeError:
        os._exit(0)  # the parent is gone: leave quietly (no flush of the dead pipe at exit)


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
