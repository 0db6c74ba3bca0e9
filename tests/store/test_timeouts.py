"""Every wait on the database is bounded: a PostgreSQL that stops answering (a proxy in front
of it stops forwarding; nothing is closed, the kernel still acknowledges) is Unavailable within
about twice the store's timeout, on a pooled connection and on a new one; the store works again
as soon as it answers, and the change feed hears writes made after it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.engine import make_url

from interlock.model import Service
from interlock.model.errors import Unavailable
from interlock.store import Store
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


def test_a_paused_postgresql_is_unavailable_in_bounded_time(pg_url: str) -> None:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        through = url.set(port=proxy.port).render_as_string(hide_password=False)
        with Store.open(through, timeout=0.5) as store:
            heard = threading.Event()
            store.subscribe(lambda revision: heard.set())
            assert store.revision() == 0
            with proxy.paused():
                for _ in range(2):  # the pooled connection's round trip, then a new connection
                    started = time.monotonic()
                    with pytest.raises(Unavailable):
                        store.revision()
                    took = time.monotonic() - started
                    assert took < 4.5, took  # (0.5 + 1) s on the pooled one, 2 s to connect
                with pytest.raises(Unavailable):
                    store.put_service(Service("b", port=8080))
            assert store.revision() == 0  # the failed write changed nothing
            assert store.put_service(Service("b", port=8080)).revision == 1
            assert heard.wait(5)  # the feed's connection was kept through the pause
            assert store.feed_problem() is None
    finally:
        proxy.close()
