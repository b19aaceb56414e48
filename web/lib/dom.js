// A small DOM builder for pages that make elements in script: h("p", {class: "alert",
// hidden: true, "data-testid": "x"}, "text", child, …). Attributes are set as given (true:
// present, false/null: left out); strings are added as text, never as HTML; empty strings,
// null and false children are skipped (so :empty still matches).

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) node.setAttribute(k, "");
    else if (v !== false && v != null) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== "" && c != null && c !== false));
  return node;
}
