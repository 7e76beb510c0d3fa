// The webhooks page: create, pause or resume, test and delete webhooks through the API;
// its messages are shown next to the fields they concern. The list refreshes itself.
"use strict";

(function () {
  function flash(text, bad) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.hidden = false;
    box.classList.toggle("flash-bad", Boolean(bad));
  }

  function setOpen(open) {
    const toggle = document.getElementById("new-webhook-toggle");
    document.getElementById("new-webhook").hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) document.getElementById("w-name").focus();
    else toggle.focus();
  }

  async function create(form) {
    const top = document.getElementById("webhook-error");
    Orchestrator.clearErrors(form, top);
    const body = Orchestrator.formBody(form, { required: ["name", "url"] });
    body.events = Array.from(form.querySelectorAll("input[data-event]:checked")).map((box) => box.dataset.event);
    const button = document.getElementById("create-webhook");
    button.disabled = true;
    let answer;
    try {
      answer = await Orchestrator.api("POST", "/api/v1/webhooks", body);
    } catch (_) {
      return;
    } finally {
      button.disabled = false;
    }
    if (!answer.ok) {
      Orchestrator.showErrors(form, answer, top, "The orchestrator refused the webhook");
      return;
    }
    form.reset();
    setOpen(false);
    document.getElementById("webhook-secret-name").textContent = answer.data.name;
    document.getElementById("webhook-secret-value").textContent = answer.data.secret;
    document.getElementById("webhook-secret").hidden = false;
    Orchestrator.refresh("webhooks");
  }

  async function act(button) {
    const id = button.dataset.webhookId;
    const action = button.dataset.webhookAction;
    const path = "/api/v1/webhooks/" + id;
    if (action === "delete" && !window.confirm("Delete webhook " + button.dataset.webhookName + " and its delivery log?")) return;
    button.disabled = true;
    let answer;
    try {
      if (action === "delete") answer = await Orchestrator.api("DELETE", path);
      else if (action === "test") answer = await Orchestrator.api("POST", path + "/test");
      else answer = await Orchestrator.api("PATCH", path, { active: action === "resume" });
    } catch (_) {
      button.disabled = false;
      return;
    }
    if (answer.ok) flash(action.toUpperCase() + ": done", false);
    else flash(action.toUpperCase() + " refused: " + ((answer.data && answer.data.message) || answer.status), true);
    Orchestrator.refresh("webhooks");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("new-webhook-form");
    document.getElementById("new-webhook-toggle").addEventListener("click", () => setOpen(document.getElementById("new-webhook").hidden));
    document.getElementById("new-webhook-cancel").addEventListener("click", () => setOpen(false));
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      create(form);
    });
  });

  document.addEventListener("click", (click) => {
    const target = click.target.closest("button[data-webhook-action]");
    if (target && !target.disabled) act(target);
  });
})();
