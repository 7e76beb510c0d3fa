// The session detail page: the live terminal, the header's verbs, permission answers,
// the diff and the running clock. Events arrive through Orchestrator (dashboard.js), which
// resumes the stream after its last sequence number, so a line is never lost or shown twice.
"use strict";

(function () {
  const MAX_LINES = 10000;
  const sessionId = document.body.dataset.session;
  let follow = true;
  let lines = 0;

  function time(at) {
    const date = new Date(at);
    return Number.isNaN(date.getTime()) ? "--:--:--" : date.toISOString().slice(11, 19);
  }

  // One event as a terminal line: [kind, text]. Agents' text is shown as text, never as
  // markup (textContent below).
  function describe(event) {
    const p = event.payload || {};
    switch (event.type) {
      case "session.log":
        return [p.stream || "log", p.text || ""];
      case "session.transition":
        return [
          "state",
          (p.from || "∅") + " → " + p.to + (p.reason ? " · " + p.reason : "") + " (" + p.actor + ")",
        ];
      case "session.created":
        return ["state", "created in " + p.status + " · priority " + p.priority];
      case "session.phase":
        return ["phase", "phase " + (p.from || "∅") + " → " + (p.to || "∅") + (p.reason ? " · " + p.reason : "")];
      case "session.telemetry":
        return ["usage", "task used " + p.task_tokens + " tokens (" + Orchestrator.usd(p.task_cost_usd) + "); session total " + p.tokens_used + " tokens (" + Orchestrator.usd(p.cost_usd) + ")"];
      case "checkpoint.created":
        return ["checkpoint", "checkpoint #" + p.checkpoint_seq + " " + p.label + (p.reason ? " · " + p.reason : "")];
      case "task.created":
        return ["task", "task planned: " + p.title + " [" + (p.required_capabilities || []).join(", ") + "]"];
      case "task.transition":
        return ["task", "task " + String(p.task_id).slice(0, 8) + " " + p.from + " → " + p.to + (p.result_summary ? " · " + p.result_summary : "")];
      case "task.leased":
        return ["task", "task " + String(p.task_id).slice(0, 8) + " leased to agent " + String(p.agent_id).slice(0, 8) + " (attempt " + p.attempt + ")"];
      case "task.attempt_ended":
        return ["task", "task " + String(p.task_id).slice(0, 8) + " attempt " + p.attempt + " " + p.outcome + (p.error ? " · " + p.error : "")];
      case "task.loop_stopped":
        return ["task", "task " + String(p.task_id).slice(0, 8) + " attempt " + p.attempt + " stopped by the loop guard (" + p.kind + "): " + p.message + " · " + p.rolled_back_count + " file(s) rolled back" + (p.requeued ? " · back in the queue for another agent" : "")];
      default:
        return ["system", event.type + " " + JSON.stringify(p)];
    }
  }

  function append(event) {
    const terminal = document.getElementById("terminal");
    if (!terminal) return;
    const [kind, text] = describe(event);
    const line = document.createElement("div");
    line.className = "line line-" + kind;
    line.dataset.seq = String(event.seq);
    const stamp = document.createElement("span");
    stamp.className = "line-meta";
    stamp.textContent = time(event.at) + " " + kind.toUpperCase().padEnd(10, " ");
    const body = document.createElement("span");
    body.className = "line-text";
    body.textContent = text;
    line.append(stamp, body);
    terminal.append(line);
    lines += 1;
    if (terminal.childElementCount > MAX_LINES) terminal.firstElementChild.remove();
    const count = document.getElementById("terminal-count");
    if (count) count.textContent = lines + " line" + (lines === 1 ? "" : "s");
    if (follow) terminal.scrollTop = terminal.scrollHeight;
  }

  Orchestrator.onEvent((event) => {
    append(event);
    if (event.type === "session.log" && /permission/i.test((event.payload || {}).text || "")) {
      Orchestrator.schedule("permissions");
    }
  });

  function flash(text, bad) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("flash-bad", Boolean(bad));
    box.hidden = !text;
  }

  async function act(verb, button) {
    const head = document.querySelector("[data-version]");
    const version = head ? Number(head.dataset.version) : undefined;
    button.disabled = true;
    let answer;
    try {
      const path = "/api/v1/sessions/" + sessionId + "/" + verb;
      answer = await Orchestrator.api("POST", path, verb === "retry" ? {} : { expected_version: version });
    } catch (_) {
      button.disabled = false;
      return;
    }
    if (answer.ok && answer.status === 201 && answer.data && answer.data.id) {
      window.location.assign("/sessions/" + answer.data.id); // a retry is a new session
      return;
    }
    if (answer.ok) {
      flash(verb.toUpperCase() + ": now " + answer.data.status, false);
    } else {
      flash(verb.toUpperCase() + " refused: " + ((answer.data && answer.data.message) || answer.status), true);
    }
    Orchestrator.refresh("header");
  }

  // FORK FROM HERE opens the fork dialog for that checkpoint; the API validates, and its
  // messages are shown next to the fields.
  function openFork(checkpointId, button) {
    const dialog = document.getElementById("fork-dialog");
    const form = document.getElementById("fork-form");
    form.reset();
    Orchestrator.clearErrors(form, document.getElementById("fork-error"));
    document.getElementById("fork-checkpoint").value = checkpointId;
    const row = button.closest("li");
    const label = row ? row.querySelector(".tl-label") : null;
    document.getElementById("fork-checkpoint-label").textContent = label ? label.textContent : "";
    dialog.showModal();
    document.getElementById("fork-amendment").focus();
  }

  async function submitFork(form) {
    const top = document.getElementById("fork-error");
    Orchestrator.clearErrors(form, top);
    const button = document.getElementById("fork-submit");
    button.disabled = true;
    const body = Orchestrator.formBody(form, {
      numbers: ["max_tokens", "max_cost_usd"],
      lists: ["agents"],
    });
    body.start = true;
    let answer;
    try {
      answer = await Orchestrator.api("POST", "/api/v1/sessions/" + sessionId + "/fork", body);
    } catch (_) {
      return;
    } finally {
      button.disabled = false;
    }
    if (answer.ok && answer.data && answer.data.id) {
      window.location.assign("/sessions/" + answer.data.id); // the fork is a new session
      return;
    }
    Orchestrator.showErrors(form, answer, top, "The orchestrator refused the fork");
  }

  async function answerPermission(id, reply) {
    const path = "/api/v1/sessions/" + sessionId + "/permissions";
    try {
      const answer = await Orchestrator.api("POST", path, { request_id: id, reply });
      if (!answer.ok) flash("Permission answer refused: " + ((answer.data && answer.data.message) || answer.status), true);
    } catch (_) {
      return;
    }
    Orchestrator.refresh("permissions");
  }

  document.addEventListener("submit", (submit) => {
    if (submit.target.id !== "fork-form") return;
    submit.preventDefault();
    submitFork(submit.target);
  });

  document.addEventListener("click", (click) => {
    const target = click.target.closest("button");
    if (!target || target.disabled) return;
    if (target.dataset.verb) act(target.dataset.verb, target);
    else if (target.dataset.fork) openFork(target.dataset.fork, target);
    else if (target.id === "fork-cancel") document.getElementById("fork-dialog").close();
    else if (target.dataset.permissionId) answerPermission(target.dataset.permissionId, target.dataset.reply);
    else if (target.id === "diff-load") Orchestrator.refresh("diff");
    else if (target.id === "scroll-toggle") {
      follow = !follow;
      target.setAttribute("aria-pressed", String(!follow));
      target.textContent = follow ? "⏸ PAUSE SCROLL" : "▶ FOLLOW";
      const terminal = document.getElementById("terminal");
      if (follow && terminal) terminal.scrollTop = terminal.scrollHeight;
    }
  });

  // The duration of a running session counts up between two renderings of its region.
  let base = null;
  function tick() {
    const clock = document.querySelector("[data-ticking]");
    if (!clock) {
      base = null;
      return;
    }
    const seconds = Number(clock.dataset.ticking);
    if (!base || base.element !== clock) base = { element: clock, seconds, since: Date.now() };
    const now = Math.floor(base.seconds + (Date.now() - base.since) / 1000);
    const h = Math.floor(now / 3600);
    const m = Math.floor((now % 3600) / 60);
    const s = now % 60;
    const pad = (n) => String(n).padStart(2, "0");
    clock.textContent = h ? h + "h " + pad(m) + "m " + pad(s) + "s" : m ? m + "m " + pad(s) + "s" : s + "s";
  }
  setInterval(tick, 1000);
})();
