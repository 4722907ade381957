// aiojobs_pg dashboard: plain DOM, no build step. Every value from the API is
// written with textContent (never innerHTML), so job data is shown as text.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const THROUGHPUT_MS = 30000;  // the charts' route scans the history: fetch it every 30 s, not every 2 s
  const SVG = "http://www.w3.org/2000/svg";
  const STATUSES = ["waiting", "pending", "running", "completed", "failed", "cancelled"];
  const state = {
    status: "", queue: "", handler: "", jobId: "", data: "",
    checked: new Set(),   // ids of the jobs ticked for a bulk action (kept across refreshes)
    throughputAt: 0,      // when the charts were last fetched (they refresh less often)
    shown: 50,            // how many jobs the list shows (grows with "load more")
    nextCursor: null,
    selected: null,       // id of the job in the detail panel
    confirmDelete: false,
    detailKey: null,      // what the detail panel shows, to skip identical re-renders
    timer: null,
  };

  const $ = (sel) => document.querySelector(sel);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // --- API -------------------------------------------------------------
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.reload(); // the session ended: show the sign-in form
      throw new Error("signed out");
    }
    const payload = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const message = payload && payload.message ? payload.message : `HTTP ${response.status}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return payload;
  }

  // --- formatting --------------------------------------------------------
  function relative(iso) {
    if (!iso) return "–";
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const abs = Math.abs(seconds);
    const text = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m`
      : abs < 86400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
    if (abs < 1) return "now";
    return seconds > 0 ? `in ${text}` : `${text} ago`;
  }

  function shortTime(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
  }

  function timeCell(iso) {
    return el("td", { class: "time", text: relative(iso), title: iso || "" });
  }

  function errorSummary(error) {
    if (!error) return "";
    const lines = error.trim().split("\n").map((l) => l.trim()).filter(Boolean);
    if (!lines.length) return "";
    const line = lines[0].startsWith("Traceback") ? lines[lines.length - 1] : lines[0];
    return line.length > 80 ? line.slice(0, 79) + "…" : line;
  }

  function badge(status) {
    return el("span", { class: `badge ${status}`, text: status });
  }

  // a running job's progress (ctx.progress) as a bar, with its message on hover
  function progressBar(job) {
    const percent = Math.round(job.progress * 100);
    const bar = el("progress", { class: "job-progress", max: 100, value: percent,
      title: `${percent}%${job.progressMessage ? `: ${job.progressMessage}` : ""}` });
    bar.setAttribute("aria-label", `progress ${percent}%`);
    return bar;
  }

  // the status, whether a pending job waits for a worker that serves its queue and handler,
  // and a running job's progress
  function statusBadges(job) {
    const badges = [badge(job.status)];
    if (job.status === "waiting" && job.waitingFor) {
      badges[0].title = `waits until these jobs completed: ${job.waitingFor.join(", ")}`;
    }
    if (job.status === "running" && job.progress !== null && job.progress !== undefined) {
      badges.push(progressBar(job));
    }
    if (job.noWorker) {
      badges.push(el("span", { class: "badge no-worker", text: "no worker",
        title: "No live worker serves this queue with this handler: the job waits, with no attempt spent." }));
    }
    return badges;
  }

  function pretty(value) {
    return value === null || value === undefined ? "null" : JSON.stringify(value, null, 2);
  }

  function toast(message, isError) {
    const node = $("#toast");
    node.textContent = message;
    node.className = isError ? "error" : "ok";
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { node.hidden = true; }, 4000);
  }

  function fillBody(table, rows, emptyNode) {
    const tbody = table.tBodies[0];
    tbody.replaceChildren(...rows);
    if (emptyNode) emptyNode.hidden = rows.length > 0;
  }

  // --- sections ------------------------------------------------------------
  async function loadHealth() {
    const node = $("#health");
    try {
      const response = await fetch("health", { credentials: "same-origin" });
      const health = await response.json();
      const parts = [health.database ? "database ok" : "database DOWN"];
      if (health.listener !== null) parts.push(health.listener ? "listener ok" : "listener DOWN");
      node.textContent = parts.join(" · ");
      node.className = `pill ${health.status === "ok" ? "good" : "bad"}`;
    } catch (err) {
      node.textContent = "server unreachable";
      node.className = "pill bad";
    }
  }

  async function loadQueues() {
    const { data } = await api("GET", "queues");
    const rows = data.map((q) => {
      const waiting = Object.entries(q.noWorker || {});
      const name = el("td", {}, [el("span", { text: q.queue })]);
      if (q.paused) name.append(el("span", { class: "badge paused", text: "paused" }));
      const limits = [];  // its fleet-wide limits (POST /queues/{queue}/settings)
      if (q.concurrencyLimit !== null && q.concurrencyLimit !== undefined) limits.push(`≤${q.concurrencyLimit} at once`);
      if (q.rateLimit) limits.push(q.rateLimit);
      if (limits.length) {
        name.append(el("span", { class: "badge limits", text: limits.join(" · "),
          title: "limits on every worker together: " + [
            q.concurrencyLimit !== null && q.concurrencyLimit !== undefined
              ? `at most ${q.concurrencyLimit} of its jobs run at once` : "",
            q.rateLimit ? `at most ${q.rateLimit.replace("/", " start per ")}` : ""].filter(Boolean).join("; ") }));
      }
      if (waiting.length) {
        name.append(el("span", { class: "badge no-worker", text: "no worker",
          title: `pending jobs no live worker can run: ${waiting.map(([h, n]) => `${h} (${n})`).join(", ")}` }));
      }
      const toggle = el("button", { class: "queue-toggle", type: "button", text: q.paused ? "resume" : "pause",
        title: q.paused ? "let workers claim this queue's jobs again"
                        : "stop every worker from claiming this queue's jobs (running ones finish)" });
      toggle.addEventListener("click", () => pauseQueue(q.queue, !q.paused));
      const retryAll = el("button", { class: "queue-retry-failed", type: "button", text: "retry failed",
        disabled: !q.counts.failed, title: "re-queue every failed job of this queue" });
      retryAll.addEventListener("click", () => queueBulk(q.queue, "retry-failed", q.counts.failed));
      const cancelAll = el("button", { class: "queue-cancel-pending", type: "button", text: "cancel pending",
        disabled: !q.counts.pending, title: "cancel every pending job of this queue" });
      cancelAll.addEventListener("click", () => queueBulk(q.queue, "cancel-pending", q.counts.pending));
      return el("tr", { "data-queue": q.queue, "data-paused": String(q.paused),
                        "data-concurrency-limit": String(q.concurrencyLimit ?? ""), "data-rate-limit": q.rateLimit || "" }, [
        name,
        ...STATUSES.map((s) => el("td", { class: `num ${q.counts[s] ? s : ""}`, text: q.counts[s] })),
        el("td", { text: q.oldestPendingAgeSeconds === null ? "–" : `${Math.round(q.oldestPendingAgeSeconds)}s`,
                   title: q.oldestPendingAt || "" }),
        el("td", {}, [toggle]),
        el("td", { class: "bulk-cell" }, [retryAll, cancelAll]),
      ]);
    });
    fillBody($("#queues"), rows, $("#queues-empty"));
    // the status tabs' counts: every queue's, from the same answer
    const totals = { all: 0 };
    for (const s of STATUSES) totals[s] = 0;
    for (const q of data) {
      totals.all += q.total;
      for (const s of STATUSES) totals[s] += q.counts[s] || 0;
    }
    for (const node of document.querySelectorAll("#status-tabs [data-count]")) {
      node.textContent = String(totals[node.dataset.count]);
    }
  }

  // a bulk action on every job of a queue (one statement on the server), after a confirm
  async function queueBulk(queue, action, shown) {
    const what = action === "retry-failed" ? "Re-queue every failed job" : "Cancel every pending job";
    if (!window.confirm(`${what} of queue ${queue} (${shown} now)?`)) return;
    try {
      const { count } = await api("POST", `bulk/${action}`, { queue });
      toast(`${action === "retry-failed" ? "Retried" : "Cancelled"} ${count} job${count === 1 ? "" : "s"} of ${queue}`);
    } catch (err) {
      toast(err.message, true);
    }
    await refresh();
  }

  async function pauseQueue(queue, pause) {
    try {
      await api("POST", `queues/${encodeURIComponent(queue)}/${pause ? "pause" : "resume"}`);
      toast(`Queue ${queue} ${pause ? "paused" : "resumed"}`);
      await loadQueues();
    } catch (err) {
      toast(err.message, true);
    }
  }

  async function loadWorkers() {
    const runner = await api("GET", "jobs/runner");
    const local = runner.workers[0];
    $("#runner-state").textContent = local
      ? `${runner.state} (${local.inflight} in flight, listener ${local.listenerConnected ? "up" : "down"})`
      : runner.state + (runner.lastError ? ` — ${runner.lastError}` : "");
    $("#runner-start").disabled = runner.state !== "stopped";
    $("#runner-stop").disabled = runner.state !== "running";
    const rows = runner.liveWorkers.map((w) => el("tr", { "data-worker-id": w.id }, [
      el("td", { text: w.id, title: `${w.hostname} pid ${w.pid}` }),
      el("td", { text: w.queues.join(", ") }),
      el("td", { class: "num", text: w.concurrency }),
      timeCell(w.startedAt),
      timeCell(w.heartbeatAt),
    ]));
    fillBody($("#workers"), rows, $("#workers-empty"));
  }

  async function loadWebhooks() {
    const { data } = await api("GET", "webhooks");
    const rows = data.map((h) => el("tr", { "data-webhook-id": h.id }, [
      el("td", { class: "num", text: h.id }),
      el("td", { text: h.url, title: h.description || "" }),
      el("td", { text: h.events.join(", ") }),
      el("td", { text: [...(h.handlers || []), ...(h.queues || []).map((q) => `queue ${q}`)].join(", ") || "all" }),
      el("td", { class: "num", text: h.maxAttempts }),
    ]));
    fillBody($("#webhooks"), rows, $("#webhooks-empty"));
  }

  function jobQuery(limit, cursor) {
    const params = new URLSearchParams();
    if (state.status) params.set("status", state.status);
    if (state.queue) params.set("queue", state.queue);
    if (state.handler) params.set("handler", state.handler);
    if (state.data) params.set("data", state.data);
    params.set("limit", String(limit));
    if (cursor) params.set("cursor", cursor);
    return `jobs?${params}`;
  }

  // a recurring job's cell lists its next runs on hover
  function nextRunCell(job) {
    const cell = timeCell(job.status === "pending" ? job.nextRunAt : null);
    if (job.nextRuns && job.nextRuns.length) {
      cell.title = `${job.schedule}, next runs (UTC):\n${job.nextRuns.map(shortTime).join("\n")}`;
    }
    return cell;
  }

  function jobRow(job) {
    const label = job.name ? `${job.name} (${job.handler})` : job.handler;
    const box = el("input", { type: "checkbox", class: "job-select", checked: state.checked.has(job.id) });
    box.setAttribute("aria-label", `select job ${job.id}`);
    box.addEventListener("click", (event) => event.stopPropagation());  // ticking is not opening
    box.addEventListener("change", () => {
      if (box.checked) state.checked.add(job.id); else state.checked.delete(job.id);
      updateBulk();
    });
    const row = el("tr", { class: "job-row", "data-job-id": job.id, tabIndex: 0 }, [
      el("td", { class: "select" }, [box]),
      el("td", { class: "num", text: job.id }),
      el("td", { class: "label", text: label }),
      el("td", { text: job.queue }),
      el("td", { "data-col": "status" }, statusBadges(job)),
      el("td", { class: "num", text: `${job.attempts}/${job.maxAttempts}` }),
      nextRunCell(job),
      el("td", { class: "error-summary", text: errorSummary(job.lastError), title: job.lastError || "" }),
    ]);
    if (job.id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => openDetail(job.id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") openDetail(job.id); });
    return row;
  }

  async function loadJobs() {
    let page;
    if (state.jobId) {  // a search by id: that job alone, if it exists and passes the other filters
      let job = null;
      try {
        job = await api("GET", `jobs/${encodeURIComponent(state.jobId)}`);
      } catch (err) {
        if (err.status !== 404) throw err;
      }
      const matches = job && (!state.status || job.status === state.status) && (!state.queue || job.queue === state.queue)
        && (!state.handler || job.handler === state.handler);
      page = { data: matches ? [job] : [], nextCursor: null };
    } else {
      page = await api("GET", jobQuery(Math.min(state.shown, 1000)));
    }
    state.nextCursor = page.nextCursor;
    fillBody($("#jobs"), page.data.map(jobRow), $("#jobs-empty"));
    $("#load-more").hidden = !page.nextCursor;
    // a bulk action acts on what is shown: a ticked job that left the list (another filter, another status) is unticked
    const shown = new Set(shownIds());
    for (const id of state.checked) if (!shown.has(id)) state.checked.delete(id);
    updateBulk();
  }

  // --- bulk actions on the ticked jobs ---------------------------------------
  function shownIds() {
    return [...document.querySelectorAll("#jobs tr.job-row")].map((row) => Number(row.dataset.jobId));
  }

  function updateBulk() {
    const shown = shownIds();
    const n = state.checked.size;
    $("#bulk-count").textContent = `${n} selected`;
    for (const button of document.querySelectorAll("#bulk [data-bulk]")) button.disabled = n === 0;
    const all = $("#select-all");
    all.checked = shown.length > 0 && shown.every((id) => state.checked.has(id));
    all.indeterminate = !all.checked && shown.some((id) => state.checked.has(id));
  }

  async function bulkSelected(action) {
    const ids = [...state.checked];
    if (!ids.length) return;
    if (action === "delete" && !window.confirm(`Delete ${ids.length} job(s) and their history?`)) return;
    // the per-job routes, a few at a time; a job whose status does not allow the action is skipped (409)
    let done = 0, skipped = 0;
    const failures = [];
    for (let i = 0; i < ids.length; i += 8) {
      const batch = ids.slice(i, i + 8);
      const results = await Promise.allSettled(batch.map((id) => action === "delete"
        ? api("DELETE", `jobs/${id}`) : api("POST", `jobs/${id}/${action}`)));
      results.forEach((r, k) => {
        if (r.status === "fulfilled") { done += 1; state.checked.delete(batch[k]); }
        else if (r.reason.status === 409 || r.reason.status === 404) { skipped += 1; state.checked.delete(batch[k]); }
        else failures.push(r.reason.message);
      });
    }
    const verb = { retry: "retried", cancel: "cancelled", delete: "deleted" }[action];
    toast(`${done} job${done === 1 ? "" : "s"} ${verb}` + (skipped ? `, ${skipped} skipped (status did not allow it)` : "")
      + (failures.length ? `; ${failures.length} failed: ${failures[0]}` : ""), failures.length > 0);
    if (action === "delete" && state.selected !== null && !shownIds().includes(state.selected)) closeDetail();
    await refresh();
  }

  // --- schedules ---------------------------------------------------------------
  async function loadSchedules() {
    const { data } = await api("GET", "schedules");
    const rows = data.map((job) => {
      const row = el("tr", { class: "schedule-row", "data-job-id": job.id, tabIndex: 0 }, [
        el("td", { class: "num", text: job.id }),
        el("td", { class: "label", text: job.name ? `${job.name} (${job.handler})` : job.handler }),
        el("td", { text: `${job.schedule}${job.timezone ? ` (${job.timezone})` : ""}` }),
        el("td", { text: job.queue }),
        el("td", {}, statusBadges(job)),
        el("td", { class: "next-runs" }, [el("ol", {}, (job.nextRuns || []).map((iso) =>
          el("li", { text: `${shortTime(iso)} (${relative(iso)})`, title: iso })))]),
      ]);
      row.addEventListener("click", () => openDetail(job.id));
      row.addEventListener("keydown", (event) => { if (event.key === "Enter") openDetail(job.id); });
      return row;
    });
    fillBody($("#schedules"), rows, $("#schedules-empty"));
  }

  // --- charts: runs per minute over the last hour, as SVG bars built node by node ---
  function svg(tag, attrs, children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children || []) node.append(child);
    return node;
  }

  async function loadThroughput(force) {
    if (!force && Date.now() - state.throughputAt < THROUGHPUT_MS) return;
    state.throughputAt = Date.now();
    const { data } = await api("GET", "stats/throughput?minutes=60");
    const width = 600, height = 170, top = 18, bottom = 20;
    const step = width / data.length;
    const peak = Math.max(1, ...data.map((m) => m.completed + m.failed));
    const scale = (height - top - bottom) / peak;
    const bars = data.flatMap((m, i) => {
      const x = i * step + 1, w = Math.max(1, step - 2);
      const ok = m.completed * scale, bad = m.failed * scale;
      const base = height - bottom;
      const title = `${shortTime(m.minute)}: ${m.completed} completed, ${m.failed} failed`;
      return [svg("g", { class: "minute", "data-minute": m.minute, "data-completed": m.completed,
                          "data-failed": m.failed }, [
        svg("title", {}, [title]),
        svg("rect", { class: "bar completed", x, y: base - ok, width: w, height: ok }),
        svg("rect", { class: "bar failed", x, y: base - ok - bad, width: w, height: bad }),
        // an invisible full-height target, so a minute with few runs still shows its title on hover
        svg("rect", { class: "hit", x: i * step, y: 0, width: step, height: base }),
      ])];
    });
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart",
                               "aria-label": "runs per minute over the last hour" }, [
      svg("line", { class: "axis", x1: 0, y1: height - bottom, x2: width, y2: height - bottom }),
      svg("text", { class: "tick", x: 0, y: top - 2 }, [`${peak}/min`]),
      svg("text", { class: "tick", x: 0, y: height - 3 }, ["−60 min"]),
      svg("text", { class: "tick", x: width, y: height - 3, "text-anchor": "end" }, ["now"]),
      ...bars,
    ]);
    $("#throughput").replaceChildren(chart);
    $("#throughput-completed").textContent = `(${data.reduce((n, m) => n + m.completed, 0)})`;
    $("#throughput-failed").textContent = `(${data.reduce((n, m) => n + m.failed, 0)})`;
  }

  async function loadMore() {
    if (!state.nextCursor) return;
    const page = await api("GET", jobQuery(50, state.nextCursor));
    state.shown += page.data.length;
    state.nextCursor = page.nextCursor;
    $("#jobs").tBodies[0].append(...page.data.map(jobRow));
    $("#load-more").hidden = !page.nextCursor;
    updateBulk();
  }

  // --- detail ------------------------------------------------------------------
  const ALLOWED = {
    trigger: ["pending", "completed", "failed", "cancelled"],
    cancel: ["waiting", "pending", "running"],
    retry: ["failed", "cancelled"],
    delete: STATUSES,
  };

  function renderDetail(job, runs) {
    $("#detail-title").textContent = `Job ${job.id}: ${job.name || job.handler}`;
    const fields = [
      ["status", el("span", {}, statusBadges(job))], ["handler", job.handler], ["queue", job.queue],
      ["priority", job.priority], ["attempts", `${job.attempts} of ${job.maxAttempts}`],
      ["schedule", job.schedule ? `${job.schedule}${job.timezone ? ` (${job.timezone})` : ""}` : "–"],
      ["next run", `${shortTime(job.nextRunAt)} (${relative(job.nextRunAt)})`],
      ["last run", shortTime(job.lastRunAt)], ["created", shortTime(job.createdAt)],
      ["updated", shortTime(job.updatedAt)], ["worker", job.workerId || "–"], ["dedup key", job.dedupKey || "–"],
    ];
    if (job.backoff) {  // the job's own (enqueue backoff=); else its handler's or the app's, not known here
      const b = job.backoff;
      const jitter = b.jitter ? ` (±${Math.round(b.jitter * 100)}%)` : "";
      fields.push(["backoff", (b.factor === 1 ? `${b.base} s before each retry`
        : `${b.base} s, × ${b.factor} per retry, at most ${b.cap} s`) + jitter]);
    }
    if (job.status === "running" && job.progress !== null && job.progress !== undefined) {
      fields.splice(1, 0, ["progress", `${Math.round(job.progress * 100)}%${
        job.progressMessage ? `: ${job.progressMessage}` : ""}`]);
    }
    $("#detail-fields").replaceChildren(...fields.flatMap(([name, value]) => [
      el("dt", { text: name }),
      value instanceof Node ? el("dd", {}, [value]) : el("dd", { text: value }),
    ]));
    const upcoming = job.nextRuns || [];  // [] for a one-off job
    $("#next-runs").hidden = upcoming.length === 0;
    $("#detail-next-runs").replaceChildren(...upcoming.map((iso) =>
      el("li", { text: `${shortTime(iso)} (${relative(iso)})`, title: iso })));
    $("#detail-data").textContent = pretty(job.data);
    $("#detail-result").textContent = pretty(job.result);
    $("#detail-error").textContent = job.lastError || "–";
    for (const button of document.querySelectorAll("#detail [data-action]")) {
      const action = button.dataset.action;
      button.disabled = !ALLOWED[action].includes(job.status);
      if (action === "delete") button.textContent = state.confirmDelete ? "confirm delete" : "delete";
    }
    // one row per run; a failed run gets a full-width row below it with the unfoldable traceback
    const rows = runs.flatMap((run) => {
      const row = el("tr", { class: "run", "data-run-status": run.status }, [
        el("td", { class: "num", text: run.attempt }),
        el("td", {}, [badge(run.status)]),
        el("td", { class: "time", text: shortTime(run.startedAt), title: run.startedAt || "" }),
        el("td", { class: "num", text: run.duration === null ? "–" : `${run.duration.toFixed(1)} ms` }),
        el("td", { text: run.workerId || "–" }),
        el("td", { class: "error-summary", text: errorSummary(run.error) }),
      ]);
      if (!run.error) return [row];
      return [row, el("tr", { class: "run-error" }, [el("td", { colSpan: 6 }, [
        el("details", {}, [el("summary", { text: "traceback" }), el("pre", { text: run.error })]),
      ])])];
    });
    fillBody($("#history"), rows, $("#history-empty"));
  }

  async function loadDetail() {
    if (state.selected === null) return;
    const id = state.selected;
    try {
      const [job, history] = await Promise.all([api("GET", `jobs/${id}`), api("GET", `jobs/${id}/history`)]);
      // re-render only on change, so an unfolded traceback stays open across refreshes
      const key = JSON.stringify([job, history.data, state.confirmDelete]);
      if (state.selected === id && key !== state.detailKey) {
        state.detailKey = key;
        renderDetail(job, history.data);
      }
    } catch (err) {
      if (err.status === 404) closeDetail();
      else throw err;
    }
  }

  function openDetail(id) {
    state.selected = id;
    state.confirmDelete = false;
    state.detailKey = null;
    $("#detail").hidden = false;
    for (const row of document.querySelectorAll("#jobs tr.job-row")) {
      row.classList.toggle("selected", Number(row.dataset.jobId) === id);
    }
    loadDetail().catch((err) => toast(err.message, true));
  }

  function closeDetail() {
    state.selected = null;
    $("#detail").hidden = true;
    for (const row of document.querySelectorAll("#jobs tr.selected")) row.classList.remove("selected");
  }

  async function act(action) {
    const id = state.selected;
    if (id === null) return;
    if (action === "delete" && !state.confirmDelete) {
      state.confirmDelete = true;
      $("#detail [data-action=delete]").textContent = "confirm delete";
      return;
    }
    state.confirmDelete = false;
    try {
      if (action === "delete") {
        await api("DELETE", `jobs/${id}`);
        closeDetail();
        toast(`Job ${id} deleted`);
      } else {
        const job = await api("POST", `jobs/${id}/${action}`);
        toast(`Job ${id}: ${action} done, now ${job.status}`);
      }
    } catch (err) {
      toast(err.message, true);
    }
    await refresh();
  }

  async function runner(action) {
    try {
      await api("POST", `jobs/runner/${action}`, action === "start" ? {} : undefined);
      toast(action === "start" ? "Worker started" : "Worker stopping (draining)");
    } catch (err) {
      toast(err.message, true);
    }
    await refresh();
  }

  // --- refresh loop ------------------------------------------------------------
  async function refresh() {
    const results = await Promise.allSettled([loadHealth(), loadQueues(), loadWorkers(), loadWebhooks(), loadJobs(),
      loadDetail(), loadSchedules(), loadThroughput(false)]);
    const failed = results.find((r) => r.status === "rejected");
    $("#updated").textContent = failed ? `update failed: ${failed.reason.message}`
      : `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!$("#auto-refresh").checked) return;
    state.timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, REFRESH_MS);
  }

  function resetList() {
    state.shown = 50;
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const tab of document.querySelectorAll("#status-tabs button")) {
      tab.addEventListener("click", () => {
        state.status = tab.dataset.status;
        for (const other of document.querySelectorAll("#status-tabs button")) {
          other.classList.toggle("active", other === tab);
        }
        resetList();
      });
    }
    $("#filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("#filter-id").value.trim();
      const data = $("#filter-data").value.trim();
      if (id && !/^[1-9][0-9]{0,18}$/.test(id)) { toast("job id: a positive whole number", true); return; }
      if (data) {  // checked here for a quick message; the server checks it again (422 names the field)
        let parsed = null;
        try { parsed = JSON.parse(data); } catch (err) { /* reported below */ }
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          toast('data: a JSON object, such as {"user": 7}', true);
          return;
        }
      }
      state.jobId = id;
      state.data = data;
      state.queue = $("#filter-queue").value.trim();
      state.handler = $("#filter-handler").value.trim();
      resetList();
    });
    $("#select-all").addEventListener("change", (event) => {
      for (const id of shownIds()) {
        if (event.target.checked) state.checked.add(id); else state.checked.delete(id);
      }
      for (const box of document.querySelectorAll("#jobs .job-select")) box.checked = event.target.checked;
      updateBulk();
    });
    for (const button of document.querySelectorAll("#bulk [data-bulk]")) {
      button.addEventListener("click", () => bulkSelected(button.dataset.bulk));
    }
    $("#load-more").addEventListener("click", () => loadMore().catch((err) => toast(err.message, true)));
    $("#detail-close").addEventListener("click", closeDetail);
    for (const button of document.querySelectorAll("#detail [data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action));
    }
    $("#runner-start").addEventListener("click", () => runner("start"));
    $("#runner-stop").addEventListener("click", () => runner("stop"));
    $("#auto-refresh").addEventListener("change", schedule);
    refresh().then(schedule);
  });
})();
