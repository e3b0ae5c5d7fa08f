// Running models from the material and case pages (the task API, issue 15): a model chooser
// from GET /api/models, a params form generated from the model's JSON schema (the server's
// 422 reason shown at the field it names), then the tasks: status badges, a progress bar
// while they run (polling GET /api/tasks/{id}), the measurement summary and, on demand, the
// provenance when done. A material page lists its tasks; a case page runs a model on every
// material of the case and shows each material's latest task per model. Members and up get
// the form and delete buttons (the server decides again); viewers read.
"use strict";

(() => {
  const panel = document.getElementById("tasks-panel");
  if (!panel) return;
  const MATERIAL = panel.dataset.material || null;
  const CASE = panel.dataset.case || null;
  const TEAM = panel.dataset.team;
  const WRITABLE = Boolean(panel.dataset.canWrite);
  const POLL_MS = 1000;
  const ACTIVE = new Set(["queued", "running"]);
  let models = [];
  let tasks = []; // newest first, as the API lists them
  let polling = null;
  let shown = null; // the task whose result is on screen (material page)

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  // portal.js's send(): the session cookie, the CSRF header, the JSON body and answer.
  async function api(method, url, body) {
    const { response, answer } = await send(url, method, body);
    if (!response.ok) throw new ApiError(response.status, answer);
    return answer;
  }

  function showError(e) {
    document.getElementById("error").textContent = e.message;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class" || k.includes("-")) node.setAttribute(k, v); // data-*, aria-*
      else node[k] = v;
    }
    node.append(...children);
    return node;
  }

  // ---- the params form, from the model's JSON schema (msgspec's: $ref into $defs, anyOf
  // with null for optional values) -------------------------------------------------------

  function resolve(schema, root) {
    let s = schema || {};
    for (let hops = 0; s.$ref && hops < 10; hops++) {
      const name = s.$ref.replace(/^#\/\$defs\//, "");
      s = (root.$defs || {})[name] || {};
    }
    return s;
  }

  // One field's schema, flattened: {type, enum, minimum, ..., nullable, default, description}.
  function fieldSchema(prop, root) {
    const own = resolve(prop, root);
    const merged = { ...own };
    if (Array.isArray(own.anyOf)) {
      const others = own.anyOf.filter((s) => resolve(s, root).type !== "null");
      if (others.length === 1) Object.assign(merged, resolve(others[0], root));
      merged.nullable = others.length < own.anyOf.length;
      delete merged.anyOf;
    }
    for (const key of ["default", "description", "title"]) {
      if (key in prop) merged[key] = prop[key];
    }
    return merged;
  }

  function paramsOf(model) {
    const root = model.params_schema || {};
    const top = resolve(root, root);
    const required = new Set(top.required || []);
    return Object.entries(top.properties || {}).map(([name, prop]) => ({
      name,
      required: required.has(name),
      schema: fieldSchema(prop, root),
    }));
  }

  function input(param) {
    const s = param.schema;
    const common = { name: param.name, id: `param-${param.name}`, required: param.required };
    const hasDefault = s.default !== undefined && s.default !== null;
    if (Array.isArray(s.enum)) {
      const select = el("select", { ...common, "data-kind": "enum" });
      if (s.nullable || !param.required) select.append(el("option", { value: "", text: "(default)" }));
      for (const v of s.enum) select.append(el("option", { value: JSON.stringify(v), text: String(v) }));
      if (hasDefault) select.value = JSON.stringify(s.default);
      return select;
    }
    if (s.type === "boolean") {
      return el("input", { ...common, type: "checkbox", checked: s.default === true, "data-kind": "boolean" });
    }
    if (s.type === "integer" || s.type === "number") {
      const field = el("input", {
        ...common,
        type: "number",
        step: s.type === "integer" ? "1" : "any",
        "data-kind": s.type,
        placeholder: hasDefault ? "" : "default",
      });
      if (s.minimum !== undefined) field.min = String(s.minimum);
      if (s.maximum !== undefined) field.max = String(s.maximum);
      if (hasDefault) field.value = String(s.default);
      return field;
    }
    if (s.type === "string") {
      const field = el("input", { ...common, type: "text", "data-kind": "string" });
      if (s.maxLength !== undefined) field.maxLength = s.maxLength;
      if (hasDefault) field.value = s.default;
      return field;
    }
    // Objects, arrays, unions: JSON typed by hand (the server checks it like the rest).
    return el("textarea", {
      ...common,
      "data-kind": "json",
      rows: 2,
      value: hasDefault ? JSON.stringify(s.default) : "",
      placeholder: "JSON",
    });
  }

  function buildForm(model) {
    const fieldset = document.getElementById("model-params");
    const legend = fieldset.querySelector("legend");
    fieldset.replaceChildren(legend);
    document.getElementById("model-description").textContent = model.description || "";
    const params = paramsOf(model);
    for (const param of params) {
      const s = param.schema;
      const bounds = [
        s.minimum !== undefined ? `≥ ${s.minimum}` : null,
        s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : null,
        s.maximum !== undefined ? `≤ ${s.maximum}` : null,
        s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : null,
      ].filter(Boolean);
      const hint = [s.description, bounds.join(", ")].filter(Boolean).join(" · ");
      fieldset.append(
        el(
          "label",
          { class: "param", "data-param": param.name, title: hint },
          el("span", { class: "param-name", text: s.title || param.name }),
          " ",
          input(param),
          el("small", { class: "param-hint", text: hint }),
          el("span", { class: "param-error error", role: "alert" }),
        ),
      );
    }
    fieldset.hidden = params.length === 0;
  }

  function formParams(form) {
    const params = {};
    for (const field of form.querySelectorAll("#model-params [name]")) {
      const kind = field.dataset.kind;
      if (kind === "boolean") {
        params[field.name] = field.checked;
        continue;
      }
      const raw = field.value.trim();
      if (raw === "") continue; // the model's default
      if (kind === "integer" || kind === "number") params[field.name] = Number(raw);
      else if (kind === "enum" || kind === "json") {
        try {
          params[field.name] = JSON.parse(raw);
        } catch {
          throw Object.assign(new Error("not valid JSON"), { param: field.name });
        }
      } else params[field.name] = raw;
    }
    return params;
  }

  // Which parameter a 422 names: a field the problem carries, msgspec's "at `$.name`", or
  // the first parameter the message mentions by name.
  function blamedParam(problem, names) {
    for (const key of ["param", "field", "parameter"]) {
      if (typeof problem[key] === "string" && names.includes(problem[key])) return problem[key];
    }
    const detail = problem.detail || "";
    const at = /\$\.(\w+)/.exec(detail);
    if (at && names.includes(at[1])) return at[1];
    return names.find((n) => new RegExp(`(^|[^\\w])${n}([^\\w]|$)`).test(detail)) || null;
  }

  function clearErrors(form) {
    for (const e of form.querySelectorAll(".param-error")) e.textContent = "";
    for (const f of form.querySelectorAll("[aria-invalid]")) f.removeAttribute("aria-invalid");
    document.getElementById("run-model-error").textContent = "";
  }

  function showFieldError(form, name, message) {
    const label = name && form.querySelector(`label[data-param="${name}"]`);
    if (!label) {
      document.getElementById("run-model-error").textContent = message;
      return;
    }
    label.querySelector(".param-error").textContent = message;
    label.querySelector("[name]").setAttribute("aria-invalid", "true");
  }

  function selectedModel() {
    const choice = document.getElementById("model-choice");
    return models[Number(choice.value)];
  }

  async function setupForm() {
    const form = document.getElementById("run-model");
    if (!form) return;
    const choice = document.getElementById("model-choice");
    choice.replaceChildren(
      ...models.map((m, i) => el("option", { value: String(i), text: `${m.name} ${m.version}` })),
    );
    if (models.length) buildForm(models[0]);
    document.getElementById("run-model-button").disabled = models.length === 0;
    choice.addEventListener("change", () => {
      clearErrors(form);
      buildForm(selectedModel());
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const model = selectedModel();
      const button = document.getElementById("run-model-button");
      let params;
      try {
        params = formParams(form);
      } catch (e) {
        showFieldError(form, e.param, e.message);
        return;
      }
      const body = { model: model.name, model_version: model.version, params };
      if (MATERIAL) body.material_id = MATERIAL;
      else body.case_id = CASE;
      button.disabled = true;
      try {
        const created = await api("POST", "/api/tasks", body);
        tasks = [...created.items, ...tasks];
        render();
        poll();
      } catch (e) {
        const names = paramsOf(model).map((p) => p.name);
        if (e.status === 422 && e.problem) showFieldError(form, blamedParam(e.problem, names), e.message);
        else showFieldError(form, null, e.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---- tasks ---------------------------------------------------------------------------

  function badge(task) {
    const text = task.status === "failed" && task.error ? `failed: ${task.error}` : task.status;
    return el("span", { class: `badge task-status status-${task.status}`, text, title: task.error || "" });
  }

  function progress(task) {
    const { done, planned } = task.progress || { done: 0, planned: 0 };
    if (!ACTIVE.has(task.status)) return el("span", { class: "task-progress-done", text: planned ? `${done} / ${planned} tiles` : "" });
    const bar = el("progress", { class: "task-progress", max: Math.max(1, planned) });
    if (planned) bar.value = done; // no value: indeterminate while it is still planning
    return el("span", {}, bar, ` ${done} / ${planned || "?"}`);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function taskRow(task) {
    const actions = el("td", { class: "task-actions" });
    if (task.status === "succeeded") {
      actions.append(
        button("Result", () => showResult(task)),
        " ",
        el("a", { href: `/materials/${task.material_id}/view`, text: "view" }),
      );
    }
    if (WRITABLE) {
      const label = ACTIVE.has(task.status) ? "Cancel" : "Delete";
      actions.append(" ", button(label, () => removeTask(task), "task-delete"));
    }
    return el(
      "tr",
      { "data-task": task.id, "data-status": task.status },
      el("td", { text: `${task.model} ${task.model_version}` }),
      el("td", {}, badge(task)),
      el("td", {}, progress(task)),
      el("td", { text: when(task.started_at || task.created_at) }),
      actions,
    );
  }

  function button(text, action, cls) {
    const b = el("button", { type: "button", text, class: cls || null });
    b.addEventListener("click", () => action().catch(showError));
    return b;
  }

  async function removeTask(task) {
    const verb = ACTIVE.has(task.status) ? "Cancel and delete" : "Delete";
    if (!window.confirm(`${verb} this ${task.model} task and its results?`)) return;
    await api("DELETE", `/api/tasks/${task.id}`);
    tasks = tasks.filter((t) => t.id !== task.id);
    if (shown === task.id) {
      shown = null;
      document.getElementById("task-result").hidden = true;
    }
    render();
  }

  function format(value) {
    if (typeof value === "number") {
      if (Number.isInteger(value)) return value.toLocaleString();
      return Math.abs(value) >= 1000 ? value.toLocaleString(undefined, { maximumFractionDigits: 1 })
        : String(Number(value.toPrecision(4)));
    }
    if (value === null || value === undefined) return "—";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  async function showResult(task) {
    const result = await api("GET", `/api/tasks/${task.id}/result`);
    shown = task.id;
    document.getElementById("task-result-title").textContent =
      `${task.model} ${task.model_version} · ${format(result.feature_count)} features`;
    const summary = document.getElementById("task-summary");
    summary.replaceChildren(
      ...Object.entries(result.summary || {}).flatMap(([k, v]) => [
        el("dt", { text: k.replace(/_/g, " ") }),
        el("dd", { text: format(v), "data-key": k }),
      ]),
    );
    document.getElementById("task-downloads").replaceChildren(
      "Download: ",
      el("a", { href: `/api/tasks/${task.id}/result?format=geojson`, text: "GeoJSON", download: `${task.model}-${task.id}.geojson` }),
      " · ",
      el("a", { href: `/api/tasks/${task.id}/result?format=parquet`, text: "measurements (Parquet)", download: `${task.model}-${task.id}.parquet` }),
    );
    document.getElementById("task-provenance-json").textContent = JSON.stringify(result.provenance, null, 2);
    const box = document.getElementById("task-result");
    box.dataset.task = task.id;
    box.hidden = false;
  }

  function render() {
    if (MATERIAL) renderMaterial();
    else renderCase();
  }

  function renderMaterial() {
    const body = document.querySelector("#task-list tbody");
    body.replaceChildren(...tasks.map(taskRow));
    document.getElementById("task-empty").hidden = tasks.length > 0;
  }

  // A case: each material's newest task of each model version, newest first.
  function renderCase() {
    for (const row of document.querySelectorAll("#case-task-status tr[data-material]")) {
      const seen = new Set();
      const mine = tasks.filter((t) => {
        const key = `${t.model} ${t.model_version}`;
        if (t.material_id !== row.dataset.material || seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      const cell = row.querySelector(".material-tasks");
      if (!mine.length) {
        cell.replaceChildren(el("span", { class: "task-none", text: "no tasks" }));
        continue;
      }
      cell.replaceChildren(
        ...mine.map((t) =>
          el(
            "span",
            { class: "case-task", "data-task": t.id, "data-status": t.status },
            `${t.model} ${t.model_version} `,
            badge(t),
            ACTIVE.has(t.status) ? progress(t) : "",
          ),
        ),
      );
    }
  }

  async function refreshed(active) {
    // A case may have many running tasks: one listing instead of one request per task.
    if (!MATERIAL) {
      const listed = (await api("GET", `/api/tasks?${listQuery()}`)).items;
      const byId = new Map(listed.map((t) => [t.id, t]));
      return active.map((t) => byId.get(t.id) || { id: t.id, gone: true });
    }
    return Promise.all(
      active.map((t) =>
        api("GET", `/api/tasks/${t.id}`).catch((e) => (e.status === 404 ? { id: t.id, gone: true } : t)),
      ),
    );
  }

  // Poll the active tasks until none is left; a task that finishes shows its result (the
  // material page) and the list its new state.
  function poll() {
    if (polling) return;
    polling = setTimeout(async () => {
      const active = tasks.filter((t) => ACTIVE.has(t.status));
      try {
        const fresh = await refreshed(active);
        const byId = new Map(fresh.map((t) => [t.id, t]));
        tasks = tasks
          .filter((t) => !byId.get(t.id)?.gone)
          .map((t) => (byId.has(t.id) ? byId.get(t.id) : t));
        render();
        const finished = fresh.find((t) => !t.gone && t.status === "succeeded");
        if (MATERIAL && finished) await showResult(finished);
      } catch (e) {
        showError(e);
      } finally {
        polling = null;
      }
      if (tasks.some((t) => ACTIVE.has(t.status))) poll();
    }, POLL_MS);
  }

  function listQuery() {
    const q = new URLSearchParams({ limit: "200" });
    if (MATERIAL) q.set("material_id", MATERIAL);
    else q.set("case_id", CASE);
    return q;
  }

  async function loadTasks() {
    tasks = (await api("GET", `/api/tasks?${listQuery()}`)).items;
    render();
    if (tasks.some((t) => ACTIVE.has(t.status))) poll();
    const done = tasks.find((t) => t.status === "succeeded");
    if (MATERIAL && done) await showResult(done);
  }

  (async () => {
    try {
      const q = TEAM ? `?${new URLSearchParams({ team_id: TEAM })}` : "";
      models = (await api("GET", `/api/models${q}`)).items;
      await setupForm();
    } catch (e) {
      showError(e);
    }
    try {
      await loadTasks();
    } catch (e) {
      showError(e);
    }
  })();
})();
