"""The end-to-end fixtures (a real `interlock server`), for the release tests too."""

from tests.e2e.conftest import server

__all__ = ["server"]
