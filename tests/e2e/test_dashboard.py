"""The web dashboard at ``/ui``, in a real headless Chromium (Debian's, driven by Playwright)
against a real `interlock server` with real sidecars carrying traffic: the page loads without a
console error, lists the services, draws the graph, and follows the mesh as a service is added.
Screenshots go to ``test-artifacts/`` at the repository root."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import Mesh
from tests.e2e.test_nack import with_bad_regex
from tests.support.inprocess import InProcessServer
from tests.support.mesh import ServerProcess, Traffic, wait_until

# The first browser test may install Chromium (APT_TIMEOUT per apt-get command) before it runs.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

CHROMIUM = Path("/usr/bin/chromium")
APT_PACKAGES = ("chromium", "fonts-dejavu-core")
APT_TIMEOUT = 240.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    # Without these Chromium calls home, and this machine's closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when it is missing (as root, bounded in time)."""
    if CHROMIUM.exists():
        return CHROMIUM
    how = f"apt-get update && apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and this test cannot install it; run as root: {how}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
    ):
        try:
            out = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"installing Chromium: `{' '.join(cmd)}` took over {APT_TIMEOUT:g}s")
        if out.returncode != 0:
            pytest.fail(
                f"installing Chromium: `{' '.join(cmd)}` exited {out.returncode}:\n"
                f"{(out.stdout + out.stderr)[-3000:]}"
            )
    if not CHROMIUM.exists():
        pytest.fail(f"`{how}` succeeded but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def chromium() -> Path:
    return ensure_chromium()


@dataclass
class Browser:
    """One page of a fresh Chromium profile, and every problem the page reported."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def watch(self) -> None:
        def console(msg: ConsoleMessage) -> None:
            if msg.type in ("error", "assert"):
                self.problems.append(f"console.{msg.type}: {msg.text} ({msg.location})")

        self.page.on("console", console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        self.page.on(
            "requestfailed",
            lambda req: self.problems.append(f"request failed: {req.url} {req.failure}"),
        )

    def refreshes(self) -> int:
        # page.evaluate goes through the DevTools protocol, which the page's CSP (no eval,
        # hence no wait_for_function) does not restrict.
        return int(
            self.page.evaluate(
                "() => Number(document.querySelector('main').dataset.refreshes || 0)"
            )
        )

    def wait_refreshes(self, count: int, timeout: float = 20.0) -> None:
        start = self.refreshes()
        wait_until(lambda: self.refreshes() >= start + count, timeout, 0.1, what="page refreshes")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browser(chromium: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A fresh profile in a temporary directory, removed with everything Chromium left there;
    the page's last state is saved as ``test-artifacts/<test>-last.png``, pass or fail."""
    with (
        tempfile.TemporaryDirectory(prefix="interlock-chromium-") as profile,
        sync_playwright() as p,
    ):
        context: BrowserContext = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(chromium),
            headless=True,
            args=list(CHROMIUM_FLAGS),
            # The API is served with the mesh's own CA, which this fresh profile does not
            # trust (a user imports <db>.ca.pem once, docs/dashboard.md); what the page does
            # is under test here, the server's certificate in tests/cli/test_tls_cli.py.
            ignore_https_errors=True,
            viewport={"width": 1400, "height": 1000},
            timeout=60_000,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(20_000)
            b = Browser(page)
            b.watch()
            yield b
            with contextlib.suppress(PlaywrightError):  # best effort: the page may be gone
                b.screenshot(f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}-last.png")
        finally:
            context.close()


def signed_in(page: Page, token: str) -> Page:
    """``page`` with the API token already in its session, as a user who pasted it once has
    (an init script runs through the DevTools protocol, outside the page's CSP)."""
    page.add_init_script(f"sessionStorage.setItem('interlock-token', {json.dumps(token)})")
    return page


def serves_resources(server: ServerProcess) -> bool:
    with server.api() as api:
        return "/v1/resources" in api.get("/openapi.json").json()["paths"]


def apply_a_route_to_nowhere(server: ServerProcess) -> None:
    """A VirtualService for a host no service answers to: stored, with a problem."""
    resource = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "ratings-route", "namespace": "default"},
        "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
    }
    with server.api() as api:
        api.post("/v1/resources", json=resource).raise_for_status()


def edge(server: ServerProcess, source: str, destination: str) -> dict[str, Any] | None:
    with server.api() as api:
        graph = api.get("/v1/graph", params={"window": 10}).json()
    return next(
        (e for e in graph["edges"] if (e["source"], e["destination"]) == (source, destination)),
        None,
    )


def translation(page: Page, selector: str) -> tuple[float, float]:
    transform = page.locator(selector).get_attribute("transform") or ""
    found = re.fullmatch(r"translate\(([\d.]+),([\d.]+)\)", transform)
    assert found, transform
    return float(found[1]), float(found[2])


@pytest.mark.parametrize("xds_protocol", ["delta"])
def test_dashboard_lists_services_draws_the_graph_and_follows_a_new_service(
    mesh: Mesh, browser: Browser
) -> None:
    server = mesh.server
    _, frontend = mesh.service("frontend", "frontend-1")
    backend_app = mesh.app("backend", "backend-1", statuses=[200] * 9 + [500])
    mesh.sidecar("backend", "backend-1", backend_app)
    out = f"http://127.0.0.1:{frontend.outbound_port}/"
    with Traffic(out, "backend", interval=0.1, max_seconds=90):
        wait_until(lambda: edge(server, "frontend.default", "backend.default"), 20, 0.25,
                   what="the frontend → backend edge in /v1/graph")  # fmt: skip
        page = browser.page
        signed_in(page, server.admin_token).goto(f"{server.api_url}/ui")
        assert page.url == f"{server.api_url}/ui/"
        browser.wait_refreshes(1)

        # The services, with their instances and health.
        for name in ("frontend", "backend"):
            row = page.locator(f"#services tbody tr[data-service='{name}']")
            row.wait_for()
            assert row.locator("td").nth(1).inner_text() == "1/1"
            assert f"{name}-1" in row.inner_text()
        assert page.locator("#services tbody tr").count() == 2

        # The graph: two healthy nodes, frontend left of backend, the edge labelled.
        node = "#graph g.node[data-id='{}.default']"
        page.locator(node.format("backend")).wait_for()
        assert "healthy" in (page.locator(node.format("frontend")).get_attribute("class") or "")
        assert (
            translation(page, node.format("frontend"))[0]
            < translation(page, node.format("backend"))[0]
        )
        drawn = page.locator(
            "#graph g.edge[data-source='frontend.default'][data-destination='backend.default']"
        )
        drawn.wait_for()
        assert (drawn.locator("path").get_attribute("d") or "").startswith("M")
        label = drawn.locator("text").text_content() or ""
        assert re.fullmatch(r"[\d.]+ rps · [\d.]+% err · p99 [\d.]+ m?s", label), label
        assert "frontend" in page.locator("#edges tbody").inner_text()

        # Each proxy's sync status, the (empty) NACK list and the resources.
        for proxy in ("frontend-1", "backend-1"):
            states = page.locator(f"#proxies tbody tr[data-key='{proxy}'] td.state")
            wait_until(
                lambda s=states: s.all_inner_texts()[:4] == ["SYNCED"] * 4,  # CDS EDS LDS RDS
                10,
                0.2,
                what=f"{proxy} SYNCED",
            )
        assert page.locator("[data-empty-for='nacks']").is_visible()
        assert page.locator("[data-empty-for='resources']").inner_text() == "No resources."
        browser.screenshot("dashboard.png")

        # A new service joins, with traffic: the same page (no reload) shows it.
        page.evaluate("() => { window.sameDocument = true; }")
        mesh.service("reviews", "reviews-1")
        with Traffic(out, "reviews", interval=0.1, max_seconds=60):
            page.locator("#services tbody tr[data-service='reviews']").wait_for()
            page.locator(node.format("reviews")).wait_for()
            page.locator(
                "#graph g.edge[data-source='frontend.default'][data-destination='reviews.default']"
            ).wait_for(timeout=30_000)
            page.locator("#proxies tbody tr[data-key='reviews-1']").wait_for()
            assert page.evaluate("() => window.sameDocument === true")
            assert page.locator("#services tbody tr").count() == 3
            if serves_resources(server):  # GET /v1/resources (the page asks only if it is served)
                apply_a_route_to_nowhere(server)
                row = page.locator("#resources tbody tr[data-name='ratings-route']")
                row.wait_for()
                assert row.locator("th").inner_text() == "VirtualService"
                assert "error:" in row.inner_text() and "ratings" in row.inner_text()
            browser.wait_refreshes(1)
            browser.screenshot("dashboard-updated.png")

    assert browser.problems == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[InProcessServer]:
    """The control plane in this process, to publish a config Envoy rejects (see test_nack)."""
    srv = InProcessServer(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def route_state(server: InProcessServer, node_id: str) -> str | None:
    with server.api() as api:
        proxies = {p["node_id"]: p for p in api.get("/v1/proxies").json()["items"]}
    proxy = proxies.get(node_id)
    if proxy is None:
        return None
    return next((t["state"] for t in proxy["types"] if t["type"] == "routes"), None)


def test_dashboard_shows_a_nack_and_then_its_fix(
    inprocess: InProcessServer, tmp_path: Path, browser: Browser
) -> None:
    mesh = Mesh(inprocess, tmp_path, "delta")  # type: ignore[arg-type]  # quacks like one
    try:
        mesh.service("a", "a-1")
        mesh.service("b", "b-1")
        wait_until(lambda: route_state(inprocess, "a-1") == "SYNCED", 10, what="a-1 synced")
        page = browser.page
        signed_in(page, inprocess.admin_token).goto(f"{inprocess.api_url}/ui/")
        browser.wait_refreshes(1)
        assert page.locator("[data-empty-for='nacks']").is_visible()

        def relabel(value: str) -> None:
            with inprocess.api() as api:
                body = api.get("/v1/services/b/instances/b-1").json()
                keep = {k: body[k] for k in ("address", "port", "locality", "healthy", "sidecar")}
                api.put("/v1/services/b/instances/b-1", json={**keep, "labels": {"try": value}})

        def set_transform(transform: object) -> None:
            assert inprocess.components is not None
            inprocess.components.reconciler.transform = transform  # type: ignore[assignment]

        inprocess.on_loop(lambda: set_transform(with_bad_regex))
        relabel("1")
        wait_until(lambda: route_state(inprocess, "a-1") == "NACKED", 10, what="a-1 NACKed")
        nack = page.locator("#nacks tbody tr[data-key^='a-1/routes/']")
        nack.wait_for()
        wait_until(lambda: "((" in nack.inner_text(), 10, 0.2, what="Envoy's message shown")
        assert nack.locator("td.state").inner_text() == "NACKED"
        rds = page.locator("#proxies tbody tr[data-key='a-1'] td.state").nth(3)
        wait_until(lambda: rds.inner_text() == "NACKED", 10, 0.2, what="RDS NACKED")
        browser.screenshot("dashboard-nack.png")

        inprocess.on_loop(lambda: set_transform(None))
        relabel("2")
        wait_until(lambda: route_state(inprocess, "a-1") == "SYNCED", 10, what="a-1 synced")
        wait_until(lambda: rds.inner_text() == "SYNCED", 10, 0.2, what="RDS SYNCED again")
        # The rejection stays listed, marked as fixed since.
        wait_until(lambda: nack.locator("td.state").inner_text() == "SYNCED", 10, 0.2)
        assert "resolved" in (nack.get_attribute("class") or "")
    finally:
        mesh.close()
    assert browser.problems == []


GRAPH = {
    "nodes": [
        {"id": "external", "kind": "external", "instances": 0, "healthy": 0},
        {"id": "a.default", "kind": "service", "instances": 2, "healthy": 2},
        {"id": "b.default", "kind": "service", "instances": 1, "healthy": 0},
        {"id": "c.shop", "kind": "service", "instances": 3, "healthy": 1},
        {"id": "idle.default", "kind": "service", "instances": 0, "healthy": 0},
        {"id": "x.default", "kind": "unregistered", "instances": 0, "healthy": 0},
    ],
    "edges": [
        {"source": s, "destination": d, "rps": rps, "error_rate": err, "p99_ms": p99}
        for s, d, rps, err, p99 in [
            ("external", "a.default", 12.5, 0.0, 20.0),
            ("a.default", "b.default", 30.0, 0.01, 50.0),
            ("b.default", "c.shop", 4.2, 0.25, 1500.0),
            ("c.shop", "a.default", 0.5, 0.0, 5.0),  # a cycle
            ("a.default", "a.default", 1.0, 0.0, 2.0),  # a self-call
            ("b.default", "x.default", 0.1, 1.0, None),
        ]
    ],
}


def test_graph_layout_is_layered_left_to_right_and_deterministic(
    server: ServerProcess, browser: Browser
) -> None:
    """The layout module, run in the browser on a graph with a cycle, a self-call, an idle
    service and an unregistered callee: callers left, the same picture for any input order."""
    signed_in(browser.page, server.admin_token).goto(f"{server.api_url}/ui/")
    browser.wait_refreshes(1)
    run_layout = """async (graph) => {
        const { layout } = await import(new URL("graph.js", document.baseURI).href);
        const plan = layout(graph);
        return {
            size: [plan.width, plan.height],
            nodes: Object.fromEntries(plan.nodes.map((n) => [n.id, [n.layer, n.x, n.y]])),
            edges: Object.fromEntries(
                plan.edges.map((e) => [`${e.source}>${e.destination}`, e.kind])),
        };
    }"""
    plan = browser.page.evaluate(run_layout, GRAPH)
    layer = {node: placed[0] for node, placed in plan["nodes"].items()}
    assert layer == {
        "external": 0,
        "idle.default": 0,
        "a.default": 1,
        "b.default": 2,
        "c.shop": 3,
        "x.default": 3,
    }
    assert plan["edges"]["c.shop>a.default"] == "back"
    assert plan["edges"]["a.default>a.default"] == "self"
    assert plan["edges"]["external>a.default"] == "forward"
    positions = {tuple(p[1:]) for p in plan["nodes"].values()}
    assert len(positions) == len(plan["nodes"])  # no two nodes on the same spot

    shuffled = random.Random(7)
    for _ in range(3):
        nodes, edges = list(GRAPH["nodes"]), list(GRAPH["edges"])
        shuffled.shuffle(nodes)
        shuffled.shuffle(edges)
        again = browser.page.evaluate(run_layout, {"nodes": nodes, "edges": edges})
        assert again == plan

    # The same graph drawn beside the live one, as a picture to look at.
    browser.page.evaluate(
        """async (graph) => {
            const { drawGraph } = await import(new URL("graph.js", document.baseURI).href);
            const svg = document.getElementById("graph").cloneNode(true);
            svg.id = "layout-check";
            document.querySelector("main").prepend(svg);
            drawGraph(svg, graph);
        }""",
        GRAPH,
    )
    picture = browser.page.locator("#layout-check")
    assert picture.locator("g.node").count() == 6 and picture.locator("g.edge").count() == 6
    assert picture.locator("g.edge.bad").count() == 2  # 25 % and 100 % errors
    ARTIFACTS.mkdir(exist_ok=True)
    picture.screenshot(path=str(ARTIFACTS / "dashboard-layout.png"))
    assert browser.problems == []


def test_ui_serves_only_its_own_assets_with_a_strict_policy(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.api_url, timeout=5, verify=server.tls()) as http:
        redirect = http.get("/ui")
        assert redirect.status_code == 308 and redirect.headers["location"] == "ui/"
        page = http.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert "http" not in policy  # nothing from another origin
        for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            got = http.get(f"/ui/{asset}")
            assert got.status_code == 200, asset
        assert http.get("/ui/main.js").headers["content-type"].startswith("text/javascript")
        assert http.head("/ui/style.css").status_code == 200
        for bad in ("/ui/nope.js", "/ui/..%2Fpyproject.toml", "/ui/__init__.py"):
            missing = http.get(bad)
            assert missing.status_code == 404, bad
            assert missing.headers["content-type"] == "application/problem+json"
        # Every module the page loads is served, and none reaches for another origin.
        for module in ("main.js", "api.js", "dom.js", "format.js", "graph.js", "tables.js"):
            text = http.get(f"/ui/{module}").text
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text
        assert "/ui" not in http.get("/openapi.json").json()["paths"]


def test_dashboard_asks_for_a_token_when_reads_are_closed(
    server: ServerProcess, browser: Browser
) -> None:
    """Reads need a token unless the server runs with --open-reads: the page says so, offers a
    password field, and shows the mesh once the token is given (kept in the tab's session,
    never in a URL)."""
    with server.api() as api:
        api.put("/v1/services/shop", json={"port": 8080}).raise_for_status()
    page = browser.page
    page.goto(f"{server.api_url}/ui/")
    form = page.locator("#token-form")
    wait_until(form.is_visible, 10, 0.1, what="the token form")
    assert "needs a token" in page.locator("#connection").inner_text()
    assert browser.problems and all(" 401 " in p or "401" in p for p in browser.problems)
    browser.problems.clear()

    page.fill("#token", "ila_not-the-token")
    page.click("#token-form button")
    wait_until(form.is_visible, 10, 0.1, what="the form again after a wrong token")
    browser.problems.clear()

    page.fill("#token", server.admin_token)
    page.click("#token-form button")
    wait_until(lambda: not form.is_visible(), 10, 0.1, what="the form to go away")
    browser.wait_refreshes(1)
    assert "shop" in page.locator("#services").inner_text()
    browser.problems.clear()  # (a request of the wrong-token round may answer late)
    browser.wait_refreshes(2)
    assert browser.problems == []
    assert "token" not in page.url
