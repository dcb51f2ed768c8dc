// Labeling page of otel-llm-eval's sidecar. Plain JS, no build step. Untrusted text (prompts,
// completions) is only ever set through textContent, never innerHTML.
(function () {
  "use strict";
  var TOKEN_KEY = "otel-llm-eval-token";
  var ISSUE_KEYS = "asdfghjkl";
  var state = { item: null, issues: [], busy: false };
  var $ = function (id) { return document.getElementById(id); };

  var tokenInput = $("token");
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
  tokenInput.addEventListener("change", function () {
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    load();
  });

  function say(text, kind) {
    var m = $("message");
    m.textContent = text || "";
    m.className = kind || "";
  }

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: method, headers: headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = { error: t }; }
        if (r.status === 401 || r.status === 403) {
          tokenInput.focus();
          throw new Error("The sidecar needs its bearer token: enter it in the Token field.");
        }
        if (!r.ok) {
          var err = new Error((data && (data.error || data.detail)) ? String(data.error || JSON.stringify(data.detail)) : "HTTP " + r.status);
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }

  function renderIssues(issues) {
    var key = issues.map(function (i) { return i.id; }).join(",");
    if (key === state.issueKey) return;
    state.issueKey = key;
    state.issues = issues;
    var fs = $("issues");
    while (fs.children.length > 1) fs.removeChild(fs.lastChild);
    issues.forEach(function (issue, n) {
      var label = document.createElement("label");
      label.className = "issue";
      var box = document.createElement("input");
      box.type = "checkbox"; box.name = "issue"; box.value = issue.id; box.id = "issue-" + issue.id;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + issue.name + " "));
      if (n < ISSUE_KEYS.length) {
        var k = document.createElement("kbd");
        k.textContent = ISSUE_KEYS[n];
        label.appendChild(k);
      }
      fs.appendChild(label);
    });
  }

  function renderQuality() {
    var fs = $("quality");
    for (var q = 1; q <= 5; q++) {
      var label = document.createElement("label");
      label.className = "q";
      var radio = document.createElement("input");
      radio.type = "radio"; radio.name = "quality"; radio.value = String(q); radio.id = "quality-" + q;
      var span = document.createElement("span");
      span.textContent = String(q);
      span.title = ["", "very bad", "bad", "acceptable", "good", "excellent"][q];
      label.appendChild(radio); label.appendChild(span);
      fs.appendChild(label);
    }
  }

  function show(item) {
    state.item = item;
    $("empty").hidden = !!item;
    $("item").hidden = !item;
    if (!item) return;
    $("item").reset();
    $("item").dataset.itemId = item.id;
    $("m-model").textContent = item.model || "unknown";
    $("m-variant").textContent = (item.experiment ? item.experiment + " / " : "") + (item.variant || "none");
    $("m-reason").textContent = item.reason || "";
    $("m-judge").textContent = item.judge_score == null ? "not judged" : String(item.judge_score);
    $("m-checks").textContent = (item.failed_checks || []).join(", ") || "none";
    $("m-trace").textContent = item.trace_id || "";
    $("prompt").textContent = item.prompt == null ? "(no prompt recorded)" : item.prompt;
    $("completion").textContent = item.completion == null ? "(no completion recorded)" : item.completion;
  }

  function load() {
    return api("GET", "/v1/review/queue?limit=1").then(function (data) {
      renderIssues(data.issues || []);
      $("depth").textContent = "queue: " + data.depth;
      var next = (data.items || [])[0] || null;
      if (!state.item || !next || next.id !== state.item.id) show(next);
    }).catch(function (e) { say(e.message, "error"); });
  }

  function submit() {
    if (!state.item || state.busy) return;
    var q = document.querySelector("input[name=quality]:checked");
    if (!q) { say("Choose a quality from 1 to 5 first (keys 1–5).", "error"); return; }
    var issues = Array.prototype.map.call(
      document.querySelectorAll("input[name=issue]:checked"), function (b) { return b.value; });
    var body = { quality: Number(q.value), issues: issues };
    var comment = $("comment").value.trim();
    var corrected = $("corrected").value.trim();
    if (comment) body.comment = comment;
    if (corrected) body.corrected_answer = corrected;
    var id = state.item.id;
    state.busy = true;
    api("POST", "/v1/review/" + encodeURIComponent(id) + "/label", body).then(function () {
      say("Labeled " + id + " with quality " + body.quality + ".", "ok");
      state.item = null;
      return load();
    }).catch(function (e) {
      say(e.message, "error");
      // Another reviewer labeled it first (409) or it expired (404): move on to the next item.
      if (e.status === 409 || e.status === 404) { state.item = null; return load(); }
    }).then(function () { state.busy = false; });
  }

  function skip() {
    if (!state.item || state.busy) return;
    var id = state.item.id;
    state.busy = true;
    api("POST", "/v1/review/" + encodeURIComponent(id) + "/skip").then(function () {
      say("Skipped " + id + ".", "");
      state.item = null;
      return load();
    }).catch(function (e) { say(e.message, "error"); })
      .then(function () { state.busy = false; });
  }

  $("item").addEventListener("submit", function (ev) { ev.preventDefault(); submit(); });
  $("skip").addEventListener("click", skip);
  $("refresh").addEventListener("click", load);

  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    var typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "checkbox"));
    if (typing) {
      if (ev.key === "Escape") t.blur();
      else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && t.tagName === "TEXTAREA") { ev.preventDefault(); submit(); }
      return;
    }
    if (!state.item || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var k = ev.key;
    if (k >= "1" && k <= "5") {
      $("quality-" + k).checked = true;
      ev.preventDefault();
    } else if (ISSUE_KEYS.indexOf(k) >= 0 && ISSUE_KEYS.indexOf(k) < state.issues.length) {
      var box = $("issue-" + state.issues[ISSUE_KEYS.indexOf(k)].id);
      box.checked = !box.checked;
      ev.preventDefault();
    } else if (k === "Enter") {
      ev.preventDefault(); submit();
    } else if (k === "n") {
      ev.preventDefault(); skip();
    } else if (k === "c") {
      ev.preventDefault(); $("comment").focus();
    }
  });

  renderQuality();
  load();
  setInterval(function () { if (!state.item) load(); }, 10000);
})();
