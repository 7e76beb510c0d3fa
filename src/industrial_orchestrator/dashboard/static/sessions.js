// The sessions page: the + NEW SESSION form. The API validates; its messages are shown
// next to the fields they concern.
"use strict";

(function () {
  const NUMBERS = new Set(["max_tokens", "max_cost_usd", "timeout_seconds"]);

  function panel() {
    return document.getElementById("new-session");
  }

  function setOpen(open) {
    const box = panel();
    const toggle = document.getElementById("new-session-toggle");
    box.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) document.getElementById("f-title").focus();
    else toggle.focus();
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((node) => (node.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    const top = document.getElementById("form-error");
    top.hidden = true;
    top.textContent = "";
  }

  // Empty optional fields are left out; numbers the browser cannot read are sent as
  // typed, so that the API says what is wrong with them.
  function payload(form) {
    const body = {};
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") {
        body[field.name] = field.checked;
        continue;
      }
      const value = field.value;
      if (value.trim() === "" && field.name !== "title" && field.name !== "initial_prompt") continue;
      if (NUMBERS.has(field.name)) {
        const number = Number(value.trim());
        body[field.name] = value.trim() !== "" && Number.isFinite(number) ? number : value;
      } else {
        body[field.name] = value;
      }
    }
    return body;
  }

  function showErrors(form, answer) {
    const data = answer.data || {};
    const top = document.getElementById("form-error");
    let placed = false;
    const problems = Array.isArray(data.details) ? data.details : [];
    for (const problem of problems) {
      const name = String(problem.field || "").split(".")[0];
      const slot = form.querySelector('[data-error-for="' + name + '"]');
      if (!slot) continue;
      slot.textContent = (slot.textContent ? slot.textContent + " " : "") + problem.message;
      const input = form.elements[name];
      if (input) input.setAttribute("aria-invalid", "true");
      placed = true;
    }
    const named = data.details && !Array.isArray(data.details) ? data.details.field : null;
    const slot = named ? form.querySelector('[data-error-for="' + named + '"]') : null;
    if (!placed && slot) {
      slot.textContent = data.message;
      if (form.elements[named]) form.elements[named].setAttribute("aria-invalid", "true");
      placed = true;
    }
    top.textContent = data.message || "The orchestrator refused the session (" + answer.status + ")";
    top.hidden = false;
    const first = form.querySelector("[aria-invalid]");
    if (first) first.focus();
    return placed;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("new-session-form");
    document.getElementById("new-session-toggle").addEventListener("click", () => setOpen(panel().hidden));
    document.getElementById("new-session-cancel").addEventListener("click", () => setOpen(false));
    if (window.location.hash === "#new") setOpen(true);
    form.addEventListener("keydown", (key) => {
      if (key.key === "Escape") setOpen(false);
    });
    form.addEventListener("submit", async (submit) => {
      submit.preventDefault();
      clearErrors(form);
      const button = document.getElementById("create-session");
      button.disabled = true;
      let answer;
      try {
        answer = await Orchestrator.api("POST", "/api/v1/sessions", payload(form));
      } catch (_) {
        button.disabled = false;
        return;
      } finally {
        button.disabled = false;
      }
      if (answer.ok) {
        window.location.assign("/sessions/" + answer.data.id);
        return;
      }
      showErrors(form, answer);
    });
  });
})();
