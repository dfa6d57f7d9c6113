// The review page's behaviour: select codes and show their evidence, accept / reject / add
// codes and mark the note reviewed through the JSON API, keyboard shortcuts. No framework,
// no build step, nothing fetched from elsewhere (docs/review.md says why).
(function () {
  "use strict";
  var root = document.getElementById("review");
  if (!root) return;
  var noteId = root.dataset.note;
  var api = "/v1/review/notes/" + encodeURIComponent(noteId);
  var list = document.getElementById("code-list");
  var message = document.getElementById("message");
  var search = document.getElementById("search");
  var hits = document.getElementById("hits");
  var help = document.getElementById("help");
  var text = document.getElementById("note-text");
  var selected = -1;
  var activeHit = -1;
  var lastSelection = null;

  function rows() { return Array.prototype.slice.call(list.querySelectorAll("li.code")); }

  function say(words, kind) {
    message.textContent = words;
    message.className = kind || "";
  }

  function select(index, scroll) {
    var all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === selected); });
    var row = all[selected];
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    var marks = text.querySelectorAll("mark.ev");
    var first = null;
    marks.forEach(function (mark) {
      var on = (" " + (mark.dataset.codes || "") + " ").indexOf(" " + row.dataset.index + " ") >= 0;
      mark.classList.toggle("active", on);
      if (on && !first) first = mark;
    });
    if (first && scroll !== false) first.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  function post(path, body) {
    return fetch(api + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var problem = new Error(data.detail || response.statusText);
          problem.status = response.status;
          throw problem;
        }
        return data;
      });
    });
  }

  function failed(error) {
    if (error.status === 409) say("Not saved: " + error.message, "conflict");
    else if (error.status === 401) say("Your session ended: log in again (reload the page).", "error");
    else say("Not saved: " + error.message, "error");
  }

  function render(view) {
    root.dataset.version = String(view.version);
    var status = document.getElementById("status");
    status.textContent = view.status.replace("_", " ");
    status.className = "pill " + view.status;
    var byCode = {};
    rows().forEach(function (row) { byCode[row.dataset.code] = row; });
    view.codes.forEach(function (code) {
      var row = byCode[code.code];
      if (!row) {
        row = newRow(code, rows().length);
        list.appendChild(row);
      }
      row.classList.remove("state-accept", "state-reject", "state-add");
      if (code.state) row.classList.add("state-" + code.state);
      row.querySelector(".state").textContent =
        (code.state || "undecided") + (code.decided_by ? " by " + code.decided_by : "");
    });
  }

  function newRow(code, index) {
    var row = document.createElement("li");
    row.className = "code system-added";
    row.dataset.code = code.code;
    row.dataset.index = String(index);
    row.tabIndex = -1;
    var head = document.createElement("div");
    head.className = "head";
    var id = document.createElement("span");
    id.className = "code-id";
    id.textContent = code.code;
    var desc = document.createElement("span");
    desc.className = "desc";
    desc.textContent = code.description;
    head.appendChild(id);
    head.appendChild(desc);
    var facts = document.createElement("div");
    facts.className = "facts";
    var system = document.createElement("span");
    system.className = "system";
    system.textContent = "added";
    var state = document.createElement("span");
    state.className = "state";
    facts.appendChild(system);
    facts.appendChild(state);
    var buttons = document.createElement("div");
    buttons.className = "buttons";
    [["accept", "Accept (a)"], ["reject", "Reject (r)"]].forEach(function (pair) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = pair[0];
      button.dataset.action = pair[0];
      button.textContent = pair[1];
      buttons.appendChild(button);
    });
    row.appendChild(head);
    row.appendChild(facts);
    row.appendChild(buttons);
    return row;
  }

  function decide(action, code, evidence) {
    var decision = { code: code, action: action };
    if (evidence && evidence.length) decision.evidence = evidence;
    return post("/decisions", { version: Number(root.dataset.version), decisions: [decision] })
      .then(function (view) {
        render(view);
        say(action + " " + code + " saved", "ok");
        return view;
      })
      .catch(failed);
  }

  function decideSelected(action) {
    var row = rows()[selected];
    if (!row) { say("Choose a code first (j / k).", "error"); return; }
    decide(action, row.dataset.code).then(function (view) {
      if (view && selected < rows().length - 1) select(selected + 1, true);
    });
  }

  function markReviewed() {
    post("/reviewed", { version: Number(root.dataset.version) })
      .then(function (view) { render(view); say("Marked reviewed.", "ok"); })
      .catch(failed);
  }

  // -- evidence for an added code: the text selected in the note, as offsets
  function offsetOf(node, offset) {
    var element = node.nodeType === 3 ? node.parentElement : node;
    while (element && element !== text && !element.dataset.start) element = element.parentElement;
    if (!element || element === text) return null;
    return Number(element.dataset.start) + (node.nodeType === 3 ? offset : 0);
  }

  function rememberSelection() {
    var selection = window.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) return;
    var range = selection.getRangeAt(0);
    if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return;
    var start = offsetOf(range.startContainer, range.startOffset);
    var end = offsetOf(range.endContainer, range.endOffset);
    if (start !== null && end !== null && end > start) lastSelection = { start: start, end: end };
  }
  document.addEventListener("selectionchange", rememberSelection);

  // -- typeahead over the catalogue
  var pending = null;
  function lookup() {
    var q = search.value.trim();
    if (pending) clearTimeout(pending);
    if (!q) { hits.innerHTML = ""; activeHit = -1; return; }
    pending = setTimeout(function () {
      fetch("/v1/catalogue/search?limit=12&q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (search.value.trim() !== q) return;
          hits.innerHTML = "";
          (data.hits || []).forEach(function (hit, i) {
            var item = document.createElement("li");
            item.className = "hit" + (hit.billable ? "" : " category");
            item.setAttribute("role", "option");
            item.dataset.code = hit.code;
            var code = document.createElement("strong");
            code.textContent = hit.code;
            item.appendChild(code);
            item.appendChild(document.createTextNode(" " + hit.description));
            item.addEventListener("mousedown", function (event) { event.preventDefault(); add(hit.code); });
            hits.appendChild(item);
            if (i === 0) item.classList.add("active");
          });
          activeHit = data.hits && data.hits.length ? 0 : -1;
        });
    }, 120);
  }

  function moveHit(step) {
    var items = hits.querySelectorAll("li");
    if (!items.length) return;
    activeHit = (activeHit + step + items.length) % items.length;
    items.forEach(function (item, i) { item.classList.toggle("active", i === activeHit); });
  }

  function add(code) {
    var evidence = lastSelection ? [lastSelection] : [];
    decide("add", code, evidence).then(function (view) {
      if (!view) return;
      search.value = "";
      hits.innerHTML = "";
      lastSelection = null;
      var index = rows().findIndex(function (row) { return row.dataset.code === code; });
      search.blur();
      select(index, false);
    });
  }

  search.addEventListener("input", lookup);
  search.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown") { event.preventDefault(); moveHit(1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); moveHit(-1); }
    else if (event.key === "Enter") {
      event.preventDefault();
      var item = hits.querySelectorAll("li")[activeHit];
      if (item) add(item.dataset.code);
    } else if (event.key === "Escape") { search.value = ""; hits.innerHTML = ""; search.blur(); }
  });

  // -- mouse
  list.addEventListener("click", function (event) {
    var row = event.target.closest("li.code");
    if (!row) return;
    select(rows().indexOf(row), true);
    var button = event.target.closest("button[data-action]");
    if (button) decide(button.dataset.action, row.dataset.code);
  });
  text.addEventListener("click", function (event) {
    var mark = event.target.closest("mark.ev");
    if (mark && window.getSelection().isCollapsed) select(Number(mark.dataset.codes.split(" ")[0]), false);
  });
  document.getElementById("mark-reviewed").addEventListener("click", markReviewed);
  document.getElementById("help-button").addEventListener("click", function () { help.hidden = !help.hidden; });

  // -- keyboard
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var typing = event.target === search || /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
    if (typing) return;
    if (event.key === "Escape") { help.hidden = true; return; }
    var handled = true;
    switch (event.key) {
      case "j": select(selected + 1, true); break;
      case "k": select(selected - 1, true); break;
      case "a": decideSelected("accept"); break;
      case "r": decideSelected("reject"); break;
      case "/": search.focus(); search.select(); break;
      case "m": markReviewed(); break;
      case "n":
        if (root.dataset.next) window.location.href = root.dataset.next;
        else say("No other note to review.", "ok");
        break;
      case "?": help.hidden = !help.hidden; break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });
})();
