"""Fixtures of the template tests: the template as written and as translated, once a session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.iam_questions import Stack
from tests.template.stack import Resources, source_template, translated_template


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return source_template()


@pytest.fixture(scope="session")
def resources() -> Resources:
    """The translated template's resources with every parameter at its default."""
    translated: Resources = translated_template()["Resources"]
    return translated


@pytest.fixture(scope="session")
def default_stack() -> Stack:
    """The default parameters' stack with every intrinsic resolved, as a deploy resolves it."""
    return Stack({})
