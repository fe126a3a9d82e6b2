// Building the page. Text from the API is only ever set as text (a Text node or
// textContent), never parsed as HTML: a credential named "<script>" is shown as those
// characters. Attributes are set by name, and none of them from API values but ids.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  add(node, children);
  return node;
}

export function add(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function table(headers, rows, { numeric = [] } = {}) {
  const isNum = (i) => numeric.includes(i);
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { class: isNum(i) ? "num" : null }, h)))),
    el(
      "tbody",
      {},
      rows.length
        ? rows.map((row) =>
            el(
              "tr",
              row.attrs || {},
              (row.cells || row).map((c, i) => el("td", { class: isNum(i) ? "num" : null }, c)),
            ),
          )
        : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "None.")),
    ),
  );
}

export function when(text) {
  if (!text) return "";
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? String(text) : moment.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return [el("label", { for: id }, label), input];
}
