"""The page's one script: sorting, filtering and the lazily drawn host details of the host table.

It is a constant, never built from data: the page's Content-Security-Policy allows exactly this text by
its sha256, so no other script (a host value that slipped through) could run. Host values reach it only
as the JSON data block, parsed with JSON.parse and put on the page as text (`textContent`), never as
markup. An opened host's detail is a full-width row under it (class "detail"). The page's state lives
in the URL fragment (`#status=changed&filter=gpu1&sort=driver&dir=desc&group=g2&open=gpu17`), so a
filtered view can be bookmarked or sent. When it has run, the host table
carries `data-ready="yes"`, `data-ready-ms` (milliseconds since navigation started) and `data-shown` (the
rows shown), which the tests read from the DOM.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("hosts");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var data = JSON.parse(document.getElementById("host-data").textContent);
  var textBox = document.getElementById("filter-text");
  var statusBox = document.getElementById("filter-status");
  var groupBox = document.getElementById("filter-group");
  var shown = document.getElementById("shown");
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  var words = rows.map(function (r) { return r.textContent.toLowerCase(); });
  var byHost = {};
  rows.forEach(function (r) { byHost[data[+r.getAttribute("data-i")].host] = r; });
  var sorted = null;

  function params() { return new URLSearchParams(location.hash.replace(/^#/, "")); }

  function go(p) {
    var next = p.toString();
    if (next !== location.hash.replace(/^#/, "")) { location.replace("#" + next); }
  }

  function setParam(name, value) {
    var p = params();
    if (value) { p.set(name, value); } else { p.delete(name); }
    p.delete("open");
    go(p);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // A host's detail is a full-width row under it, built from the data block the first time it is opened.
  var detailRows = {};

  function detailRow(row) {
    var i = row.getAttribute("data-i");
    if (detailRows[i]) { return detailRows[i]; }
    var h = data[+i];
    var tr = el("tr", "detail");
    var td = el("td");
    td.colSpan = heads.length;
    tr.appendChild(td);
    if (h.target) { td.appendChild(el("p", "", "target: " + h.target)); }
    if (h.checked) { td.appendChild(el("p", "", "checked: " + h.checked)); }
    if (h.error) { td.appendChild(el("p", "err", h.error)); }
    h.items.forEach(function (it) {
      var d = el("details", "item " + it[1]);
      d.appendChild(el("summary", "", it[0] + ": " + it[2]));
      if (it[3].length) {
        var dl = el("dl");
        it[3].forEach(function (kv) { dl.appendChild(el("dt", "", kv[0])); dl.appendChild(el("dd", "", kv[1])); });
        d.appendChild(dl);
      }
      td.appendChild(d);
    });
    if (h.fix.length) {
      td.appendChild(el("p", "fixhead", h.fixsrc === "plan" ? "fix (the current plan):" : "fix (diagnosis hints):"));
      var ul = el("ul", "fix");
      h.fix.forEach(function (line) { ul.appendChild(el("li", "", line)); });
      td.appendChild(ul);
    }
    detailRows[i] = tr;
    return tr;
  }

  function showDetail(row, open) {
    var tr = open ? detailRow(row) : detailRows[row.getAttribute("data-i")];
    if (!tr) { return; }
    if (open) { row.parentNode.insertBefore(tr, row.nextSibling); } else if (tr.parentNode) { tr.remove(); }
  }

  function openRows() {
    return rows.filter(function (r) { return r.querySelector("details.host").open; });
  }

  function sortRows(p) {
    var key = p.get("sort") || "";
    var desc = p.get("dir") === "desc";
    var was = sorted;
    if (sorted === key + "/" + desc) { return; }
    sorted = key + "/" + desc;
    var col = -1;
    heads.forEach(function (th, i) {
      var on = key !== "" && th.getAttribute("data-key") === key;
      if (on) { col = i; }
      var how = on ? (desc ? "descending" : "ascending") : "none";
      if (th.getAttribute("data-key")) { th.setAttribute("aria-sort", how); }
    });
    // The page comes in host order: moving 10,000 rows to where they already are costs a relayout.
    if (col < 0 && (was === null || was.charAt(0) === "/")) { return; }
    var order = rows.map(function (r, i) { return i; });
    if (col >= 0) {
      var keys = rows.map(function (r) { var c = r.cells[col]; return c.getAttribute("data-sort") || c.textContent; });
      order.sort(function (a, b) { var c = collator.compare(keys[a], keys[b]); return (desc ? -c : c) || a - b; });
    }
    var frag = document.createDocumentFragment();
    order.forEach(function (i) { frag.appendChild(rows[i]); });
    body.appendChild(frag);
    openRows().forEach(function (r) { showDetail(r, true); });
  }

  function filterRows(p) {
    var text = p.get("filter") || "";
    var q = text.toLowerCase();
    var st = p.get("status") || "";
    var g = p.get("group") || "";
    var n = 0;
    rows.forEach(function (r, i) {
      var ok = (!q || words[i].indexOf(q) !== -1) && (!st || r.getAttribute("data-status") === st) &&
        (!g || r.getAttribute("data-group") === g);
      if (r.hidden === ok) {
        r.hidden = !ok;
        var tr = detailRows[r.getAttribute("data-i")];
        if (tr) { tr.hidden = !ok; }
      }
      if (ok) { n += 1; }
    });
    if (textBox.value !== text) { textBox.value = text; }
    statusBox.value = st;
    groupBox.value = g;
    shown.textContent = n + " of " + rows.length + " hosts shown";
    table.setAttribute("data-shown", String(n));
  }

  function openHost(p) {
    var r = p.get("open") ? byHost[p.get("open")] : null;
    if (!r) { return; }
    var d = r.querySelector("details.host");
    d.open = true;
    r.hidden = false;
    showDetail(r, true);
    detailRows[r.getAttribute("data-i")].hidden = false;
    r.scrollIntoView({block: "center"});
  }

  function render() {
    var p = params();
    sortRows(p);
    filterRows(p);
    openHost(p);
  }

  body.addEventListener("toggle", function (ev) {
    var t = ev.target;
    if (t.classList && t.classList.contains("host")) { showDetail(t.closest("tr"), t.open); }
  }, true);
  textBox.addEventListener("input", function () { setParam("filter", textBox.value); });
  statusBox.addEventListener("change", function () { setParam("status", statusBox.value); });
  groupBox.addEventListener("change", function () { setParam("group", groupBox.value); });
  heads.forEach(function (th) {
    var b = th.querySelector("button");
    if (!b) { return; }
    b.addEventListener("click", function () {
      var p = params();
      var again = p.get("sort") === th.getAttribute("data-key") && p.get("dir") !== "desc";
      p.set("sort", th.getAttribute("data-key"));
      if (again) { p.set("dir", "desc"); } else { p.delete("dir"); }
      go(p);
    });
  });
  window.addEventListener("hashchange", render);
  document.getElementById("controls").hidden = false;
  render();
  table.setAttribute("data-ready", "yes");
  // How long after navigation started the page was usable: parsed, sorted, filtered (the scale test prints it).
  table.setAttribute("data-ready-ms", String(Math.round(performance.now())));
}());
"""
