"""The AWS stand-in behaves as AWS documents, for every call the workers and the driver make (run first:
see conftest.py). When it does not, this is the one failure that says which tool broke which behaviour;
the Fargate tests that stand on it are skipped with the same line (tests/standin_canary.py)."""

from __future__ import annotations

import pytest
import standin_canary

# With the Fargate tests it guards (slow: the newest and tools-newest stages). It needs moto's IAM hook, which the
# lowest stage's moto (5.0.15, the lower bound the fast suite needs) does not have yet (moto 5.1.20 has it).
pytestmark = pytest.mark.slow


def test_stand_in_behaves_as_aws_documents(moto_server):
    found = standin_canary.problems(moto_server.env)
    if found:
        pytest.fail(standin_canary.one_line(found), pytrace=False)
