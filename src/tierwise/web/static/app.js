/* tierwise dashboard behaviour: long work started through the REST API and followed by polling
   /api/v1/jobs/{id} (run, upload, settings preview), settings save, users and tokens. Every change sends the
   session's CSRF token in the X-CSRF-Token header. No data from the server is ever inserted as HTML. */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = meta ? meta.getAttribute("content") : "";
  var textEl = document.getElementById("page-text");
  var T = textEl ? JSON.parse(textEl.textContent) : {};
  var POLL_MS = 800;

  function $(id) { return document.getElementById(id); }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function api(method, url, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") { opts.headers["X-CSRF-Token"] = CSRF; }
    if (body instanceof FormData) {
      opts.body = body;
    } else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      if (r.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
      var type = r.headers.get("content-type") || "";
      var parsed = type.indexOf("json") >= 0 ? r.json() : r.text().then(function (t) { return { error: t }; });
      return parsed.then(function (data) {
        if (!r.ok) {
          var msg = (data && (data.error || data.detail)) || (r.status + " " + r.statusText);
          throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
        }
        return data;
      });
    });
  }

  // A job box: <div class="job"><progress> <span class="job-text"> [Cancel]</div>
  function showJob(box, state, stage, progress, cancelling) {
    if (!box) { return; }
    box.hidden = false;
    box.setAttribute("data-state", state);
    var bar = box.querySelector("progress");
    var text = box.querySelector(".job-text");
    if (bar) {
      if (typeof progress === "number") {
        bar.value = progress <= 1 ? Math.round(progress * 100) : Math.round(progress);
      } else if (state === "done") {
        bar.value = 100;
      } else {
        bar.removeAttribute("value");
      }
    }
    if (text) {
      var words = { queued: T.queued, running: T.running, done: T.done, failed: T.failed, cancelled: T.cancelled };
      if (cancelling && (state === "queued" || state === "running")) {
        text.textContent = T.cancelling;
      } else {
        text.textContent = (words[state] || state) + (stage && state === "running" ? " " + stage : "");
      }
    }
  }

  // The job box's Cancel button (POST /api/v1/jobs/{id}/cancel), shown while the job is queued or running.
  function cancelButton(box, jobId) {
    if (!box) { return null; }
    var button = box.querySelector(".job-cancel");
    if (!button) {
      button = el("button", T.cancel, { type: "button", "class": "secondary job-cancel", "data-test": "job-cancel" });
      box.appendChild(button);
    }
    button.hidden = false;
    button.disabled = false;
    button.onclick = function () {
      button.disabled = true;
      api("POST", "/api/v1/jobs/" + encodeURIComponent(jobId) + "/cancel")
        .catch(function (err) { button.disabled = false; fail(box, err); });
    };
    return button;
  }

  function followJob(jobId, box, onDone, onFail) {
    var cancel = cancelButton(box, jobId);
    function tick() {
      api("GET", "/api/v1/jobs/" + encodeURIComponent(jobId)).then(function (job) {
        showJob(box, job.state, job.stage, job.progress, job.cancel_requested);
        var finished = job.state === "done" || job.state === "failed" || job.state === "cancelled";
        if (cancel && finished) { cancel.hidden = true; }
        if (cancel && job.cancel_requested) { cancel.disabled = true; }
        if (job.state === "done") {
          if (onDone) { onDone(job.result); }
        } else if (job.state === "failed") {
          var text = box && box.querySelector(".job-text");
          if (text) { text.textContent = T.failed + " " + (job.error || ""); }
          if (onFail) { onFail(job.error); }
        } else if (job.state === "cancelled") {
          if (onFail) { onFail(T.cancelled); }
        } else {
          setTimeout(tick, POLL_MS);
        }
      }).catch(function (err) { if (cancel) { cancel.hidden = true; } fail(box, err); });
    }
    showJob(box, "queued");
    tick();
  }

  function fail(box, err) {
    if (!box) { window.alert(err.message || err); return; }
    box.hidden = false;
    box.setAttribute("data-state", "failed");
    var text = box.querySelector(".job-text") || box;
    text.textContent = T.failed + " " + (err.message || err);
  }

  // --- log out: the API answers JSON, so the page goes to the login page itself --------------------------
  var logoutForm = $("logout-form");
  if (logoutForm) {
    logoutForm.addEventListener("submit", function (e) {
      e.preventDefault();
      api("POST", "/api/v1/auth/logout").then(function () { window.location.href = "/login"; })
        .catch(function () { logoutForm.submit(); });
    });
  }

  // --- run the main job ----------------------------------------------------------------------------------
  var runForm = $("run-form");
  if (runForm) {
    runForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var box = $("run-job");
      var button = $("run-button");
      var asOf = $("run-as-of") ? $("run-as-of").value : "";
      button.disabled = true;
      api("POST", "/api/v1/runs", { as_of: asOf || null }).then(function (r) {
        followJob(r.job_id, box, function () {
          var text = box.querySelector(".job-text");
          text.textContent = T.done + " " + T.reload;
          button.disabled = false;
          setTimeout(function () { window.location.reload(); }, 1200);
        }, function () { button.disabled = false; });
      }).catch(function (err) { button.disabled = false; fail(box, err); });
    });
  }

  // --- refresh now (alerts page, admins): every source, a run, alerts and deliveries ---------------------
  var refreshForm = $("refresh-form");
  if (refreshForm) {
    refreshForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var box = $("refresh-job");
      var button = $("refresh-button");
      button.disabled = true;
      api("POST", "/api/v1/refresh").then(function (r) {
        followJob(r.job_id, box, function () {
          box.querySelector(".job-text").textContent = T.done + " " + T.reload;
          setTimeout(function () { window.location.reload(); }, 1200);
        }, function () { button.disabled = false; });
      }).catch(function (err) { button.disabled = false; fail(box, err); });
    });
  }

  // --- upload a file ------------------------------------------------------------------------------------
  function table(head, rows) {
    var t = el("table", null, { "class": "data compact" });
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", h, { scope: "col" })); });
    t.appendChild(el("thead")).appendChild(tr);
    var body = el("tbody");
    rows.forEach(function (row) {
      var r = el("tr");
      row.forEach(function (v) { r.appendChild(el("td", v === null || v === undefined ? "—" : v)); });
      body.appendChild(r);
    });
    t.appendChild(body);
    return t;
  }

  // "… {batch} …" with the values of `fields` (text only: the result is set as textContent)
  function fill(template, fields) {
    return String(template || "").replace(/\{(\w+)\}/g, function (m, k) {
      return fields[k] === undefined || fields[k] === null ? "—" : String(fields[k]);
    });
  }

  function when(value) {
    return value ? String(value).replace("T", " ").replace(/\.\d+$/, "") : "—";
  }

  function quarantineLink(batch, text) {
    var more = el("p");
    more.appendChild(el("a", text, { href: "/data?batch=" + encodeURIComponent(batch) + "#quarantine",
                                     "data-test": "upload-quarantine-link" }));
    return more;
  }

  // The summary's <dd> carry the report's own keys (data-field) and raw values (data-value); the terms shown
  // are in the page's language.
  var INGEST_FIELDS = [["status", "status"], ["rows_read", "rows_read"], ["rows_new", "rows_new"],
    ["rows_updated", "rows_updated"], ["rows_unchanged", "rows_unchanged"], ["rows_quarantined", "rows_quarantined"], ["duplicates_removed", "duplicates"], ["values_blanked", "values_blanked"]];

  function showIngest(result) {
    var box = $("upload-report");
    var body = box.querySelector(".report-body");
    body.textContent = "";
    var rep = (result && result.report) || {};
    var already = rep.status === "already_loaded";
    var prev = (result && result.previous) || {};
    var statuses = T.ingest_status || {};
    var lang = document.documentElement.lang || undefined;
    var dl = el("dl", null, { "class": "facts", "data-test": "ingest-summary" });
    INGEST_FIELDS.forEach(function (f) {
      var v = rep[f[0]];
      if (v === undefined || v === null) { return; }
      if (already && f[0] !== "status") { return; }  // nothing was read: the counts belong to the earlier batch
      var shown = f[0] === "status" ? (statuses[v] || v) : (typeof v === "number" ? v.toLocaleString(lang) : v);
      dl.appendChild(el("dt", T[f[1]] || f[0]));
      dl.appendChild(el("dd", shown, { "data-field": f[0], "data-value": String(v) }));
    });
    body.appendChild(dl);
    if (already) {
      body.appendChild(el("p", fill(T.already_loaded_note, { batch: prev.batch_id || rep.batch_id, date: when(prev.loaded_at) }),
                          { "class": "notes", "data-test": "already-loaded" }));
      if (prev.rows_quarantined) {
        body.appendChild(quarantineLink(prev.batch_id || rep.batch_id,
                                        fill(T.batch_quarantine, { batch: prev.batch_id || rep.batch_id })));
      }
    } else {
      var q = (result && result.quarantine) || { rows: [] };
      if (q.rows && q.rows.length) {
        body.appendChild(table([T.line, T.column, T.reason_code, T.message],
          q.rows.map(function (r) { return [r.line, r.column, r.reason_code, r.message]; })));
      }
      if (rep.rows_quarantined && rep.batch_id) {
        body.appendChild(quarantineLink(rep.batch_id, fill(T.batch_quarantine, { batch: rep.batch_id })));
      }
    }
    box.hidden = false;
  }

  var uploadForm = $("upload-form");
  if (uploadForm) {
    uploadForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var box = $("upload-job");
      var file = $("upload-file").files[0];
      if (!file) { return; }
      var max = parseInt(uploadForm.getAttribute("data-max-bytes") || "0", 10);
      if (max && file.size > max) { fail(box, new Error(file.name + ": > " + Math.round(max / 1048576) + " MB")); return; }
      var data = new FormData();
      data.append("file", file, file.name);
      var button = $("upload-button");
      button.disabled = true;
      $("upload-report").hidden = true;
      api("POST", "/api/v1/uploads/" + encodeURIComponent($("upload-table").value), data).then(function (r) {
        followJob(r.job_id, box, function (result) { button.disabled = false; showIngest(result); },
                  function () { button.disabled = false; });
      }).catch(function (err) { button.disabled = false; fail(box, err); });
    });
  }

  // --- settings -----------------------------------------------------------------------------------------
  var settingsForm = $("settings-form");
  function numbers(name) {
    return Array.prototype.map.call(settingsForm.querySelectorAll('input[name="' + name + '"]'),
      function (i) { return parseFloat(i.value); });
  }
  function settingsChanges() {
    var initial = JSON.parse($("settings-initial").textContent);
    var weights = {};
    settingsForm.querySelectorAll('input[name="weight"]').forEach(function (i) {
      weights[i.getAttribute("data-indicator")] = parseFloat(i.value);
    });
    var now = {
      grade: { weights: weights, method: $("grade-method").value, cutoffs: numbers("cutoff"), quotas: numbers("quota") },
      abc: { a_cutoff: parseFloat($("abc-a").value), b_cutoff: parseFloat($("abc-b").value) }
    };
    var changes = {};
    var grade = {};
    ["weights", "method", "cutoffs", "quotas"].forEach(function (k) {
      if (JSON.stringify(now.grade[k]) !== JSON.stringify(initial.grade[k])) { grade[k] = now.grade[k]; }
    });
    if (Object.keys(grade).length) { changes.grade = grade; }
    var abc = {};
    ["a_cutoff", "b_cutoff"].forEach(function (k) { if (now.abc[k] !== initial.abc[k]) { abc[k] = now.abc[k]; } });
    if (Object.keys(abc).length) { changes.abc = abc; }
    [["rules", "settings-rules"], ["playbook", "settings-playbook"]].forEach(function (p) {
      var value;
      try { value = JSON.parse($(p[1]).value); } catch (err) { throw new Error(p[0] + ": " + err.message); }
      if (JSON.stringify(value) !== JSON.stringify(initial[p[0]])) { changes[p[0]] = value; }
    });
    return changes;
  }
  function settingsError(err) {
    var box = $("settings-error");
    box.textContent = err ? (err.message || String(err)) : "";
    box.hidden = !err;
  }
  function showPreview(r) {
    var box = $("settings-result");
    var body = box.querySelector(".result-body");
    body.textContent = "";
    var changed = (r && r.changed) || {};
    var head = el("p", null, { "class": "big" });
    head.appendChild(el("strong", (changed.grade || 0).toLocaleString(), { "data-test": "preview-changed-grade",
      "data-value": String(changed.grade || 0) }));
    head.appendChild(document.createTextNode(" / " + (r.customers || 0).toLocaleString() + " " + T.changed_grade));
    body.appendChild(head);
    var dl = el("dl", null, { "class": "facts", "data-test": "preview-changed" });
    var names = (r && r.changed_labels) || {};
    Object.keys(changed).forEach(function (k) {
      dl.appendChild(el("dt", (T.compared || {})[k] || names[k] || k));
      dl.appendChild(el("dd", Number(changed[k]).toLocaleString(document.documentElement.lang || undefined),
                        { "data-field": k, "data-value": String(changed[k]) }));
    });
    body.appendChild(dl);
    var moved = (r.grade_matrix || []).filter(function (c) { return c.customers; });
    if (moved.length) {
      body.appendChild(table([T.from, T.to, T.customers], moved.map(function (c) {
        return [c.from_label || c.from, c.to_label || c.to, c.customers];
      })));
    }
    box.hidden = false;
  }
  if (settingsForm) {
    $("settings-preview").addEventListener("click", function () {
      settingsError(null);
      var changes;
      try { changes = settingsChanges(); } catch (err) { settingsError(err); return; }
      var button = $("settings-preview");
      button.disabled = true;
      var lang = document.documentElement.getAttribute("data-lang") || "";
      api("POST", "/api/v1/settings/preview" + (lang ? "?lang=" + encodeURIComponent(lang) : ""), changes).then(function (r) {
        followJob(r.job_id, $("settings-job"), function (result) { button.disabled = false; showPreview(result); },
                  function (msg) { button.disabled = false; settingsError(new Error(msg || "")); });
      }).catch(function (err) { button.disabled = false; settingsError(err); });
    });
    $("settings-save").addEventListener("click", function () {
      settingsError(null);
      var changes;
      try { changes = settingsChanges(); } catch (err) { settingsError(err); return; }
      var version = settingsForm.getAttribute("data-version");
      api("PUT", "/api/v1/settings" + (version ? "?version=" + encodeURIComponent(version) : ""), changes)
        .then(function () {
          var box = $("settings-job");
          box.hidden = false;
          box.setAttribute("data-state", "saved");
          box.querySelector(".job-text").textContent = T.saved;
          setTimeout(function () { window.location.reload(); }, 1500);
        }).catch(settingsError);
    });
  }

  // --- users and tokens ---------------------------------------------------------------------------------
  function usersError(err) {
    var box = $("users-error");
    if (!box) { return; }
    box.textContent = err ? (err.message || String(err)) : "";
    box.hidden = !err;
  }
  var addForm = $("user-add-form");
  if (addForm) {
    addForm.addEventListener("submit", function (e) {
      e.preventDefault();
      usersError(null);
      api("POST", "/api/v1/users", { username: $("new-username").value, password: $("new-password").value,
                                     role: $("new-role").value })
        .then(function () { window.location.reload(); }).catch(usersError);
    });
  }
  document.querySelectorAll(".user-remove").forEach(function (b) {
    b.addEventListener("click", function () {
      var name = b.getAttribute("data-user");
      if (!window.confirm(T.confirm_remove + " " + name)) { return; }
      api("DELETE", "/api/v1/users/" + encodeURIComponent(name)).then(function () { window.location.reload(); })
        .catch(usersError);
    });
  });
  document.querySelectorAll(".user-role").forEach(function (s) {
    s.addEventListener("change", function () {
      api("PUT", "/api/v1/users/" + encodeURIComponent(s.getAttribute("data-user")) + "/role", { role: s.value })
        .then(function () { window.location.reload(); }).catch(usersError);
    });
  });
  document.querySelectorAll(".token-create").forEach(function (b) {
    b.addEventListener("click", function () {
      api("POST", "/api/v1/users/" + encodeURIComponent(b.getAttribute("data-user")) + "/tokens").then(function (r) {
        $("token-value").textContent = r.token;
        $("token-shown").hidden = false;
      }).catch(usersError);
    });
  });
  document.querySelectorAll(".token-revoke").forEach(function (b) {
    b.addEventListener("click", function () {
      api("DELETE", "/api/v1/tokens/" + encodeURIComponent(b.getAttribute("data-token")))
        .then(function () { window.location.reload(); }).catch(usersError);
    });
  });
  // --- sessions: end one, or all of a user's ---------------------------------------------------------------
  document.querySelectorAll(".session-end").forEach(function (b) {
    b.addEventListener("click", function () {
      api("DELETE", "/api/v1/sessions/" + encodeURIComponent(b.getAttribute("data-session")))
        .then(function () { window.location.reload(); }).catch(usersError);
    });
  });
  document.querySelectorAll(".sessions-end").forEach(function (b) {
    b.addEventListener("click", function () {
      api("DELETE", "/api/v1/users/" + encodeURIComponent(b.getAttribute("data-user")) + "/sessions")
        .then(function () { window.location.reload(); }).catch(usersError);
    });
  });
})();
