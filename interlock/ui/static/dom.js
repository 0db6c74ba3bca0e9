// Small DOM helpers: build elements from data (text only, never HTML strings) and update a
// list of children in place, keyed, so rows and shapes persist between refreshes.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element with attributes and children. */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  setAttrs(el, attrs);
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)
    .map((c) => (typeof c === "string" || typeof c === "number" ? String(c) : c)));
  return el;
}

/** Set (or, for null/undefined/false, remove) each attribute. */
export function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) el.removeAttribute(name);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  return el;
}

/** Replace the children of ``el`` only if they would change (keeps focus and selection). */
export function setChildren(el, ...children) {
  const next = children.flat().filter((c) => c !== null && c !== undefined)
    .map((c) => (typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c));
  const same = next.length === el.childNodes.length
    && next.every((n, i) => n.isEqualNode(el.childNodes[i]));
  if (!same) el.replaceChildren(...next);
  return el;
}

/**
 * Make ``parent``'s children one per item, in order. An item's element is found by its key
 * (``data-key``) and reused, created by ``create(item)`` when new, and passed with the item to
 * ``update(el, item)`` on every call, once in place; elements whose key is gone are removed.
 */
export function syncKeyed(parent, items, key, create, update) {
  const existing = new Map();
  for (const child of parent.children) existing.set(child.dataset.key, child);
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const k = String(key(item));
    let el = existing.get(k);
    if (el === undefined) {
      el = create(item);
      el.dataset.key = k;
    }
    existing.delete(k);
    if (el !== cursor) parent.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
    update(el, item); // in the document, so it can be measured
  }
  for (const stale of existing.values()) stale.remove();
}

/** Show the "nothing here" paragraph for table ``id`` when ``count`` is zero. */
export function showEmpty(id, count) {
  const table = document.getElementById(id);
  const empty = document.querySelector(`[data-empty-for="${id}"]`);
  table.hidden = count === 0;
  if (empty) empty.hidden = count !== 0;
}
