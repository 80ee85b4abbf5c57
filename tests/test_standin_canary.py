"""The AWS stand-in behaves as AWS documents, for every call the workers and the driver make (run first:
see conftest.py). When it does not, this is the one failure that says which tool broke which behaviour;
the Fargate tests that stand on it are skipped with the same line (tests/standin_canary.py)."""

from __future__ import annotations

import pytest
import standin_canary


def test_stand_in_behaves_as_aws_documents(moto_server):
    found = standin_canary.problems(moto_server.env)
    if found:
        pytest.fail(standin_canary.one_line(found), pytrace=False)
