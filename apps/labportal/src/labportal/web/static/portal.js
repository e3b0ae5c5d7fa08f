// The portal's only script: forms and buttons marked data-api call the JSON API with the
// session cookie and the CSRF header, then reload, redirect or show a field of the answer.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function fill(template, body) {
  return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(body[key] ?? ""));
}

function formBody(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    let value = el.type === "checkbox" ? el.checked : el.value;
    const kind = el.dataset.kind;
    if (kind === "list") value = value.split(",").map((s) => s.trim()).filter(Boolean);
    else if (kind === "int" || kind === "number") value = value === "" ? null : Number(value);
    else if (kind === "json") {
      try { value = JSON.parse(value); } catch { /* sent as text: the API says what is wrong */ }
    }
    else if (kind === "nullable" && value === "") value = null;
    if (el.dataset.optional !== undefined && (value === "" || value === null)) continue;
    if (el.name.startsWith("fields.")) {
      // A team-defined field: an empty input clears it (null), a checkbox is true or false.
      body.fields = body.fields || {};
      body.fields[el.name.slice(7)] = value === "" ? null : value;
      continue;
    }
    body[el.name] = value;
  }
  return body;
}

async function send(url, method, body) {
  const init = { method, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" };
  if (method !== "GET" && method !== "DELETE") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
  return { response, answer };
}

// In place: the server's message under the field it names (validation errors carry the
// field as "key"), the field marked invalid for Pico and screen readers.
function markFields(form, answer) {
  for (const old of form.querySelectorAll("[aria-invalid]")) old.removeAttribute("aria-invalid");
  for (const old of form.querySelectorAll("small.field-error")) old.remove();
  for (const e of answer.errors || []) {
    const name = String(e.key || "").replace(/^\$\.?/, "").split(".")[0];
    const field = name && form.elements[name];
    if (!field || !field.setAttribute) continue;
    field.setAttribute("aria-invalid", "true");
    const note = document.createElement("small");
    note.className = "field-error";
    note.id = `${form.id || "form"}-${name}-error`;
    note.textContent = e.message;
    field.setAttribute("aria-describedby", note.id);
    field.after(note);
  }
}

async function call(el, body) {
  const error = el.querySelector(".error") || document.getElementById("error");
  if (error) error.textContent = "";
  const method = (el.dataset.method || "POST").toUpperCase();
  let { response, answer } = await send(el.dataset.api, method, body);
  // data-then: a second call with the same body (registration is followed by a login).
  if (response.ok && el.dataset.then) ({ response, answer } = await send(el.dataset.then, "POST", body));
  if (el.tagName === "FORM") markFields(el, response.ok ? {} : answer);
  if (!response.ok) {
    const message = answer.detail || response.statusText;
    if (error) error.textContent = message; else alert(message);
    return;
  }
  if (el.dataset.show) {
    const target = document.getElementById(el.dataset.showIn || "result");
    target.textContent = answer[el.dataset.show];
    target.hidden = false;
  } else if (el.dataset.redirect) {
    window.location.assign(fill(el.dataset.redirect, answer));
  } else {
    window.location.reload();
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.api) return;
  event.preventDefault();
  call(form, formBody(form));
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-api]");
  if (!button || button.form) return;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  call(button, button.dataset.body ? JSON.parse(button.dataset.body) : {});
});
