// The dashboard: read the mesh from the API every two seconds and update the page in place.
// ``?window=SECONDS`` changes the graph's window (default 60, as `interlock top`).

import { ApiError, hasToken, loadMesh, setToken } from "./api.js";
import { setChildren } from "./dom.js";
import { clock, seconds } from "./format.js";
import { drawGraph } from "./graph.js";
import { renderEdges, renderNacks, renderProxies, renderResources, renderServices } from "./tables.js";

const INTERVAL_MS = 2000;
const requested = Number(new URLSearchParams(window.location.search).get("window"));
const WINDOW = requested > 0 && requested <= 3600 ? requested : 60;

const main = document.querySelector("main");
const connection = document.getElementById("connection");
let refreshes = 0;

function render(mesh) {
  drawGraph(document.getElementById("graph"), mesh.graph);
  renderEdges(mesh.graph);
  renderServices(mesh.services, mesh.instances, mesh.graph);
  renderProxies(mesh.proxies);
  renderNacks(mesh.proxies);
  renderResources(mesh.resources);
  setChildren(document.getElementById("revision"), String(mesh.graph.revision));
  const updated = document.getElementById("updated");
  updated.dateTime = mesh.graph.generated_at;
  setChildren(updated, clock(mesh.graph.generated_at));
}

function setConnection(problem) {
  // Only a change is written, so a screen reader hears about an outage once, not every poll.
  const text = problem ? `cannot read the control plane: ${problem}` : "live";
  if (connection.textContent !== text) connection.textContent = text;
  connection.classList.toggle("down", Boolean(problem));
}

const tokenForm = document.getElementById("token-form");

function askForToken(ask) {
  tokenForm.hidden = !ask;
  if (ask) document.getElementById("token").focus();
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  setToken(input.value.trim());
  input.value = "";
  askForToken(false);
  refresh();
});

async function refresh() {
  try {
    render(await loadMesh(WINDOW));
    setConnection(null);
    askForToken(false);
  } catch (err) {
    const denied = err instanceof ApiError && (err.status === 401 || err.status === 403);
    if (denied && hasToken()) setToken(""); // a wrong or revoked token: ask again
    askForToken(denied);
    setConnection(denied ? "this control plane needs a token to read" : err.message);
  }
  refreshes += 1;
  main.dataset.refreshes = String(refreshes);
}

async function poll() {
  if (!document.hidden) await refresh();
  setTimeout(poll, INTERVAL_MS);
}

for (const el of document.querySelectorAll("[data-window]")) el.textContent = seconds(WINDOW);
setChildren(document.getElementById("window"), seconds(WINDOW));
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
poll();
