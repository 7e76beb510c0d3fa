// The sessions page: the + NEW SESSION form. The API validates; its messages are shown
// next to the fields they concern.
"use strict";

(function () {
  const NUMBERS = ["max_tokens", "max_cost_usd", "timeout_seconds"];
  const REQUIRED = ["title", "initial_prompt"];

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
      const top = document.getElementById("form-error");
      Orchestrator.clearErrors(form, top);
      const button = document.getElementById("create-session");
      button.disabled = true;
      let answer;
      try {
        const body = Orchestrator.formBody(form, { numbers: NUMBERS, required: REQUIRED });
        answer = await Orchestrator.api("POST", "/api/v1/sessions", body);
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
      Orchestrator.showErrors(form, answer, top, "The orchestrator refused the session");
    });
  });
})();
