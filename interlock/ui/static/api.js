// Reading the control plane's public REST API, relative to the page (so the dashboard works
// behind a path prefix too). Everything the dashboard shows comes from here.

const API = new URL("../", document.baseURI);
const TIMEOUT_MS = 5000;
// A control plane whose reads need a token (the default unless `--open-reads`): the user pastes
// one into the page once; it lives in this tab's sessionStorage and is sent as a bearer token,
// never in a URL.
const TOKEN_KEY = "interlock-token";

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

/** An API error, with the problem+json detail when the API gave one. */
export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path}: ${status}${detail ? ` ${detail}` : ""}`);
    this.status = status;
  }
}

/** GET ``path`` (relative to the API root) and decode its JSON body. */
export async function getJSON(path, params = {}) {
  const url = new URL(path, API);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, {
      headers,
      signal: abort.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      let detail = "";
      try {
        const problem = await response.json();
        detail = problem.detail || problem.title || "";
      } catch {
        detail = response.statusText;
      }
      throw new ApiError(path, response.status, detail);
    }
    return await response.json();
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(path, 0, err.name === "AbortError" ? "timed out" : "unreachable");
  } finally {
    clearTimeout(timer);
  }
}

let resourcesRoute = null;

/**
 * Whether this control plane serves ``GET /v1/resources``, from its OpenAPI document (read
 * once): asking a server that lacks the route would log a failed request in the console.
 */
async function servesResources() {
  if (resourcesRoute === null) {
    try {
      const openapi = await getJSON("openapi.json");
      resourcesRoute = Boolean(openapi.paths && openapi.paths["/v1/resources"]);
    } catch {
      return false; // ask again next time
    }
  }
  return resourcesRoute;
}

async function resources() {
  if (!(await servesResources())) return { available: false, items: [] };
  try {
    const body = await getJSON("v1/resources");
    return { available: true, items: body.items || [] };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { available: false, items: [] };
    throw err;
  }
}

async function instancesOf(service) {
  try {
    return (await getJSON(`v1/services/${encodeURIComponent(service.name)}/instances`)).items;
  } catch (err) {
    // Deleted between the two reads: it will be gone from the next list too.
    if (err instanceof ApiError && err.status === 404) return [];
    throw err;
  }
}

/**
 * One consistent-enough picture of the mesh: the graph over ``windowSeconds``, services with
 * their instances, connected proxies and the applied resources. Rejects with ApiError.
 */
export async function loadMesh(windowSeconds) {
  const [graph, services, proxies, applied] = await Promise.all([
    getJSON("v1/graph", { window: windowSeconds }),
    getJSON("v1/services"),
    getJSON("v1/proxies"),
    resources(),
  ]);
  const instances = new Map(
    await Promise.all(services.items.map(async (svc) => [svc.name, await instancesOf(svc)])),
  );
  return { graph, services: services.items, instances, proxies: proxies.items, resources: applied };
}
