// The per-image table of a segdeploy report: sort by any column, filter by name, one page of rows
// in the DOM at a time (a 10 000-image run stays fast). Data: window.REPORT_DATA from data.js.
// State lives in the URL hash (#sort=KEY&dir=asc|desc&page=N&q=TEXT), so a view can be linked.
(function () {
  "use strict";
  var D = window.REPORT_DATA;
  var PAGE = D.page_size || 100;
  var state = {sort: D.default_sort || "image", dir: D.default_dir || "asc", page: 1, q: ""};
  var order = null;  // row indices after filter + sort, recomputed when those change

  function readHash() {
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("=");
      if (p.length === 2 && p[0] in state) {
        state[p[0]] = p[0] === "page" ? Math.max(1, parseInt(p[1], 10) || 1) : decodeURIComponent(p[1]);
      }
    });
  }

  function writeHash() {
    var h = "#sort=" + encodeURIComponent(state.sort) + "&dir=" + state.dir + "&page=" + state.page +
      (state.q ? "&q=" + encodeURIComponent(state.q) : "");
    if (location.hash !== h) { history.replaceState(null, "", h); }
  }

  function column(key) {
    for (var c = 0; c < D.columns.length; c++) { if (D.columns[c].key === key) { return c; } }
    return 0;
  }

  function compute() {
    var c = column(state.sort), sign = state.dir === "desc" ? -1 : 1, q = state.q.toLowerCase();
    var idx = [];
    for (var i = 0; i < D.rows.length; i++) {
      if (!q || String(D.rows[i][0]).toLowerCase().indexOf(q) >= 0) { idx.push(i); }
    }
    idx.sort(function (a, b) {
      var x = D.rows[a][c], y = D.rows[b][c];
      if (x === null || y === null) { return x === y ? a - b : (x === null ? 1 : -1); }  // blanks last
      if (x < y) { return -sign; }
      if (x > y) { return sign; }
      return a - b;
    });
    order = idx;
  }

  function fmt(v, type) {
    if (v === null || v === undefined) { return "–"; }
    if (type === "num") { return v.toFixed(4); }
    if (type === "delta") { return (v > 0 ? "+" : "") + v.toFixed(4); }
    if (type === "pct") { return (100 * v).toFixed(2) + " %"; }
    return String(v);
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }

  function picture(tr, src, alt) {
    var td = document.createElement("td");
    td.className = "pic";
    if (src) {
      var img = document.createElement("img");
      img.src = src;
      img.alt = alt;
      img.loading = "lazy";
      td.appendChild(img);
    } else {
      td.textContent = "–";
    }
    tr.appendChild(td);
  }

  function header() {
    var tr = document.createElement("tr");
    D.columns.forEach(function (col) {
      var th = document.createElement("th");
      th.textContent = col.label + (col.key === state.sort ? (state.dir === "asc" ? " ▲" : " ▼") : "");
      th.dataset.key = col.key;
      th.className = "sortable";
      th.title = "sort by " + col.label;
      th.addEventListener("click", function () {
        state.dir = state.sort === col.key && state.dir === "asc" ? "desc" : "asc";
        state.sort = col.key;
        state.page = 1;
        compute();
        render();
      });
      tr.appendChild(th);
    });
    D.pictures.forEach(function (label) {
      var th = document.createElement("th");
      th.textContent = label;
      tr.appendChild(th);
    });
    var thead = document.getElementById("table-head");
    thead.replaceChildren(tr);
  }

  function render() {
    var pages = Math.max(1, Math.ceil(order.length / PAGE));
    state.page = Math.min(state.page, pages);
    header();
    var body = document.createDocumentFragment();
    var start = (state.page - 1) * PAGE, end = Math.min(order.length, start + PAGE);
    for (var k = start; k < end; k++) {
      var i = order[k], row = D.rows[i], tr = document.createElement("tr");
      tr.dataset.row = i;
      D.columns.forEach(function (col, c) {
        var v = row[c];
        cell(tr, fmt(v, col.type), col.type === "delta" && v !== null && v < -D.drop_mark ? "drop" : col.type);
      });
      D.pics[i].forEach(function (src, p) { picture(tr, src, D.pictures[p] + " of " + row[0]); });
      body.appendChild(tr);
    }
    document.getElementById("table-body").replaceChildren(body);
    document.getElementById("page-info").textContent =
      "page " + state.page + " of " + pages + " (" + order.length + " of " + D.rows.length + " images)";
    document.getElementById("prev").disabled = state.page <= 1;
    document.getElementById("next").disabled = state.page >= pages;
    document.body.dataset.tableRows = String(end - start);
    writeHash();
  }

  function go(delta) {
    state.page += delta;
    render();
    document.getElementById("images").scrollIntoView();
  }

  readHash();
  document.getElementById("filter").value = state.q;
  document.getElementById("filter").addEventListener("input", function (e) {
    state.q = e.target.value;
    state.page = 1;
    compute();
    render();
  });
  document.getElementById("prev").addEventListener("click", function () { go(-1); });
  document.getElementById("next").addEventListener("click", function () { go(1); });
  compute();
  render();
})();
